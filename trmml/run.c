/* run.c — the run directory: configuration file, progress log, checkpoint (trmml/run.h). */
#include "trmml/run.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clip/checkpoint.h"
#include "tensor/keys.h"
#include "tensor/ops/gemm_bf16.h"
#include "clip/safetensors.h"
#include "tensor/json.h"
#include "tensor/sha256.h"
#include "trmml/method.h"
#include "trmml/plot.h"

/* ---- run keys ------------------------------------------------------------------------------ */

#define T RunConfig
/* In the order of Precision (tensor/ops/gemm_bf16.h). */
static const char *const PRECISION_KEY_NAMES[] = {"fp32", "bf16", NULL};

static const KeySpec RUN_KEYS[] = {
    KEY_STR(T, "dataset", dataset, "ds_open name, docs/datasets.md"),
    KEY_STR(T, "root", root, "dataset root"),
    KEY_STR(T, "train_split", train_split, "training split"),
    KEY_STR(T, "test_split", test_split, "evaluation split"),
    KEY_STR(T, "class_list", class_list, "class list file (synthetic world), empty = standard"),
    KEY_STR(T, "model", model, "CLIP checkpoint"),
    KEY_STR(T, "vocab", vocab, "BPE vocabulary, empty = default search"),
    KEY_STR(T, "cached_train", cached_train, "training features (trmml extract), empty = image tower"),
    KEY_STR(T, "cached_test", cached_test, "test features (trmml extract), empty = image tower"),
    KEY_DOUBLE(T, "ratio", ratio, 0, 1e300, "partial-label keep probability, SPEC 6.1"),
    KEY_INT(T, "mask_seed", mask_seed, -1, 4294967295.0,
            "-1 = protocol default (partial 0, single positive 1200)"),
    KEY_ENUM(T, "precision", precision, PRECISION_KEY_NAMES,
             "frozen towers' products: fp32 | bf16 (docs/ops/gemm_bf16.md)"),
};
#undef T

/* The `method` key, read as a word and looked up in the registry (trmml/methods.c), so that
 * the list of methods lives in one place. */
typedef struct {
    char name[32];
} MethodName;
static const KeySpec METHOD_KEY[] = {
    KEY_STR(MethodName, "method", name, "the training method, docs/methods.md"),
};

/* The method's own keys from its defaults; its changes to the shared keys go to *tc (NULL:
 * they are dropped, and the shared keys stay as they are). */
static void default_method_keys(RunConfig *rc, TrmmlConfig *tc) {
    const TrmmlMethodOps *ops = trmml_method_ops(rc->method);
    CHECK(ops->config_size <= sizeof rc->mc.bytes, "method %s: %zu bytes of keys, at most %zu",
          ops->name, ops->config_size, sizeof rc->mc.bytes);
    memset(rc->mc.bytes, 0, sizeof rc->mc.bytes);
    TrmmlConfig scratch = rc->tc;
    if (ops->config_default) ops->config_default(rc->mc.bytes, tc ? tc : &scratch, rc->dataset);
}

RunConfig run_config_default(int method, const char *dataset) {
    RunConfig rc;
    memset(&rc, 0, sizeof rc);
    rc.method = method;
    if (dataset) snprintf(rc.dataset, sizeof rc.dataset, "%s", dataset);
    rc.ratio = 1.0;
    rc.mask_seed = -1; /* resolved by the protocol: 0 partial, 1200 single-positive */
    rc.tc = trmml_config_default();
    default_method_keys(&rc, &rc.tc);
    return rc;
}

static Status set_method(RunConfig *rc, const char *name) {
    const int m = trmml_method_parse(name);
    if (m < 0) {
        char list[256];
        return error_set(STATUS_ERR_USAGE, "config key 'method': expected one of %s, got '%s'",
                         trmml_method_list(list, sizeof list), name);
    }
    if (m != rc->method) {
        rc->method = m;
        default_method_keys(rc, NULL);
    }
    return STATUS_OK;
}

/* The run keys, the shared keys, the keys of rc's method. */
static int config_groups(RunConfig *rc, KeyGroup g[3]) {
    int n;
    const KeySpec *tc_keys = trmml_config_keys(&n);
    const TrmmlMethodOps *ops = trmml_method_ops(rc->method);
    g[0] = (KeyGroup){RUN_KEYS, KEY_COUNT(RUN_KEYS), rc};
    g[1] = (KeyGroup){tc_keys, n, &rc->tc};
    g[2] = (KeyGroup){ops->keys, ops->nkeys, rc->mc.bytes};
    return 3;
}

static bool in_groups(const KeyGroup *g, int ng, const char *key) {
    for (int i = 0; i < ng; i++)
        if (keys_find(g[i].keys, g[i].n, key)) return true;
    return false;
}

