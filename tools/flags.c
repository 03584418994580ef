/* flags.c — the command-line parser (flags.h): one loop over argv for every command, the shared
 * flag groups, and the global --device/--threads. */
#include "tools/flags.h"

#include <string.h>

#include "tensor/device.h"
#include "tensor/dist.h"
#include "tensor/ops/gemm_bf16.h"
#include "tensor/text.h"
#include "tools/command.h"

/* ---- the shared groups ------------------------------------------------------------------- */

const KeySpec MODEL_FLAGS[2] = {
    FLAG_ARG(ModelFlags, "model", model, "FILE",
             "CLIP checkpoint: OpenAI .pt, torch state dict or safetensors"),
    FLAG_ARG(ModelFlags, "vocab", vocab, "F",
             "BPE vocabulary (default $TRMML_VOCAB, then ../shared/clip/)"),
};

const KeySpec DATASET_FLAGS[DATASET_ALL] = {
    FLAG_ARG(DatasetFlags, "dataset", dataset, "NAME",
             "voc2007 voc2012 coco2014 nuswide vg200 cub"),
    FLAG_ARG(DatasetFlags, "root", root, "DIR", "the dataset's directory (docs/datasets.md)"),
    FLAG_ARG(DatasetFlags, "class-list", class_list, "F",
             "class names, one per line (instead of the layout's)"),
    FLAG_ARG(DatasetFlags, "split", split, "S", "the split: trainval, test, train, val, ..."),
    FLAG_ARG(DatasetFlags, "image-dir", image_dir, "D", "images (instead of the layout's)"),
    FLAG_ARG(DatasetFlags, "split-list", split_list, "F", "image list (instead of the layout's)"),
    FLAG_ARG(DatasetFlags, "labels", labels, "F", "label file (instead of the layout's)"),
    FLAG_SWITCH(DatasetFlags, "dualcoop-labels", dualcoop_labels,
                "label files use 1/0/-1 (positive/negative/unknown)"),
};

DsOptions flags_ds_options(const DatasetFlags *d) {
    DsOptions o = {0};
    o.image_dir = d->image_dir;
    o.class_list = d->class_list;
    o.split_list = d->split_list;
    o.labels = d->labels;
    o.convention = d->dualcoop_labels ? DS_LABELS_DUALCOOP : DS_LABELS_PM1;
    return o;
}

const KeySpec SIZE_FLAGS[1] = {
    KEY_ENTRY_("size", KEY_INT, 0, 0, NULL, 32, 4096, NULL,
               "square input side, a multiple of 32 (default: the model's native side)", "N"),
};

static const char *const PRECISION_NAMES[] = {"fp32", "bf16", NULL};
const KeySpec PRECISION_FLAGS[1] = {
    KEY_ENTRY_("precision", KEY_ENUM, 0, 0, PRECISION_NAMES, 0, 0, NULL,
               "products of the frozen towers: fp32, or bf16 inputs with fp32 sums (CPUs with "
               "AVX512-BF16; docs/ops/gemm_bf16.md)",
               NULL),
};

/* ---- the global group -------------------------------------------------------------------- */

typedef struct {
    const char *device;
    int64_t threads;
    bool tf32;
} GlobalFlags;

static GlobalFlags g_global = {"auto", 0, false};

static const KeySpec GLOBAL_FLAGS[] = {
    FLAG_ARG(GlobalFlags, "device", device, "auto|cpu|cuda[:N]",
             "backend; auto = CUDA when a GPU answers (docs/cuda.md)"),
    FLAG_INT(GlobalFlags, "threads", threads, 1, 1024, "N",
             "CPU threads of the kernels (OpenMP, OpenBLAS)"),
    FLAG_SWITCH(GlobalFlags, "tf32", tf32,
                "CUDA GEMMs on TF32 tensor cores (10-bit mantissa products; off by default)"),
};

const char *tool_device(void) { return g_global.device; }
int tool_threads(void) { return (int)g_global.threads; }

/* The GPU of this rank: --device cuda:N as given; under mpirun or srun, --device cuda or auto
 * without an index gives local rank L of a node cuda:L, one rank per GPU as NCCL needs. With
 * more ranks on the node than GPUs they share them (L mod GPUs), and tensor/dist.c sees the
 * shared GPUs and keeps their collectives on the host path. */
static Status use_gpu(const char *spec, DeviceKind d, int idx) {
    const int local = dist_local_rank(), n = device_cuda_count();
    if (d != DEVICE_CUDA || strchr(spec, ':') || local < 0 || n <= 0) return device_use(d, idx);
    return device_use(d, local % n);
}

