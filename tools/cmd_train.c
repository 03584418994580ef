/* cmd_train.c — `trmml train`, `trmml eval`, `trmml predict`, `trmml visualize`: the training
 * program (trmml/train.h) and the use of its run directory (trmml/evaluate.h). */
#include <limits.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/image.h"
#include "tensor/device.h"
#include "tensor/dist.h"
#include "tensor/text.h"
#include "tools/command.h"
#include "tools/flags.h"
#include "trmml/evaluate.h"
#include "trmml/plot.h"
#include "trmml/train.h"

/* Copy an existing path as an absolute one (the run directory must not depend on the working
 * directory); a path that does not exist is kept as given, so the open names it. */
static void set_path(char *dst, size_t cap, const char *src) {
    char abs[PATH_MAX];
    const char *p = realpath(src, abs) ? abs : src;
    size_t n = strlen(p);
    if (n >= cap) p = src, n = strlen(src) < cap ? strlen(src) : cap - 1;
    memcpy(dst, p, n);
    dst[n] = 0;
}

typedef struct {
    DatasetFlags ds; /* --dataset --root --class-list */
    ModelFlags model;
    const char *method, *out, *config, *cached, *cached_test;
    const char *ratio, *seed, *epochs, *batch, *micro_batch, *eval_every, *text_chunk, *precision;
    KeyArgList set; /* --set KEY=VALUE */
    bool resume, no_carl, single_positive, cache_any_filter;
    bool no_kd, no_mmcp, no_mmcl, no_kap, no_cap, no_ifm, no_dma_t2v, no_dma_v2t;
} TrainFlags;

#define T TrainFlags
static const KeySpec TRAIN_FLAGS[] = {
    FLAG_ARG(T, "method", method, "trmml|dualcoop|baseline|pvlr", "the method (default trmml)"),
    FLAG_ARG(T, "out", out, "RUN_DIR", "the run directory"),
    FLAG_SWITCH(T, "resume", resume, "continue the run in RUN_DIR (give only --out with it)"),
    FLAG_ARG(T, "config", config, "FILE", "configuration keys (key = value, as config.txt)"),
    FLAG_ARG(T, "cached", cached, "TRAIN.feat", "training features from `trmml extract`"),
    FLAG_ARG(T, "cached-test", cached_test, "TEST.feat", "test features from `trmml extract`"),
    FLAG_SWITCH(T, "cache-any-filter", cache_any_filter,
                "accept caches extracted with another resize filter than the method's"),
    FLAG_ARG(T, "ratio", ratio, "R",
             "partial-label protocol: the share of labels kept (SPEC §6.1)"),
    FLAG_SWITCH(T, "single-positive", single_positive, "single-positive protocol (SPEC §6.7)"),
    FLAG_ARG(T, "seed", seed, "S", "configuration key seed"),
    FLAG_ARG(T, "epochs", epochs, "N", "configuration key epochs"),
    FLAG_ARG(T, "batch", batch, "B", "configuration key batch_size"),
    FLAG_ARG(T, "micro-batch", micro_batch, "M",
             "configuration key micro_batch: split each batch for memory (same result)"),
    FLAG_ARG(T, "eval-every", eval_every, "N", "configuration key eval_every (epochs)"),
    FLAG_ARG(T, "text-chunk", text_chunk, "K", "configuration key text_chunk"),
    FLAG_ARG(T, "precision", precision, "fp32|bf16",
             "configuration key precision: the frozen towers' products (docs/ops/gemm_bf16.md)"),
    FLAG_SWITCH(T, "no-carl", no_carl, "train the Table-3 baseline (method baseline)"),
    FLAG_SWITCH(T, "no-kd", no_kd, "use_kd = false (Table 3)"),
    FLAG_SWITCH(T, "no-mmcp", no_mmcp, "use_mmcp = false (Table 3)"),
    FLAG_SWITCH(T, "no-mmcl", no_mmcl, "use_mmcl = false (Table 3)"),
    FLAG_SWITCH(T, "no-kap", no_kap, "PVLR without KAP (docs/pvlr.md)"),
    FLAG_SWITCH(T, "no-cap", no_cap, "PVLR without CAP"),
    FLAG_SWITCH(T, "no-ifm", no_ifm, "PVLR without IFM"),
    FLAG_SWITCH(T, "no-dma-t2v", no_dma_t2v, "PVLR without DMA's text-to-visual attention"),
    FLAG_SWITCH(T, "no-dma-v2t", no_dma_v2t, "PVLR without DMA's visual-to-text attention"),
    FLAG_LIST(T, "set", set, "KEY=VALUE", "any configuration key (repeatable; applied last)"),
};