/* The error for `key` of method `owner` in a configuration of rc's method. */
static Status foreign_key(const RunConfig *rc, const char *where, const char *key, int owner) {
    return error_set(STATUS_ERR_USAGE,
                     "%s%sconfig key '%s' belongs to method %s, but this configuration's method "
                     "is %s: remove it, or set method = %s (docs/training.md)",
                     where ? where : "", where ? ": " : "", key, trmml_method_name(owner),
                     trmml_method_name(rc->method), trmml_method_name(owner));
}

Status run_config_set(RunConfig *rc, const char *key, const char *value) {
    if (strcmp(key, "method") == 0) return set_method(rc, value);
    KeyGroup g[3];
    const int ng = config_groups(rc, g);
    const int owner = trmml_method_owning_key(key, rc->method);
    if (!in_groups(g, ng, key) && owner >= 0) return foreign_key(rc, NULL, key, owner);
    return keys_set_in(g, ng, key, value);
}

/* Pass 1 of a text: its method (the last `method` line), every other line read into scratch
 * copies that accept the keys of every method, so that syntax errors and unknown keys are
 * reported here with their line. Sets rc's method when the text names one. */
static Status text_method(RunConfig *rc, const char *text, const char *what) {
    const int nm = trmml_method_count();
    RunConfig scratch = *rc;
    MethodName mn = {""};
    KeyGroup *g = xcalloc((size_t)nm + 4, sizeof *g);
    unsigned char *blobs = xcalloc((size_t)nm, RUN_METHOD_CONFIG_BYTES);
    int ng = config_groups(&scratch, g) - 1; /* run and shared keys */
    g[ng++] = (KeyGroup){METHOD_KEY, 1, &mn};
    for (int i = 0; i < nm; i++)
        g[ng++] = (KeyGroup){trmml_methods[i]->keys, trmml_methods[i]->nkeys,
                             blobs + (size_t)i * RUN_METHOD_CONFIG_BYTES};
    Status st = keys_parse_text(g, ng, text, what);
    free(blobs);
    free(g);
    if (st == STATUS_OK && mn.name[0]) {
        st = set_method(rc, mn.name);
        if (st != STATUS_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", error_last());
            st = error_set(st, "%s: %s", what, msg);
        }
    }
    return st;
}

/* Pass 2 reads the keys of the other methods as words into slots of FOREIGN_SLOT bytes whose
 * first byte starts as FOREIGN_UNSET (pass 1 has checked their values against their own
 * tables), so a line that sets one is found after the parse and named with its method. */
#define FOREIGN_SLOT 256
#define FOREIGN_UNSET '\x01'
typedef struct {
    KeySpec *keys;
    int *owner;
    char *slots;
    int n;
} ForeignKeys;

static KeyGroup foreign_group(RunConfig *rc, const KeyGroup *own, int nown, ForeignKeys *f) {
    int total = 0;
    for (int i = 0; i < trmml_method_count(); i++) total += trmml_methods[i]->nkeys;
    f->keys = xcalloc((size_t)total + 1, sizeof *f->keys);
    f->owner = xcalloc((size_t)total + 1, sizeof *f->owner);
    f->slots = xcalloc((size_t)total + 1, FOREIGN_SLOT);
    f->n = 0;
    for (int i = 0; i < trmml_method_count(); i++)
        for (int k = 0; i != rc->method && k < trmml_methods[i]->nkeys; k++) {
            const char *name = trmml_methods[i]->keys[k].name;
            if (in_groups(own, nown, name)) continue;
            f->keys[f->n] = (KeySpec){.name = name, .kind = KEY_STR,
                                      .offset = (size_t)f->n * FOREIGN_SLOT, .size = FOREIGN_SLOT};
            f->slots[(size_t)f->n * FOREIGN_SLOT] = FOREIGN_UNSET;
            f->owner[f->n++] = i;
        }
    return (KeyGroup){f->keys, f->n, f->slots};
}

Status run_config_parse_text(RunConfig *rc, const char *text, const char *what) {
    Status st = text_method(rc, text, what);
    if (st != STATUS_OK) return st;
    MethodName mn;
    snprintf(mn.name, sizeof mn.name, "%s", trmml_method_name(rc->method));
    KeyGroup g[5];
    int ng = config_groups(rc, g);
    ForeignKeys f;
    g[ng] = foreign_group(rc, g, ng, &f);
    g[ng + 1] = (KeyGroup){METHOD_KEY, 1, &mn};
    st = keys_parse_text(g, ng + 2, text, what);
    for (int i = 0; st == STATUS_OK && i < f.n; i++)
        if (f.slots[(size_t)i * FOREIGN_SLOT] != FOREIGN_UNSET)
            st = foreign_key(rc, what, f.keys[i].name, f.owner[i]);
    free(f.keys);
    free(f.owner);
    free(f.slots);
    return st;
}

Status run_config_parse_file(RunConfig *rc, const char *path) {
    uint8_t *buf;
    size_t n;
    Status st = xread_file(path, "configuration file", &buf, &n);
    if (st != STATUS_OK) return st;
    if (memchr(buf, 0, n))
        st = error_set(STATUS_ERR_FORMAT, "%s: not a text file (NUL byte)", path);
    else
        st = run_config_parse_text(rc, (const char *)buf, path);
    free(buf);
    return st;
}

