/* cmd_train.c — `trmml train`, `trmml eval`, `trmml predict`, `trmml visualize`: the training
 * program (trmml/train.h) and the use of its run directory (trmml/evaluate.h). */
#include <limits.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/image.h"
#include "tensor/device.h"
#include "tensor/text.h"
#include "tools/command.h"
#include "trmml/evaluate.h"
#include "trmml/plot.h"
#include "trmml/train.h"

static int fail(const char *cmd, Status st) {
    fprintf(stderr, "trmml %s: %s\n", cmd, error_last());
    return st == STATUS_ERR_USAGE ? 2 : 1;
}

/* The training pipeline (trmml/) keeps its parameters, labels and MMCP state on the CPU and has
 * not been ported to the CUDA backend (docs/cuda.md), so `auto` means the CPU here and an
 * explicit CUDA device is refused. */
static Status cpu_only(void) {
    if (strcmp(tool_device(), "auto") == 0) return STATUS_OK;
    DeviceKind dev;
    int idx;
    Status st = device_parse(tool_device(), &dev, &idx);
    if (st == STATUS_OK && dev != DEVICE_CPU)
        st = error_set(STATUS_ERR_DEVICE,
                       "--device %s: training runs on the CPU only (the CUDA backend's "
                       "kernels exist, but trmml/ is not ported to it: docs/cuda.md); use "
                       "--device cpu",
                       tool_device());
    return st;
}

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

/* Switches that set a boolean configuration value. */
static const struct {
    const char *flag;
    size_t offset;
    bool value;
} SWITCHES[] = {
    {"--single-positive", offsetof(TrmmlConfig, single_positive), true},
    {"--no-kd", offsetof(TrmmlConfig, use_kd), false},
    {"--no-mmcp", offsetof(TrmmlConfig, use_mmcp), false},
    {"--no-mmcl", offsetof(TrmmlConfig, use_mmcl), false},
    {"--no-kap", offsetof(TrmmlConfig, pvlr_use_kap), false},
    {"--no-cap", offsetof(TrmmlConfig, pvlr_use_cap), false},
    {"--no-ifm", offsetof(TrmmlConfig, pvlr_use_ifm), false},
    {"--no-dma-t2v", offsetof(TrmmlConfig, pvlr_use_t2v), false},
    {"--no-dma-v2t", offsetof(TrmmlConfig, pvlr_use_v2t), false},
    {"--cache-any-filter", offsetof(TrmmlConfig, cache_any_filter), true},
};

/* Flags with a value that name a configuration key, and flags with a path. */
static const struct {
    const char *flag, *key;
} KEY_FLAGS[] = {
    {"--dataset", "dataset"},
    {"--ratio", "ratio"},
    {"--seed", "seed"},
    {"--epochs", "epochs"},
    {"--batch", "batch_size"},
    {"--micro-batch", "micro_batch"},
    {"--eval-every", "eval_every"},
    {"--text-chunk", "text_chunk"},
};
static const struct {
    const char *flag;
    size_t offset;
} PATH_FLAGS[] = {
    {"--root", offsetof(RunConfig, root)},
    {"--model", offsetof(RunConfig, model)},
    {"--cached", offsetof(RunConfig, cached_train)},
    {"--cached-test", offsetof(RunConfig, cached_test)},
    {"--class-list", offsetof(RunConfig, class_list)},
    {"--vocab", offsetof(RunConfig, vocab)},
};

/* Whether f is a train flag that takes a value (so a last-position f lacks one, rather than
 * being unknown). */
static bool takes_value(const char *f) {
    if (!strcmp(f, "--out") || !strcmp(f, "--method") || !strcmp(f, "--config") ||
        !strcmp(f, "--set"))
        return true;
    for (size_t k = 0; k < sizeof PATH_FLAGS / sizeof PATH_FLAGS[0]; k++)
        if (strcmp(f, PATH_FLAGS[k].flag) == 0) return true;
    for (size_t k = 0; k < sizeof KEY_FLAGS / sizeof KEY_FLAGS[0]; k++)
        if (strcmp(f, KEY_FLAGS[k].flag) == 0) return true;
    return false;
}