Status tool_device_select(DeviceKind *dev) {
    int idx = 0;
    DeviceKind d;
    Status st = device_parse(g_global.device, &d, &idx);
    if (st == STATUS_OK && d != DEVICE_CPU && tensor_precision() == PRECISION_BF16)
        st = error_set(STATUS_ERR_USAGE, "--precision bf16 runs on the CPU only (the project's "
                       "AVX512-BF16 GEMM); --device is %s here: add --device cpu, or drop "
                       "--precision", device_name(d));
    if (st == STATUS_OK && g_global.tf32 && d != DEVICE_CUDA)
        st = error_set(STATUS_ERR_USAGE, "--tf32 is a mode of CUDA's GEMMs; --device is %s here",
                       device_name(d));
    if (st == STATUS_OK) st = use_gpu(g_global.device, d, idx);
    /* Under MPI: one rank's failure is every rank's; then the job's device collectives (an NCCL
     * communicator when every rank is on CUDA, tensor/dist.h). */
    st = dist_agree(st);
    if (st == STATUS_OK) st = dist_device_init(d);
    if (st != STATUS_OK) return st;
    if (g_global.tf32) device_set_allow_tf32(true);
    tensor_set_default_device(d);
    if (dev) *dev = d;
    return STATUS_OK;
}

/* The global flags take effect once parsed: a malformed --device is a usage error for every
 * command (whether CUDA answers is the concern of the commands that use it). */
static int apply_global(void) {
    DeviceKind dev;
    int idx;
    if (strcmp(g_global.device, "auto") != 0 &&
        device_parse(g_global.device, &dev, &idx) == STATUS_ERR_USAGE)
        return tool_usage_error("%s", error_last());
    if (g_global.threads) device_set_threads((int)g_global.threads);
    return FLAGS_GO;
}

/* ---- the parser -------------------------------------------------------------------------- */

#define MAX_GROUPS 16

/* The entry spelled name[0 .. len) and the struct of its group; NULL when none has it. */
static const KeySpec *find_flag(const KeyGroup *groups, int ngroups, const char *name, size_t len,
                                void **obj) {
    for (int g = 0; g < ngroups; g++)
        for (int i = 0; i < groups[g].n; i++) {
            const KeySpec *k = &groups[g].keys[i];
            if (strlen(k->name) == len && strncmp(k->name, name, len) == 0) {
                *obj = groups[g].obj;
                return k;
            }
        }
    return NULL;
}

/* Apply the flag argv[*i] ("--name", "--name=value", or "--name" with the value after it),
 * leaving *i on the last argument it used. FLAGS_GO, or 2 after printing a usage error. */
static int take_flag(const KeyGroup *groups, int ngroups, int argc, char **argv, int *i) {
    const char *arg = argv[*i], *name = arg + 2, *eq = strchr(name, '=');
    const size_t len = eq ? (size_t)(eq - name) : strlen(name);
    void *obj = NULL;
    const KeySpec *k = find_flag(groups, ngroups, name, len, &obj);
    if (!k) {
        char flag[128];
        const size_t n = len + 2 < sizeof flag ? len + 2 : sizeof flag - 1;
        snprintf(flag, sizeof flag, "%.*s", (int)n, arg);
        return tool_usage_error("unknown option '%s'", flag);
    }
    const char *value = eq ? eq + 1 : NULL;
    if (k->kind == KEY_SWITCH) {
        if (value) return tool_usage_error("--%s takes no value (got '%s')", k->name, arg);
    } else if (!value) {
        if (*i + 1 >= argc) return tool_usage_error("--%s needs a value", k->name);
        value = argv[++*i];
    }
    char label[128];
    snprintf(label, sizeof label, "--%s", k->name);
    if (keys_set(k, obj, value, label) != STATUS_OK) return tool_usage_error("%s", error_last());
    return FLAGS_GO;
}

/* Whether argv element a is a flag ("--x..."); "--" itself and "-x" are not. */
static bool is_flag(const char *a) { return a[0] == '-' && a[1] == '-' && a[2]; }