void run_config_print(const RunConfig *rc, FILE *out) {
    MethodName mn;
    snprintf(mn.name, sizeof mn.name, "%s", trmml_method_name(rc->method));
    keys_print(METHOD_KEY, 1, &mn, out);
    KeyGroup g[3];
    const int ng = config_groups((RunConfig *)rc, g);
    for (int i = 0; i < ng; i++) keys_print(g[i].keys, g[i].n, g[i].obj, out);
}

Status run_config_apply_precision(const RunConfig *rc) {
    Status st = tensor_set_precision((Precision)rc->precision);
    if (st != STATUS_OK)
        return error_set(st, "configuration key 'precision' = %s: %s",
                         PRECISION_KEY_NAMES[rc->precision], error_last());
    return STATUS_OK;
}

Status run_config_validate(const RunConfig *rc) {
    if (!rc->dataset[0] || !rc->root[0])
        return error_set(STATUS_ERR_USAGE, "configuration: dataset and root are required");
    if (!rc->model[0])
        return error_set(STATUS_ERR_USAGE, "configuration: model (CLIP checkpoint) is required");
    if (!rc->tc.single_positive && !(rc->ratio > 0 && rc->ratio <= 1))
        return error_set(STATUS_ERR_USAGE, "configuration: ratio %g must lie in (0, 1]", rc->ratio);
    Status st = trmml_config_validate(&rc->tc);
    const TrmmlMethodOps *ops = trmml_method_ops(rc->method);
    if (st == STATUS_OK && ops->config_validate) st = ops->config_validate(rc);
    return st;
}

void run_config_default_splits(RunConfig *rc) {
    const char *train = "train", *test = "test";
    if (strcmp(rc->dataset, "voc2007") == 0) train = "trainval";
    if (strcmp(rc->dataset, "voc2012") == 0 || strcmp(rc->dataset, "coco2014") == 0) test = "val";
    if (!rc->train_split[0]) snprintf(rc->train_split, sizeof rc->train_split, "%s", train);
    if (!rc->test_split[0]) snprintf(rc->test_split, sizeof rc->test_split, "%s", test);
}


/* ---- files --------------------------------------------------------------------------------- */

bool run_path(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

Status run_mkdir(const char *dir) {
    char p[RUN_PATH_MAX];
    if (strlen(dir) >= sizeof p) return error_set(STATUS_ERR_USAGE, "%s: path too long", dir);
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1;; s++) {
        bool end = *s == 0;
        if (*s == '/' || end) {
            *s = 0;
            struct stat sb;
            if (mkdir(p, 0755) != 0 &&
                !(errno == EEXIST && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)))
                return error_set(STATUS_ERR_IO, "%s: cannot create directory (%s)", p,
                                 strerror(errno));
            if (end) break;
            *s = '/';
        }
    }
    return STATUS_OK;
}

/* fsync a file by path (its data reaches the disk before the rename that publishes it). */
static Status fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return error_set(STATUS_ERR_IO, "%s: cannot open to sync (%s)", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? STATUS_OK
                   : error_set(STATUS_ERR_IO, "%s: fsync failed (%s)", path, strerror(errno));
}

Status run_write_file(const char *path, const char *text, size_t n) {
    return xwrite_file_atomic(path, text, n);
}

Status run_log_open(RunLog *log, const char *dir, bool append, FILE *echo) {
    char path[RUN_PATH_MAX];
    if (!run_path(path, sizeof path, dir, "log.txt"))
        return error_set(STATUS_ERR_USAGE, "%s: path too long", dir);
    log->file = xfopen(path, append ? "ab" : "wb");
    log->echo = echo;
    return log->file ? STATUS_OK : STATUS_ERR_IO;
}

void run_log_printf(RunLog *log, const char *fmt, ...) {
    va_list ap;
    if (log->echo) {
        va_start(ap, fmt);
        vfprintf(log->echo, fmt, ap);
        va_end(ap);
        fflush(log->echo);
    }
    if (log->file) {
        va_start(ap, fmt);
        vfprintf(log->file, fmt, ap);
        va_end(ap);
        fflush(log->file);
    }
}

void run_log_close(RunLog *log) {
    if (log->file) fclose(log->file);
    log->file = NULL;
}

/* ---- metrics.jsonl and the training curve ------------------------------------------------ */