/* The flags above that set one configuration key (trmml/trmml_config.c, trmml/run.c), applied
 * after --config: the field, the key, and for a switch the value it sets. */
static const struct {
    size_t field;
    const char *key, *value;
} CONFIG_FLAGS[] = {
    {offsetof(T, ratio), "ratio", NULL},
    {offsetof(T, seed), "seed", NULL},
    {offsetof(T, epochs), "epochs", NULL},
    {offsetof(T, batch), "batch_size", NULL},
    {offsetof(T, micro_batch), "micro_batch", NULL},
    {offsetof(T, eval_every), "eval_every", NULL},
    {offsetof(T, text_chunk), "text_chunk", NULL},
    {offsetof(T, precision), "precision", NULL},
    {offsetof(T, single_positive), "single_positive", "true"},
    {offsetof(T, cache_any_filter), "cache_any_filter", "true"},
    {offsetof(T, no_kd), "use_kd", "false"},
    {offsetof(T, no_mmcp), "use_mmcp", "false"},
    {offsetof(T, no_mmcl), "use_mmcl", "false"},
    {offsetof(T, no_kap), "pvlr_kap", "false"},
    {offsetof(T, no_cap), "pvlr_cap", "false"},
    {offsetof(T, no_ifm), "pvlr_ifm", "false"},
    {offsetof(T, no_dma_t2v), "pvlr_dma_t2v", "false"},
    {offsetof(T, no_dma_v2t), "pvlr_dma_v2t", "false"},
};
#undef T

/* run_config_set, with a failure reported as a usage error naming `label` (a flag). */
static int set_key(RunConfig *rc, const char *label, const char *key, const char *value) {
    return run_config_set(rc, key, value) == STATUS_OK
               ? 0
               : tool_usage_error("%s: %s", label, error_last());
}

/* Apply the flags after --config: paths (made absolute), configuration keys, then --set. 0, or
 * the exit status of a usage error. */
static int apply_flags(RunConfig *rc, const TrainFlags *f) {
    const struct {
        const char *value;
        char *dst;
    } paths[] = {{f->ds.root, rc->root},           {f->model.model, rc->model},
                 {f->cached, rc->cached_train},     {f->cached_test, rc->cached_test},
                 {f->ds.class_list, rc->class_list}, {f->model.vocab, rc->vocab}};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (paths[i].value) set_path(paths[i].dst, RUN_PATH_MAX, paths[i].value);
    if (f->ds.dataset && set_key(rc, "--dataset", "dataset", f->ds.dataset)) return 2;
    for (size_t c = 0; c < sizeof CONFIG_FLAGS / sizeof CONFIG_FLAGS[0]; c++) {
        const char *field = (const char *)f + CONFIG_FLAGS[c].field, *value = CONFIG_FLAGS[c].value;
        if (!value) value = *(const char *const *)field;
        else if (!*(const bool *)field) value = NULL;
        const KeySpec *k = TRAIN_FLAGS;
        while (k->offset != CONFIG_FLAGS[c].field) k++; /* the flag, for messages */
        char label[64];
        snprintf(label, sizeof label, "--%s", k->name);
        if (value && set_key(rc, label, CONFIG_FLAGS[c].key, value)) return 2;
    }
    for (int i = 0; i < f->set.n; i++) {
        char kv[2 * RUN_PATH_MAX];
        snprintf(kv, sizeof kv, "%s", f->set.item[i].value);
        char *eq = strchr(kv, '=');
        if (!eq) return tool_usage_error("--set '%s': expected KEY=VALUE", f->set.item[i].value);
        *eq = 0;
        if (set_key(rc, "--set", kv, eq + 1)) return 2;
    }
    return 0;
}

static int train(const TrainFlags *f);

#define TRAIN_USAGE                                                                              \
    "trmml train --method trmml|dualcoop|baseline|pvlr --dataset NAME --root DIR --model CLIP\n" \
    "            --out RUN_DIR [--ratio R | --single-positive] [options]\n"                    \
    "trmml train --out RUN_DIR --resume\n"                                                       \
    "  Trains a method on the partial-label (--ratio, SPEC §6.1) or single-positive (§6.7)\n"  \
    "  protocol and evaluates on the test split every --eval-every epochs. Precedence: the\n"    \
    "  method's defaults, then --config (key = value, see config.txt of any run), then flags,\n" \
    "  then --set. --cached/--cached-test read features written by `trmml extract`; without\n"  \
    "  them the image tower runs on augmented images. A cache extracted with another resize\n"  \
    "  filter than the method's (bicubic; DualCoOp bilinear) is refused unless\n"              \
    "  --cache-any-filter. RUN_DIR receives config.txt, log.txt, metrics.jsonl, ap.csv and\n"  \
    "  checkpoint.safetensors (written every epoch); --resume continues a run from its\n"       \
    "  checkpoint with its saved configuration (docs/training.md)."