int flags_parse(const KeyGroup *groups, int ngroups, int max_pos, int argc, char **argv,
                FlagsParsed *out) {
    CHECK(ngroups >= 0 && ngroups < MAX_GROUPS, "flags_parse: %d groups", ngroups);
    KeyGroup all[MAX_GROUPS];
    for (int g = 0; g < ngroups; g++) all[g] = groups[g];
    all[ngroups] = (KeyGroup){GLOBAL_FLAGS, KEY_COUNT(GLOBAL_FLAGS), &g_global};
    const int nall = ngroups + 1;
    int npos = 0, nflags = 0;
    bool flags_done = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!flags_done && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            tool_print_usage(stdout);
            flags_print_help(groups, ngroups, stdout);
            return 0;
        }
        if (!flags_done && strcmp(a, "--") == 0) {
            flags_done = true;
        } else if (!flags_done && is_flag(a)) {
            const int first = i;
            int rc = take_flag(all, nall, argc, argv, &i);
            if (rc != FLAGS_GO) return rc;
            void *obj;
            const char *name = argv[first] + 2, *eq = strchr(name, '=');
            nflags += find_flag(groups, ngroups, name, eq ? (size_t)(eq - name) : strlen(name),
                                &obj) != NULL;
        } else {
            if (max_pos >= 0 && npos >= max_pos)
                return tool_usage_error("unexpected argument '%s'", text_for_message(a));
            argv[npos++] = argv[i]; /* npos <= i: an element not yet read is never overwritten */
        }
    }
    if (out) *out = (FlagsParsed){npos, nflags};
    for (int g = 0; g < ngroups; g++)
        if (groups[g].keys == SIZE_FLAGS) {
            const int64_t size = *(const int64_t *)groups[g].obj;
            if (size % 32)
                return tool_usage_error("--size: %lld is not a multiple of 32", (long long)size);
        } else if (groups[g].keys == PRECISION_FLAGS) {
            const int p = *(const int *)groups[g].obj;
            if (tensor_set_precision((Precision)p) != STATUS_OK)
                return tool_usage_error("--precision %s: %s", PRECISION_NAMES[p], error_last());
        }
    return apply_global();
}

int flags_parse_global(int argc, char **argv, int *next) {
    const KeyGroup global = {GLOBAL_FLAGS, KEY_COUNT(GLOBAL_FLAGS), &g_global};
    int i = 1;
    for (; i < argc && is_flag(argv[i]) && strcmp(argv[i], "--help") != 0; i++) {
        int rc = take_flag(&global, 1, argc, argv, &i);
        if (rc != FLAGS_GO) return rc;
    }
    *next = i;
    return apply_global();
}

/* ---- --help ------------------------------------------------------------------------------ */

/* The value's name: the table's, else one from the kind. */
static void flag_meta(const KeySpec *k, char *buf, size_t cap) {
    buf[0] = 0;
    if (k->kind == KEY_SWITCH) return;
    if (k->meta) {
        snprintf(buf, cap, " %s", k->meta);
        return;
    }
    switch (k->kind) {
    case KEY_ENUM: {
        size_t n = (size_t)snprintf(buf, cap, " ");
        for (int i = 0; k->names[i] && n < cap; i++)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? "|" : "", k->names[i]);
        return;
    }
    case KEY_BOOL: snprintf(buf, cap, " true|false"); return;
    case KEY_INT:
    case KEY_UINT64: snprintf(buf, cap, " N"); return;
    case KEY_DOUBLE: snprintf(buf, cap, " X"); return;
    case KEY_INT_LIST: snprintf(buf, cap, " N,N,..."); return;
    default: snprintf(buf, cap, " TEXT"); return;
    }
}

static void print_flags(const KeySpec *keys, int n, FILE *f) {
    for (int i = 0; i < n; i++) {
        char meta[200], left[256];
        flag_meta(&keys[i], meta, sizeof meta);
        snprintf(left, sizeof left, "--%s%s", keys[i].name, meta);
        if (strlen(left) <= 24) fprintf(f, "  %-24s  %s\n", left, keys[i].help);
        else fprintf(f, "  %s\n  %-24s  %s\n", left, "", keys[i].help);
    }
}

void flags_print_help(const KeyGroup *groups, int ngroups, FILE *f) {
    bool any = false;
    for (int g = 0; g < ngroups; g++) any |= groups[g].n > 0;
    if (any) fprintf(f, "\noptions:\n");
    for (int g = 0; g < ngroups; g++) print_flags(groups[g].keys, groups[g].n, f);
    fprintf(f, "\nglobal options (before or after the command):\n");
    print_flags(GLOBAL_FLAGS, KEY_COUNT(GLOBAL_FLAGS), f);
}