char *run_metrics_line(const RunMeta *meta, double loss, const char *eval_json, size_t *n) {
    yajl_val eval = NULL;
    if (eval_json && json_parse(eval_json, "run_metrics_line", &eval) != STATUS_OK)
        CHECK(false, "run_metrics_line: the evaluation is not a JSON object: %s", error_last());
    JsonWriter *w = json_writer_new();
    json_object_begin(w);
    json_key(w, "stage");
    json_int(w, (long long)meta->stage);
    json_key(w, "epoch");
    json_int(w, (long long)meta->epochs_done);
    json_key(w, "global_epoch");
    json_int(w, (long long)meta->global_epochs);
    json_key(w, "step");
    json_int(w, (long long)meta->step);
    json_key(w, "loss");
    json_number(w, loss, 9);
    json_key(w, "eval");
    if (eval) json_value(w, eval);
    else json_null(w);
    json_object_end(w);
    json_free(eval);
    size_t len;
    char *text = json_writer_finish(w, &len);
    text = xrealloc(text, len + 2);
    memcpy(text + len, "\n", 2);
    if (n) *n = len + 1;
    return text;
}

/* One line (NUL-terminated, no newline) of metrics.jsonl into *row; `what` is "FILE:LINE". */
static Status metrics_row(const char *line, const char *what, RunMetricsRow *row) {
    yajl_val v, eval = NULL;
    Status st = json_parse(line, what, &v);
    if (st != STATUS_OK) return st;
    if (st == STATUS_OK) st = json_get_int(v, "stage", what, &row->stage);
    if (st == STATUS_OK) st = json_get_int(v, "epoch", what, &row->epoch);
    if (st == STATUS_OK) st = json_get_int(v, "global_epoch", what, &row->global_epoch);
    if (st == STATUS_OK) st = json_get_int(v, "step", what, &row->step);
    if (st == STATUS_OK) st = json_get_number(v, "loss", what, true, &row->loss);
    if (st == STATUS_OK) st = json_get_object(v, "eval", what, true, &eval);
    row->map = NAN;
    if (st == STATUS_OK && eval) st = json_get_number(eval, "mAP", what, false, &row->map);
    if (st == STATUS_OK && (row->stage < 1 || row->stage > 2 || row->epoch < 1 ||
                            row->global_epoch < row->epoch || row->step < 0))
        st = error_set(STATUS_ERR_FORMAT, "%s: stage %lld, epoch %lld, global_epoch %lld, step "
                       "%lld: expected stage 1 or 2, 1 <= epoch <= global_epoch, step >= 0",
                       what, (long long)row->stage, (long long)row->epoch,
                       (long long)row->global_epoch, (long long)row->step);
    json_free(v);
    return st;
}

Status run_metrics_parse(const char *text, const char *what, RunMetricsRow **rows, int64_t *n) {
    *rows = NULL;
    *n = 0;
    int64_t cap = 0;
    Status st = STATUS_OK;
    char where[RUN_PATH_MAX + 32];
    const char *p = text;
    for (int64_t lineno = 1; *p && st == STATUS_OK; lineno++) {
        const char *nl = strchr(p, '\n');
        const size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *line = xmalloc(len + 1);
        memcpy(line, p, len);
        line[len] = '\0';
        snprintf(where, sizeof where, "%s:%lld", what, (long long)lineno);
        if (*n == cap) *rows = xrealloc(*rows, (size_t)(cap = cap ? 2 * cap : 64) * sizeof **rows);
        st = metrics_row(line, where, &(*rows)[*n]);
        if (st == STATUS_OK) (*n)++;
        free(line);
        p += len + (nl ? 1 : 0);
    }
    if (st != STATUS_OK) {
        free(*rows);
        *rows = NULL;
        *n = 0;
    }
    return st;
}

Status run_metrics_read(const char *path, RunMetricsRow **rows, int64_t *n) {
    uint8_t *text = NULL;
    size_t size = 0;
    *rows = NULL;
    *n = 0;
    Status st = xread_file(path, "metrics file", &text, &size);
    if (st == STATUS_OK && memchr(text, 0, size))
        st = error_set(STATUS_ERR_FORMAT, "%s: holds a NUL byte (not JSON lines)", path);
    if (st == STATUS_OK) st = run_metrics_parse((const char *)text, path, rows, n);
    free(text);
    return st;
}

/* The last path component of the directory holding `path` ("runs/voc-trmml" for
 * "runs/voc-trmml/metrics.jsonl" gives "voc-trmml"), for the title. */