/* Apply argv[*i] (and its value, advancing *i) to rc; 0, or the exit status of a usage error. */
static int apply_flag(RunConfig *rc, int argc, char **argv, int *i) {
    const char *f = argv[*i];
    for (size_t k = 0; k < sizeof SWITCHES / sizeof SWITCHES[0]; k++)
        if (strcmp(f, SWITCHES[k].flag) == 0) {
            *(bool *)((char *)&rc->tc + SWITCHES[k].offset) = SWITCHES[k].value;
            return 0;
        }
    if (*i + 1 >= argc) {
        if (takes_value(f))
            fprintf(stderr, "trmml train: %s needs a value (see trmml train --help)\n", f);
        else
            fprintf(stderr, "trmml train: unknown option '%s' (see trmml train --help)\n",
                    text_for_message(f));
        return 2;
    }
    const char *v = argv[++*i];
    if (strcmp(f, "--out") == 0 || strcmp(f, "--method") == 0 || strcmp(f, "--config") == 0)
        return 0; /* taken by the first pass */
    for (size_t k = 0; k < sizeof PATH_FLAGS / sizeof PATH_FLAGS[0]; k++)
        if (strcmp(f, PATH_FLAGS[k].flag) == 0) {
            set_path((char *)rc + PATH_FLAGS[k].offset, RUN_PATH_MAX, v);
            return 0;
        }
    const char *key = NULL;
    char kv[2 * RUN_PATH_MAX];
    for (size_t k = 0; k < sizeof KEY_FLAGS / sizeof KEY_FLAGS[0]; k++)
        if (strcmp(f, KEY_FLAGS[k].flag) == 0) key = KEY_FLAGS[k].key;
    if (!key && strcmp(f, "--set") == 0) {
        snprintf(kv, sizeof kv, "%s", v);
        char *eq = strchr(kv, '=');
        if (!eq) {
            fprintf(stderr, "trmml train: --set '%s': expected KEY=VALUE\n", v);
            return 2;
        }
        *eq = 0;
        key = kv;
        v = eq + 1;
    }
    if (!key) {
        fprintf(stderr, "trmml train: unknown option '%s' (see trmml train --help)\n",
                text_for_message(f));
        return 2;
    }
    if (run_config_set(rc, key, v) != STATUS_OK) {
        fprintf(stderr, "trmml train: %s: %s\n", f, error_last());
        return 2;
    }
    return 0;
}

#define TRAIN_USAGE                                                                                  \
    "trmml train --method trmml|dualcoop|baseline|pvlr --dataset NAME --root DIR --model CLIP\n"     \
    "            --out RUN_DIR [--ratio R | --single-positive] [--config FILE]\n"                    \
    "            [--cached TRAIN.feat --cached-test TEST.feat [--cache-any-filter]]\n"              \
    "            [--class-list F] [--vocab F]\n"                                                     \
    "            [--seed S] [--epochs N] [--batch B] [--micro-batch M] [--eval-every N]\n"           \
    "            [--text-chunk K] [--no-kd] [--no-mmcp] [--no-mmcl] [--no-carl] [--set KEY=VALUE]\n" \
    "            [--no-kap] [--no-cap] [--no-ifm] [--no-dma-t2v] [--no-dma-v2t]   (pvlr)\n"         \
    "trmml train --out RUN_DIR --resume\n"                                                           \
    "  Trains a method on the partial-label (--ratio, SPEC §6.1) or single-positive (§6.7)\n"      \
    "  protocol and evaluates on the test split every --eval-every epochs. Precedence: the\n"        \
    "  method's defaults, then --config (key = value, see config.txt of any run), then flags.\n"     \
    "  --cached/--cached-test read features written by `trmml extract`; without them the\n"          \
    "  image tower runs on augmented images. A cache extracted with another resize filter\n"        \
    "  than the method's (bicubic; DualCoOp bilinear) is refused unless --cache-any-filter.\n"      \
    "  --micro-batch splits each batch for memory (same result). --no-carl trains the Table-3\n"    \
    "  baseline. --no-kap ... --no-dma-v2t switch PVLR's components off for its ablation\n"         \
    "  (docs/pvlr.md). RUN_DIR receives config.txt, log.txt, metrics.jsonl, ap.csv and\n"          \
    "  checkpoint.safetensors (written every epoch); --resume continues a run from its\n"           \
    "  checkpoint with its saved configuration (docs/training.md)."