COMMAND(train, "train TRM-ML, DualCoOp, PVLR or the Table-3 baseline on a frozen CLIP", TRAIN_USAGE) {
    TrainFlags f = {.method = "trmml"};
    const KeyGroup groups[] = {DATASET_GROUP(&f.ds, DATASET_RUN), MODEL_GROUP(&f.model),
                               FLAGS_OF(TRAIN_FLAGS, &f)};
    FlagsParsed fp;
    int rv = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, &fp);
    if (rv == FLAGS_GO && !f.out) rv = tool_usage_error("--out RUN_DIR is required");
    if (rv == FLAGS_GO && f.resume && fp.nflags != 2)
        rv = tool_usage_error("with --resume the configuration comes from the run in %s (its "
                              "checkpoint); give only --out and --resume", f.out);
    if (rv == FLAGS_GO) rv = train(&f);
    free(f.set.item);
    return rv;
}

/* `trmml train` once its flags are read. */
/* A new run's configuration: the method's defaults, --config, the flags; the model and the
 * dataset root must exist. 0, or the exit status after printing why. */
static int new_run_config(const TrainFlags *f, RunConfig *rc) {
    int method = trmml_method_parse(f->method);
    if (method < 0) {
        char names[256];
        fprintf(stderr, "trmml train: --method '%s': expected one of %s\n", f->method,
                trmml_method_list(names, sizeof names));
        return 2;
    }
    if (f->no_carl) method = trmml_method_parse("baseline");
    *rc = run_config_default(method, f->ds.dataset);
    if (f->config) {
        Status st = run_config_parse_file(rc, f->config);
        if (st != STATUS_OK) return tool_fail(st);
        if (rc->method != method) {
            fprintf(stderr, "trmml train: %s says method = %s, the command line %s\n", f->config,
                    trmml_method_name(rc->method), trmml_method_name(method));
            return 2;
        }
    }
    if (apply_flags(rc, f)) return 2;
    if (!rc->dataset[0] || !rc->root[0] || !rc->model[0])
        return tool_usage_error("--dataset, --root and --model are required");
    if (access(rc->model, R_OK) != 0) {
        fprintf(stderr,
                "trmml train: CLIP checkpoint '%s' not found\n"
                "HINT: place OpenAI's RN101.pt (or RN50.pt) there; README \"Weights and datasets\" "
                "and docs/clip.md say where to get it\n",
                rc->model);
        return 1;
    }
    if (access(rc->root, R_OK) != 0) {
        fprintf(stderr,
                "trmml train: dataset root '%s' not found\n"
                "HINT: docs/datasets.md gives where to get %s and the layout expected under the "
                "root\n",
                rc->root, rc->dataset);
        return 1;
    }
    run_config_default_splits(rc);
    return 0;
}

static int train(const TrainFlags *f) {
    Status st = tool_device_select(NULL);
    if (st != STATUS_OK) return tool_fail(st);
    TrainOptions opt = {.echo = stderr, .progress_bar = isatty(fileno(stderr)) != 0};
    if (f->resume) { /* the configuration is the checkpoint's own (trmml_train_run) */
        opt.resume = true;
        st = trmml_train_run(NULL, f->out, &opt);
        return st == STATUS_OK ? 0 : tool_fail(st);
    }
    RunConfig rc;
    int rc_exit = new_run_config(f, &rc);
    if (rc_exit) return rc_exit;
    st = run_config_validate(&rc);
    if (st == STATUS_OK) st = trmml_train_run(&rc, f->out, &opt);
    return st == STATUS_OK ? 0 : tool_fail(st);
}

/* The flags of the run-directory commands. */
typedef struct {
    const char *cached_test, *out;
    int64_t top;
} UseFlags;

static const KeySpec EVAL_FLAGS[] = {
    FLAG_ARG(UseFlags, "cached-test", cached_test, "TEST.feat",
             "test features (default: the run's cache, else the image tower)"),
};
static const KeySpec TOP_FLAGS[] = {
    FLAG_INT(UseFlags, "top", top, 1, 1000, "K", "classes shown per image"),
    FLAG_ARG(UseFlags, "out", out, "PNG", "the picture to write"), /* visualize only */
};