static void run_name_of(const char *path, char *out, size_t cap) {
    char dir[RUN_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    slash = strrchr(dir, '/');
    snprintf(out, cap, "%s", slash ? slash + 1 : dir);
}

Status run_write_curve(const char *metrics_path, const char *png_path) {
    RunMetricsRow *rows;
    int64_t n;
    Status st = run_metrics_read(metrics_path, &rows, &n);
    if (st != STATUS_OK) return st;
    if (n == 0) {
        free(rows);
        return error_set(STATUS_ERR_FORMAT, "%s: no epoch recorded yet, nothing to plot",
                         metrics_path);
    }
    double *x = xmalloc((size_t)n * sizeof *x), *loss = xmalloc((size_t)n * sizeof *loss);
    double *map = xmalloc((size_t)n * sizeof *map), *bound = xmalloc((size_t)n * sizeof *bound);
    int nbound = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = (double)rows[i].global_epoch;
        loss[i] = rows[i].loss;
        map[i] = rows[i].map;
        if (i > 0 && rows[i].stage != rows[i - 1].stage) bound[nbound++] = x[i] - 0.5;
    }
    const char *xlabel = nbound ? "epoch (stages counted together)" : "epoch";
    const PlotSeries ls = {.label = "mean training loss", .x = x, .y = loss, .n = (int)n,
                           .colour = 0x1f77b4, .markers = true};
    const PlotSeries ms = {.label = "test mAP", .x = x, .y = map, .n = (int)n,
                           .colour = 0xd62728, .markers = true};
    const PlotChart charts[2] = {
        {.title = "Loss per epoch", .xlabel = xlabel, .ylabel = "mean loss", .series = &ls,
         .nseries = 1, .vlines = bound, .nvlines = nbound, .vline_label = "stage 1 → 2 boundary",
         .x_integer = true, .legend = PLOT_LEGEND_INSIDE},
        {.title = "Test mAP per evaluated epoch", .xlabel = xlabel, .ylabel = "mAP (%)",
         .series = &ms, .nseries = 1, .vlines = bound, .nvlines = nbound,
         .vline_label = "stage 1 → 2 boundary", .x_integer = true,
         .legend = PLOT_LEGEND_INSIDE},
    };
    char name[RUN_PATH_MAX], title[RUN_PATH_MAX + 32];
    run_name_of(metrics_path, name, sizeof name);
    snprintf(title, sizeof title, "Training curve of %s", name);
    st = plot_charts_png(png_path, RUN_CURVE_W, RUN_CURVE_H, title, charts, 2);
    free(x), free(loss), free(map), free(bound), free(rows);
    return st;
}

/* ---- checkpoint ---------------------------------------------------------------------------- */

static void meta_pack(const RunMeta *m, int64_t *v) {
    memset(v, 0, RUN_META_N * sizeof *v);
    v[0] = RUN_CKPT_MAGIC;
    v[1] = RUN_CKPT_VERSION;
    v[2] = m->method;
    v[3] = m->n_classes;
    v[4] = m->stage;
    v[5] = m->epochs_done;
    v[6] = m->step;
    v[7] = m->global_epochs;
    v[8] = m->history;
    v[9] = m->best_epoch;
    memcpy(&v[10], &m->best_map, sizeof(double)); /* the double's bits, exactly */
    v[11] = m->finished;
}

static void meta_unpack(RunMeta *m, const int64_t *v) {
    m->method = v[2];
    m->n_classes = v[3];
    m->stage = v[4];
    m->epochs_done = v[5];
    m->step = v[6];
    m->global_epochs = v[7];
    m->history = v[8];
    m->best_epoch = v[9];
    memcpy(&m->best_map, &v[10], sizeof(double));
    m->finished = v[11];
}

/* Entry names of the run's own record (run.h). */
#define CKPT_META "trmml.meta"
#define CKPT_CONFIG "trmml.config"
#define CKPT_METRICS "trmml.metrics"
#define CKPT_DIGEST "trmml.sha256"
#define DIGEST_N 32

/* A uint8 tensor holding `text` without its NUL. */
static void add_text(ParamStore *ps, const char *name, const char *text, Tensor **out) {
    *out = param_add(ps, name, DT_U8, 1, SHAPE((int64_t)strlen(text)), false);
}

/* Hash the first size - DIGEST_N bytes of the file `path` and write the digest over its last
 * DIGEST_N bytes (the data of the trmml.sha256 entry, which the writer puts last). */
static Status seal_digest(const char *path) {
    FILE *f = xfopen(path, "r+b");
    if (!f) return STATUS_ERR_IO;
    Status st = STATUS_OK;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size < 8 + DIGEST_N) st = error_set(STATUS_ERR_IO, "%s: cannot size the file", path);
    Sha256 h;
    sha256_init(&h);
    uint8_t buf[1 << 16], digest[DIGEST_N];
    if (st == STATUS_OK && fseek(f, 0, SEEK_SET) != 0)
        st = error_set(STATUS_ERR_IO, "%s: seek failed", path);
    for (long left = size - DIGEST_N; st == STATUS_OK && left > 0;) {
        size_t k = left < (long)sizeof buf ? (size_t)left : sizeof buf;
        st = xfread(buf, 1, k, f, path);
        sha256_update(&h, buf, k);
        left -= (long)k;
    }
    sha256_final(&h, digest);
    /* A read-to-write switch on an update stream needs a seek in between (C11 7.21.5.3). */
    if (st == STATUS_OK && fseek(f, size - DIGEST_N, SEEK_SET) != 0)
        st = error_set(STATUS_ERR_IO, "%s: seek failed", path);
    if (st == STATUS_OK) st = xfwrite(digest, 1, DIGEST_N, f, path);
    if (fclose(f) != 0 && st == STATUS_OK) st = error_set(STATUS_ERR_IO, "%s: write failed", path);
    return st;
}