COMMAND(train, "train TRM-ML, DualCoOp, PVLR or the Table-3 baseline on a frozen CLIP", TRAIN_USAGE) {
    const char *out = NULL, *config = NULL, *method_s = "trmml", *dataset = NULL;
    bool resume = false, other = false;
    /* First pass: the flags that decide the defaults (method, dataset) and the mode. */
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(f, "--resume") == 0)
            resume = true;
        else if (strcmp(f, "--out") == 0 && v)
            out = argv[++i];
        else {
            other = true;
            if (strcmp(f, "--method") == 0 && v)
                method_s = argv[++i];
            else if (strcmp(f, "--dataset") == 0 && v)
                dataset = argv[++i];
            else if (strcmp(f, "--config") == 0 && v)
                config = argv[++i];
        }
    }
    if (!out) {
        fprintf(stderr, "trmml train: --out RUN_DIR is required (see trmml train --help)\n");
        return 2;
    }
    RunConfig rc;
    Status st;
    if (resume) {
        if (other) {
            fprintf(stderr,
                    "trmml train: with --resume the configuration comes from the run in %s "
                    "(its checkpoint); give only --out and --resume\n",
                    out);
            return 2;
        }
        /* The configuration is the checkpoint's own (trmml_train_run). */
        if ((st = cpu_only()) != STATUS_OK) return fail("train", st);
        TrainOptions opt = {
            .resume = true, .echo = stderr, .progress_bar = isatty(fileno(stderr)) != 0};
        st = trmml_train_run(NULL, out, &opt);
        return st == STATUS_OK ? 0 : fail("train", st);
    } else {
        int method = trmml_method_parse(method_s);
        if (method < 0) {
            fprintf(stderr,
                    "trmml train: --method '%s': expected trmml, dualcoop, baseline or pvlr\n",
                    method_s);
            return 2;
        }
        for (int i = 0; i < argc; i++)
            if (strcmp(argv[i], "--no-carl") == 0) method = TRMML_METHOD_BASELINE;
        rc = run_config_default(method, dataset);
        if (config) {
            st = run_config_parse_file(&rc, config);
            if (st != STATUS_OK) return fail("train", st);
            if (rc.method != method) {
                fprintf(stderr, "trmml train: %s says method = %s, the command line %s\n", config,
                        trmml_method_name(rc.method), trmml_method_name(method));
                return 2;
            }
        }
        /* Second pass: every other flag. */
        for (int i = 0; i < argc; i++) {
            if (strcmp(argv[i], "--resume") == 0 || strcmp(argv[i], "--no-carl") == 0) continue;
            int rv = apply_flag(&rc, argc, argv, &i);
            if (rv) return rv;
        }
        if (!rc.dataset[0] || !rc.root[0] || !rc.model[0]) {
            fprintf(
                stderr,
                "trmml train: --dataset, --root and --model are required (see trmml train --help)\n");
            return 2;
        }
        if (access(rc.model, R_OK) != 0) {
            fprintf(
                stderr,
                "trmml train: CLIP checkpoint '%s' not found\n"
                "HINT: place OpenAI's RN101.pt (or RN50.pt) there; README \"Weights and datasets\" "
                "and docs/clip.md say where to get it\n",
                rc.model);
            return 1;
        }
        if (access(rc.root, R_OK) != 0) {
            fprintf(
                stderr,
                "trmml train: dataset root '%s' not found\n"
                "HINT: docs/datasets.md gives where to get %s and the layout expected under the root\n",
                rc.root, rc.dataset);
            return 1;
        }
        run_config_default_splits(&rc);
    }
    if ((st = cpu_only()) != STATUS_OK) return fail("train", st);
    st = run_config_validate(&rc);
    if (st != STATUS_OK) return fail("train", st);
    TrainOptions opt = {.echo = stderr, .progress_bar = isatty(fileno(stderr)) != 0};
    st = trmml_train_run(&rc, out, &opt);
    return st == STATUS_OK ? 0 : fail("train", st);
}