COMMAND(eval, "evaluate a training run on its test split (mAP family JSON, per-class AP CSV)",
        "trmml eval RUN_DIR [--cached-test TEST.feat]\n"
        "  Prints the JSON object of `trmml metrics` (mAP, AP per class, CP/CR/CF1/OP/OR/OF1,\n"
        "  top-3), and writes RUN_DIR/eval.json and RUN_DIR/ap.csv (class,AP). Test features come\n"
        "  from --cached-test, else from the run's cache, else from the image tower.") {
    UseFlags o = {0};
    const KeyGroup groups[] = {FLAGS_OF(EVAL_FLAGS, &o)};
    FlagsParsed fp;
    int rc = flags_parse(groups, KEY_COUNT(groups), 1, argc, argv, &fp);
    if (rc != FLAGS_GO) return rc;
    if (fp.npos != 1) return tool_usage_error("expected one RUN_DIR");
    const char *const *pos = (const char *const *)argv;
    Status st = tool_device_select(NULL);
    if (st != STATUS_OK) return tool_fail(st);
    TrmmlRun run;
    if ((st = trmml_run_open(pos[0], &run)) != STATUS_OK) return tool_fail(st);
    const RunConfig *c = &run.cfg;
    Dataset *ds = NULL;
    DsOptions dopt = {.class_list = c->class_list[0] ? c->class_list : NULL};
    TrmmlBatchSource src = {0};
    TrmmlEval ev = {0};
    st = ds_open(c->dataset, c->root, c->test_split, &dopt, &ds);
    if (st == STATUS_OK && ds->c != run.C)
        st = error_set(STATUS_ERR_FORMAT, "%s %s has %lld classes, the run %lld", c->dataset,
                       c->test_split, (long long)ds->c, (long long)run.C);
    const char *cache = o.cached_test ? o.cached_test : c->cached_test;
    if (st == STATUS_OK)
        st = cache[0] ? trmml_source_cache(&src, cache, ds, run.clip, c->tc.input_size)
                      : trmml_source_images(&src, ds, run.clip, c->tc.input_size,
                                            run.model.ops->test_transform, false);
    /* Under mpirun the ranks share the scoring (trmml_scores) and rank 0 writes and prints. */
    st = dist_agree(st);
    if (st == STATUS_OK) st = trmml_evaluate(&run.model, &src, ds, TRMML_EVAL_BATCH, &ev);
    const bool root = dist_is_root();
    char path[RUN_PATH_MAX];
    if (st == STATUS_OK && root && run_path(path, sizeof path, pos[0], "ap.csv"))
        st = trmml_write_ap_csv(path, run.names, ev.ap, run.C);
    if (st == STATUS_OK && root && run_path(path, sizeof path, pos[0], "eval.json")) {
        char *text = xmalloc(strlen(ev.json) + 2);
        sprintf(text, "%s\n", ev.json);
        st = xwrite_file_atomic(path, text, strlen(text));
        free(text);
    }
    if (st == STATUS_OK && root) printf("%s\n", ev.json);
    st = dist_agree(st);
    trmml_eval_free(&ev);
    trmml_source_close(&src);
    ds_free(ds);
    trmml_run_close(&run);
    return st == STATUS_OK ? 0 : tool_fail(st);
}