Status run_checkpoint_write(const char *path, const RunMeta *meta, const char *config,
                            const char *metrics, const RunTensor *t, int n) {
    ParamStore *ps = param_store_create(DEVICE_CPU, "checkpoint");
    Tensor *mt = param_add(ps, CKPT_META, DT_I64, 1, SHAPE(RUN_META_N), false);
    Tensor *ct, *ht;
    add_text(ps, CKPT_CONFIG, config, &ct);
    add_text(ps, CKPT_METRICS, metrics, &ht);
    Tensor **dst = xcalloc((size_t)n + 1, sizeof *dst);
    for (int i = 0; i < n; i++) {
        CHECK(t[i].t, "checkpoint: '%s' has no tensor", t[i].name);
        dst[i] = param_add(ps, t[i].name, t[i].t->dtype, t[i].t->ndim, t[i].t->shape, false);
    }
    /* Last, so its data is the file's last DIGEST_N bytes (safetensors_write keeps store order). */
    Tensor *dt = param_add(ps, CKPT_DIGEST, DT_U8, 1, SHAPE(DIGEST_N), false);
    param_store_finalize(ps);
    meta_pack(meta, (int64_t *)mt->data);
    memcpy(ct->data, config, strlen(config));
    memcpy(ht->data, metrics, strlen(metrics));
    memset(dt->data, 0, DIGEST_N);
    for (int i = 0; i < n; i++) /* from wherever the run keeps it (a device: copied down) */
        if (t[i].t->numel) tensor_copy(dst[i], t[i].t);
    free(dst);
    /* safetensors_write publishes `stage` by rename; seal and sync it, then publish it as
     * `path`. */
    char stage[RUN_PATH_MAX + 8];
    snprintf(stage, sizeof stage, "%s.new", path);
    Status st = safetensors_write(stage, ps);
    param_store_destroy(ps);
    if (st == STATUS_OK) st = seal_digest(stage);
    if (st == STATUS_OK) st = fsync_path(stage);
    if (st == STATUS_OK && rename(stage, path) != 0)
        st = error_set(STATUS_ERR_IO, "%s: cannot rename to %s", stage, path);
    if (st != STATUS_OK) remove(stage);
    return st;
}

/* The trmml.meta values of a parsed store, or NULL when it has no valid meta tensor. */
static const int64_t *meta_values(ParamStore *ps) {
    Tensor *mt = param_find(ps, CKPT_META);
    if (!mt || mt->dtype != DT_I64 || mt->ndim != 1 || mt->shape[0] != RUN_META_N ||
        ((int64_t *)mt->data)[0] != RUN_CKPT_MAGIC)
        return NULL;
    return (const int64_t *)mt->data;
}

/* The refusal of a checkpoint of another version: what changed since, and what to do. */
static Status other_version(const char *path, int64_t version) {
    return error_set(STATUS_ERR_FORMAT,
                     "%s: checkpoint version %lld, this program reads version %d (%s); train the "
                     "run again, or use it with the program that wrote it",
                     path, (long long)version, RUN_CKPT_VERSION,
                     version == 2 ? "since version 3 the configuration it carries holds the shared "
                                    "keys and its method's keys only, docs/methods.md"
                                  : "since version 2 a checkpoint carries its configuration and a "
                                    "SHA-256, since version 3 only its method's keys");
}

/* Why a file whose digest does not match was refused: an older version, or damage. */
static Status digest_mismatch(const char *path, const uint8_t *buf, size_t size) {
    ParamStore *ps = NULL;
    CkptOptions opt = {.skip_digest = true};
    const int64_t *v = NULL;
    const bool parses = ckpt_load_memory(buf, size, path, &opt, &ps, NULL) == STATUS_OK;
    if (parses) v = meta_values(ps);
    Status st =
        parses && !v
            ? error_set(STATUS_ERR_FORMAT,
                        "%s: not a trmml training checkpoint (no trmml.meta tensor with the magic "
                        "number)",
                        path)
        : v && v[1] != RUN_CKPT_VERSION
            ? other_version(path, v[1])
            : error_set(STATUS_ERR_FORMAT,
                        "%s: the file is damaged (its SHA-256 does not match the one stored in "
                        "it: truncated, or bytes changed on disk)",
                        path);
    param_store_destroy(ps);
    return st;
}

/* A uint8 entry as an owned NUL-terminated string, or NULL when absent or of another form. */
static char *entry_text(ParamStore *ps, const char *name) {
    Tensor *t = param_find(ps, name);
    if (!t || t->dtype != DT_U8 || t->ndim != 1) return NULL;
    char *s = xmalloc((size_t)t->numel + 1);
    if (t->numel) memcpy(s, t->data, (size_t)t->numel);
    s[t->numel] = 0;
    return strlen(s) == (size_t)t->numel ? s : (free(s), NULL);
}