/* "--flag value" options of the run-directory commands. */
typedef struct {
    const char *cached_test, *out;
    int top;
} UseOptions;

static int parse_use(const char *cmd, int argc, char **argv, int first, UseOptions *o,
                     const char **pos, int *npos) {
    for (int i = first; i < argc; i++) {
        const char *f = argv[i];
        if (strncmp(f, "--", 2) != 0) {
            pos[(*npos)++] = f;
            continue;
        }
        static const char *const value_flags[] = {"--cached-test", "--out", "--top", NULL};
        const char *v;
        int rc = tool_flag_value(cmd, argc, argv, &i, value_flags, &v);
        if (rc) return rc;
        if (strcmp(f, "--cached-test") == 0)
            o->cached_test = v;
        else if (strcmp(f, "--out") == 0)
            o->out = v;
        else if (strcmp(f, "--top") == 0) {
            char *end;
            long k = strtol(v, &end, 10);
            if (*end || k < 1 || k > 1000) {
                fprintf(stderr, "trmml %s: --top '%s': expected an integer in [1, 1000]\n", cmd, v);
                return 2;
            }
            o->top = (int)k;
        } else
            CHECK(false, "%s: value flag %s not handled", cmd, f);
    }
    return 0;
}

COMMAND(eval, "evaluate a training run on its test split (mAP family JSON, per-class AP CSV)",
        "trmml eval RUN_DIR [--cached-test TEST.feat]\n"
        "  Prints the JSON object of `trmml metrics` (mAP, AP per class, CP/CR/CF1/OP/OR/OF1,\n"
        "  top-3), and writes RUN_DIR/eval.json and RUN_DIR/ap.csv (class,AP). Test features come\n"
        "  from --cached-test, else from the run's cache, else from the image tower.") {
    UseOptions o = {0};
    const char *pos[8];
    int npos = 0;
    if (argc > 8) {
        fprintf(stderr, "trmml eval: too many arguments\n");
        return 2;
    }
    int rc = parse_use("eval", argc, argv, 0, &o, pos, &npos);
    if (rc) return rc;
    if (npos != 1) {
        fprintf(stderr, "trmml eval: expected one RUN_DIR (see trmml eval --help)\n");
        return 2;
    }
    Status st = cpu_only();
    if (st != STATUS_OK) return fail("eval", st);
    TrmmlRun run;
    if ((st = trmml_run_open(pos[0], &run)) != STATUS_OK) return fail("eval", st);
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
                                            c->method == TRMML_METHOD_DUALCOOP
                                                ? TRMML_TRANSFORM_TEST_BILINEAR
                                                : TRMML_TRANSFORM_TEST_BICUBIC,
                                            false);
    if (st == STATUS_OK) st = trmml_evaluate(&run.model, &src, ds, TRMML_EVAL_BATCH, &ev);
    char path[RUN_PATH_MAX];
    if (st == STATUS_OK && run_path(path, sizeof path, pos[0], "ap.csv"))
        st = trmml_write_ap_csv(path, run.names, ev.ap, run.C);
    if (st == STATUS_OK && run_path(path, sizeof path, pos[0], "eval.json")) {
        char *text = xmalloc(strlen(ev.json) + 2);
        sprintf(text, "%s\n", ev.json);
        st = run_write_file(path, text, strlen(text));
        free(text);
    }
    if (st == STATUS_OK) printf("%s\n", ev.json);
    trmml_eval_free(&ev);
    trmml_source_close(&src);
    ds_free(ds);
    trmml_run_close(&run);
    return st == STATUS_OK ? 0 : fail("eval", st);
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
    UseOptions o = {.top = 5};
    const char **pos = xcalloc((size_t)argc + 1, sizeof *pos);
    int npos = 0;
    int rc = parse_use("predict", argc, argv, 0, &o, pos, &npos);
    if (!rc && npos < 2) {
        fprintf(stderr, "trmml predict: expected RUN_DIR and at least one IMAGE\n");
        rc = 2;
    }
    if (rc) {
        free(pos);
        return rc;
    }
    Status st = cpu_only();
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
            const float *p = tensor_f32(
                trmml_model_probs(&run.model, trmml_image_dense(&run.model, &ims[i]), gp, gn));
            rank_classes(p, run.C, order);
            for (int k = 0; k < o.top && k < run.C; k++)
                printf("%s\t%.6f\t%s\n", pos[i], p[order[k]], run.names[order[k]]);
            arena_release(tensor_arena(), mark);
        }
        free(order);
        tensor_step_end();
    }
    if (open) trmml_run_close(&run);
    for (int i = 0; i < npos; i++) image_free(&ims[i]);
    free(ims);
    free(pos);
    return st == STATUS_OK ? 0 : fail("predict", st);
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
    UseOptions o = {.top = 3};
    const char *pos[8];
    int npos = 0;
    if (argc > 8) {
        fprintf(stderr, "trmml visualize: too many arguments\n");
        return 2;
    }
    int rc = parse_use("visualize", argc, argv, 0, &o, pos, &npos);
    if (rc) return rc;
    if (npos != 2 || !o.out) {
        fprintf(stderr, "trmml visualize: expected RUN_DIR IMAGE --out PNG\n");
        return 2;
    }
    Status st = cpu_only();
    Image im = {0};
    if (st == STATUS_OK) st = image_load(pos[1], &im, NULL);
    TrmmlRun run;
    bool open = false;
    if (st == STATUS_OK) open = (st = trmml_run_open(pos[0], &run)) == STATUS_OK;
    if (st == STATUS_OK && run.cfg.method == TRMML_METHOD_BASELINE)
        st = error_set(STATUS_ERR_USAGE,
                       "%s: the baseline matches the whole image (no regions to show)", pos[0]);
    if (st == STATUS_OK) {
        Tensor *gp, *gn;
        trmml_model_text_features(&run.model, &gp, &gn);
        Tensor *dense = trmml_image_dense(&run.model, &im);
        const float *p = tensor_f32(trmml_model_probs(&run.model, dense, gp, gn));
        Tensor *maps = trmml_region_maps(&run.model, dense, gp, gn);
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
            panels[k] = trmml_heatmap_overlay(&im, tensor_f32(maps) + order[k] * HW, g);
            names[k] = run.names[order[k]];
            scores[k] = p[order[k]];
        }
        st = plot_panels_png(o.out, panels, names, scores, K);
        for (int k = 0; k < K && st == STATUS_OK; k++)
            printf("%d\t%.6f\t%s\n", k, scores[k], names[k]);
        for (int k = 0; k < K; k++) image_free(&panels[k]);
        free(panels), free(names), free(scores);
        free(order);
        tensor_step_end();
    }
    if (open) trmml_run_close(&run);
    image_free(&im);
    return st == STATUS_OK ? 0 : fail("visualize", st);
}