/* Class indices of p (C) sorted by descending probability (ties: lower index first). */
static void rank_classes(const float *p, int64_t C, int *order) {
    for (int c = 0; c < C; c++) order[c] = c;
    for (int a = 1; a < C; a++)
        for (int b = a; b > 0 && p[order[b]] > p[order[b - 1]]; b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
}

COMMAND(predict, "top classes of images under a trained run",
        "trmml predict RUN_DIR IMAGE... [--top K]\n"
        "  Runs the image tower on each image (the method's test transform) and the run's head;\n"
        "  prints, per image, its K (default 5) most probable classes, one line each:\n"
        "  IMAGE<TAB>probability<TAB>class.") {
    UseFlags o = {.top = 5};
    const KeyGroup groups[] = {{TOP_FLAGS, 1, &o}}; /* --top */
    FlagsParsed fp;
    int rc = flags_parse(groups, KEY_COUNT(groups), -1, argc, argv, &fp);
    if (rc != FLAGS_GO) return rc;
    if (fp.npos < 2) return tool_usage_error("expected RUN_DIR and at least one IMAGE");
    const char *const *pos = (const char *const *)argv;
    const int npos = fp.npos;
    Status st = tool_device_select(NULL);
    Image *ims = xcalloc((size_t)npos, sizeof *ims);
    for (int i = 1; i < npos && st == STATUS_OK; i++) st = image_load(pos[i], &ims[i], NULL);
    TrmmlRun run;
    bool open = false;
    if (st == STATUS_OK) open = (st = trmml_run_open(pos[0], &run)) == STATUS_OK;
    if (st == STATUS_OK) {
        Tensor *gp, *gn;
        trmml_model_text_features(&run.model, &gp, &gn);
        int *order = xcalloc((size_t)run.C, sizeof *order);
        for (int i = 1; i < npos; i++) {
            const size_t mark = arena_mark(tensor_arena());
            float *p = tensor_to_host(
                trmml_model_probs(&run.model, trmml_image_dense(&run.model, &ims[i]), gp, gn));
            rank_classes(p, run.C, order);
            for (int k = 0; k < o.top && k < run.C; k++)
                printf("%s\t%.6f\t%s\n", pos[i], p[order[k]], run.names[order[k]]);
            free(p);
            arena_release(tensor_arena(), mark);
        }
        free(order);
        tensor_step_end();
    }
    if (open) trmml_run_close(&run);
    for (int i = 0; i < npos; i++) image_free(&ims[i]);
    free(ims);
    return st == STATUS_OK ? 0 : tool_fail(st);
}

COMMAND(visualize, "heat maps of the regions a trained run matches for an image's top classes",
        "trmml visualize RUN_DIR IMAGE --out PNG [--top K]\n"
        "  TRM-ML: the soft regions R = sigmoid(Phi) (SPEC §4.2, Eq. 2) of the K (default 3) most\n"
        "  probable classes; DualCoOp: its spatial weights w (SPEC §3), scaled to a maximum of 1;\n"
        "  PVLR: the text->visual attention of DMA per class (SPEC §5.5), scaled alike.\n"
        "  The HW grid is upsampled bilinearly and blended over the image; the PNG holds the K\n"
        "  panels side by side, each captioned with its class and probability (an image under\n"
        "  256 px wide is scaled up so the caption fits), and stdout lists them:\n"
        "  panel<TAB>probability<TAB>class.") {
    UseFlags o = {.top = 3};
    const KeyGroup groups[] = {FLAGS_OF(TOP_FLAGS, &o)};
    FlagsParsed fp;
    int rc = flags_parse(groups, KEY_COUNT(groups), 2, argc, argv, &fp);
    if (rc != FLAGS_GO) return rc;
    if (fp.npos != 2 || !o.out) return tool_usage_error("expected RUN_DIR IMAGE --out PNG");
    const char *const *pos = (const char *const *)argv;
    Status st = tool_device_select(NULL);
    Image im = {0};
    if (st == STATUS_OK) st = image_load(pos[1], &im, NULL);
    TrmmlRun run;
    bool open = false;
    if (st == STATUS_OK) open = (st = trmml_run_open(pos[0], &run)) == STATUS_OK;
    if (st == STATUS_OK && !run.model.ops->maps)
        st = error_set(STATUS_ERR_USAGE,
                       "%s: %s has no spatial maps to show (it matches the whole image)", pos[0],
                       run.model.ops->title);
    if (st == STATUS_OK) {
        Tensor *gp, *gn;
        trmml_model_text_features(&run.model, &gp, &gn);
        Tensor *dense = trmml_image_dense(&run.model, &im);
        float *p = tensor_to_host(trmml_model_probs(&run.model, dense, gp, gn));
        Tensor *maps = trmml_model_maps(&run.model, dense, gp, gn);
        float *mh = tensor_to_host(maps);
        const int64_t HW = maps->shape[2];
        const int g = (int)lrint(sqrt((double)HW));
        CHECK((int64_t)g * g == HW, "visualize: %lld spatial positions is not a square grid",
              (long long)HW);
        int *order = xcalloc((size_t)run.C, sizeof *order);
        rank_classes(p, run.C, order);
        const int K = o.top < run.C ? o.top : (int)run.C;
        Image *panels = xcalloc((size_t)K, sizeof *panels);
        char **names = xcalloc((size_t)K, sizeof *names);
        double *scores = xcalloc((size_t)K, sizeof *scores);
        for (int k = 0; k < K; k++) {
            panels[k] = trmml_heatmap_overlay(&im, mh + order[k] * HW, g);
            names[k] = run.names[order[k]];
            scores[k] = p[order[k]];
        }
        st = plot_panels_png(o.out, panels, names, scores, K);
        for (int k = 0; k < K && st == STATUS_OK; k++)
            printf("%d\t%.6f\t%s\n", k, scores[k], names[k]);
        for (int k = 0; k < K; k++) image_free(&panels[k]);
        free(panels), free(names), free(scores);
        free(order);
        free(mh);
        free(p);
        tensor_step_end();
    }
    if (open) trmml_run_close(&run);
    image_free(&im);
    return st == STATUS_OK ? 0 : tool_fail(st);
}