/* The record's own consistency: config and metrics present, metrics of meta.history lines. */
static Status check_record(const RunCheckpoint *ck) {
    if (!ck->config || !ck->metrics)
        return error_set(STATUS_ERR_FORMAT, "%s: no %s text", ck->path,
                         ck->config ? CKPT_METRICS : CKPT_CONFIG);
    int64_t lines = 0;
    for (const char *p = ck->metrics; *p; p++) lines += *p == '\n';
    size_t n = strlen(ck->metrics);
    if (lines != ck->meta.history || (n && ck->metrics[n - 1] != '\n'))
        return error_set(STATUS_ERR_FORMAT, "%s: %s holds %lld lines, the counters say %lld",
                         ck->path, CKPT_METRICS, (long long)lines, (long long)ck->meta.history);
    return STATUS_OK;
}

Status run_checkpoint_open(const char *path, RunCheckpoint *ck) {
    memset(ck, 0, sizeof *ck);
    if (strlen(path) >= sizeof ck->path) return error_set(STATUS_ERR_USAGE, "%s: path too long", path);
    snprintf(ck->path, sizeof ck->path, "%s", path);
    uint8_t *buf = NULL;
    size_t size = 0;
    Status st = xread_file(path, "run checkpoint", &buf, &size);
    if (st != STATUS_OK) return st;
    /* The digest first: nothing of a damaged file is trusted, not even its header. */
    uint8_t digest[DIGEST_N];
    if (size >= 8 + DIGEST_N) {
        Sha256 h;
        sha256_init(&h);
        sha256_update(&h, buf, size - DIGEST_N);
        sha256_final(&h, digest);
    }
    if (size < 8 + DIGEST_N || memcmp(digest, buf + size - DIGEST_N, DIGEST_N) != 0) {
        st = digest_mismatch(path, buf, size);
        free(buf);
        return st;
    }
    CkptOptions opt = {.skip_digest = true};
    st = ckpt_load_memory(buf, size, path, &opt, &ck->ps, NULL);
    free(buf);
    if (st != STATUS_OK) return st;
    const int64_t *v = meta_values(ck->ps);
    if (!v)
        st = error_set(STATUS_ERR_FORMAT,
                       "%s: not a trmml training checkpoint (no trmml.meta tensor with the magic "
                       "number)",
                       path);
    else if (v[1] != RUN_CKPT_VERSION)
        st = other_version(path, v[1]);
    if (st == STATUS_OK) {
        meta_unpack(&ck->meta, v);
        ck->config = entry_text(ck->ps, CKPT_CONFIG);
        ck->metrics = entry_text(ck->ps, CKPT_METRICS);
        st = check_record(ck);
    }
    if (st != STATUS_OK) run_checkpoint_close(ck);
    return st;
}

Status run_checkpoint_restore(const RunCheckpoint *ck, const RunTensor *t, int n) {
    for (int i = 0; i < n; i++) {
        if (!t[i].t) continue;
        Tensor *s = param_find(ck->ps, t[i].name);
        if (!s) return error_set(STATUS_ERR_FORMAT, "%s: tensor '%s' is missing", ck->path, t[i].name);
        if (s->dtype != t[i].t->dtype || !tensor_same_shape(s, t[i].t))
            return error_set(STATUS_ERR_FORMAT, "%s: tensor '%s' is %s %s, expected %s %s",
                             ck->path, t[i].name, dtype_name(s->dtype), tensor_shape_str(s),
                             dtype_name(t[i].t->dtype), tensor_shape_str(t[i].t));
        if (s->numel) tensor_copy(t[i].t, s); /* onto the run's device */
    }
    return STATUS_OK;
}

void run_checkpoint_close(RunCheckpoint *ck) {
    free(ck->config);
    free(ck->metrics);
    param_store_destroy(ck->ps);
    memset(ck, 0, sizeof *ck);
}

/* ---- the configuration of a checkpoint ----------------------------------------------------- */

/* Keys that say where files are on this machine: a run may move, so config.txt may change
 * them. Everything else is the run's recipe and is fixed by its checkpoint. */
/* Keys a resume may change: where files are (root, class_list, model, vocab, the caches: a run
 * moves with its data), and how a step is split to fit in memory (micro_batch, text_chunk:
 * the same sums in another order, so the run continues equal up to rounding, docs/testing.md).
 * A feature cache may move but not appear or vanish: cached features (float16, un-augmented)
 * and the image tower are different training. `saved` and `given` are the printed values. */
static bool may_change(const char *key, const char *saved, const char *given) {
    static const char *const KEYS[] = {"root",         "class_list",  "model",      "vocab",
                                       "cached_train", "cached_test", "micro_batch", "text_chunk"};
    bool listed = false;
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) listed |= strcmp(key, KEYS[i]) == 0;
    if (listed && strncmp(key, "cached_", 7) == 0)
        return (strcmp(saved, "\"\"") == 0) == (strcmp(given, "\"\"") == 0);
    return listed;
}

static char *print_config(const RunConfig *rc) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    CHECK(f, "open_memstream");
    run_config_print(rc, f);
    fclose(f);
    return buf;
}

/* The first key that may not change (may_change) where `file` and `saved` differ: an error
 * naming `path`, the key and both settings. */
static Status compare_recipe(const RunConfig *saved, const RunConfig *file, const char *path) {
    if (saved->method != file->method)
        return error_set(STATUS_ERR_FORMAT,
                         "%s: key 'method' reads '%s', but the run's checkpoint was written by "
                         "method %s; put the line back, or train a new run into another --out",
                         path, trmml_method_name(file->method), trmml_method_name(saved->method));
    KeyGroup gs[3], gf[3];
    int ng = config_groups((RunConfig *)saved, gs);
    config_groups((RunConfig *)file, gf);
    for (int g = 0; g < ng; g++)
        for (int i = 0; i < gs[g].n; i++) {
            const KeySpec *k = &gs[g].keys[i];
            char va[RUN_PATH_MAX + 8], vb[RUN_PATH_MAX + 8];
            keys_format(k, gs[g].obj, va, sizeof va);
            keys_format(k, gf[g].obj, vb, sizeof vb);
            if (strcmp(va, vb) == 0 || may_change(k->name, va, vb)) continue;
            return error_set(STATUS_ERR_FORMAT,
                             "%s: key '%s' reads '%s = %s', but the run's checkpoint was written "
                             "with '%s = %s'; a run's settings cannot change once it has started "
                             "(only where files are: root, class_list, model, vocab, cached_train, "
                             "cached_test, and how a step is split: micro_batch, text_chunk): put "
                             "the line back, or train a new run into another --out",
                             path, k->name, k->name, vb, k->name, va);
        }
    return STATUS_OK;
}

Status run_config_of_checkpoint(const RunCheckpoint *ck, const char *config_path, RunConfig *rc,
                                bool *intact) {
    RunConfig saved = run_config_default(TRMML_METHOD_TRMML, NULL);
    char what[RUN_PATH_MAX + 32];
    snprintf(what, sizeof what, "%s (%s)", ck->path, CKPT_CONFIG);
    Status st = run_config_parse_text(&saved, ck->config, what);
    if (st != STATUS_OK) return st;
    /* config.txt over the checkpoint's copy: a key it lacks keeps the checkpoint's value. */
    *rc = saved;
    const bool present = access(config_path, F_OK) == 0;
    if (present && (st = run_config_parse_file(rc, config_path)) != STATUS_OK) return st;
    if ((st = compare_recipe(&saved, rc, config_path)) != STATUS_OK) return st;
    if (intact) {
        char *want = print_config(rc);
        uint8_t *have = NULL;
        size_t n = 0;
        *intact = present &&
                  xread_file(config_path, "run configuration", &have, &n) == STATUS_OK &&
                  n == strlen(want) && memcmp(have, want, n) == 0;
        free(want);
        free(have);
    }
    return STATUS_OK;
}

/* ---- the lock of a run directory ----------------------------------------------------------- */

/* "pid=P host=H started=T" of this process. */
static void holder_line(char *buf, size_t cap) {
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    time_t now = time(NULL);
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(buf, cap, "pid=%ld host=%s started=%s\n", (long)getpid(), host, when);
}

Status run_lock(const char *dir, RunLock *lock) {
    lock->fd = -1;
    char path[RUN_PATH_MAX];
    if (!run_path(path, sizeof path, dir, ".lock"))
        return error_set(STATUS_ERR_USAGE, "%s: path too long", dir);
    /* O_NOFOLLOW and a regular file only: the lock file is truncated below, and a symbolic
     * link planted in a shared runs folder must not make that truncate another file. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return error_set(STATUS_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return error_set(STATUS_ERR_IO, "%s: not a regular file (the run's lock file)", path);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        char holder[256] = {0};
        ssize_t k = pread(fd, holder, sizeof holder - 1, 0);
        holder[k > 0 ? k : 0] = 0;
        holder[strcspn(holder, "\n")] = 0;
        close(fd);
        if (err != EWOULDBLOCK)
            return error_set(STATUS_ERR_IO, "%s: cannot lock (%s)", path, strerror(err));
        return error_set(STATUS_ERR_IO,
                         "%s is in use by another trmml train (%s, in %s); wait for it to end, "
                         "or choose another --out",
                         dir, holder[0] ? holder : "holder unknown", path);
    }
    char line[512];
    holder_line(line, sizeof line);
    /* Who holds it, for the message of the next one; the flock is the lock, not the text. */
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, strlen(line), 0) != (ssize_t)strlen(line)) {
        const int err = errno;
        close(fd);
        return error_set(STATUS_ERR_IO, "%s: cannot write (%s)", path, strerror(err));
    }
    lock->fd = fd;
    return STATUS_OK;
}

void run_unlock(RunLock *lock) {
    if (lock->fd >= 0) close(lock->fd);
    lock->fd = -1;
}
