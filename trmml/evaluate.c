/* evaluate.c — test-split scores and metrics, reopening a run, prediction and region maps
 * (trmml/evaluate.h). */
#include "trmml/evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "clip/checkpoint.h"
#include "clip/preprocess.h"
#include "datasets/augment.h"
#include "datasets/csv.h"
#include "tensor/dist.h"
#include "tensor/ops/gemm_bf16.h"
#include "tensor/ops/elementwise.h"

Status trmml_scores(const TrmmlModel *m, TrmmlBatchSource *src, int64_t batch, double *scores) {
    Arena *arena = tensor_arena();
    const size_t mark = arena_mark(arena);
    const int64_t C = m->C, N = src->n;
    Tensor *gp, *gn;
    trmml_model_text_features(m, &gp, &gn); /* once: the prompts are fixed at evaluation */
    int64_t *idx = xmalloc((size_t)(batch > 0 ? batch : 1) * sizeof *idx);
    /* Under MPI (docs/distributed.md) the ranks take the batches in turn, each batch the same
     * images as in one process (so the same scores to the last digit), and the scores are
     * summed over the ranks: each is the one rank's that computed it, plus zeros (exact). */
    const int ranks = dist_size();
    if (ranks > 1) memset(scores, 0, (size_t)(N * C) * sizeof *scores);
    Status st = STATUS_OK;
    for (int64_t b0 = 0, k = 0; b0 < N && st == STATUS_OK; b0 += batch, k++) {
        if (k % ranks != dist_rank()) continue;
        const int64_t nb = N - b0 < batch ? N - b0 : batch;
        for (int64_t b = 0; b < nb; b++) idx[b] = b0 + b;
        const size_t m2 = arena_mark(arena);
        Tensor *dense = NULL;
        st = src->dense(src, idx, nb, 0, 0, &dense);
        if (st == STATUS_OK) {
            float *p = tensor_to_host(trmml_model_probs(m, dense, gp, gn));
            for (int64_t i = 0; i < nb * C; i++) scores[b0 * C + i] = p[i];
            free(p);
        }
        arena_release(arena, m2);
    }
    free(idx);
    arena_release(arena, mark);
    if ((st = dist_agree(st)) == STATUS_OK) dist_allreduce_sum_f64(scores, N * C);
    return st;
}

Status trmml_evaluate(const TrmmlModel *m, TrmmlBatchSource *src, const Dataset *ds, int64_t batch,
                      TrmmlEval *out) {
    memset(out, 0, sizeof *out);
    const int64_t N = ds->n, C = ds->c;
    CHECK(src->n == N && C == m->C, "evaluate: %lld items for %lld images, %lld classes for %lld",
          (long long)src->n, (long long)N, (long long)m->C, (long long)C);
    double *scores = xmalloc((size_t)(N * C) * sizeof(double));
    double *targets = xmalloc((size_t)(N * C) * sizeof(double));
    for (int64_t i = 0; i < N * C; i++) targets[i] = ds->labels[i];
    Status st = trmml_scores(m, src, batch, scores);
    if (st == STATUS_OK) {
        out->ap = xmalloc((size_t)C * sizeof(double));
        st = ds_metrics(&out->metrics, out->ap, scores, targets, N, C);
    }
    if (st == STATUS_OK) out->json = ds_metrics_json(&out->metrics);
    free(scores);
    free(targets);
    if (st != STATUS_OK) trmml_eval_free(out);
    return st;
}

void trmml_eval_free(TrmmlEval *e) {
    free(e->ap);
    free(e->json);
    memset(e, 0, sizeof *e);
}

Status trmml_write_ap_csv(const char *path, char *const *names, const double *ap, int64_t C) {
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    CHECK(f, "open_memstream");
    fprintf(f, "class,AP\n");
    char num[64];
    for (int64_t c = 0; c < C; c++) {
        /* Class names with a comma or quote are quoted, CSV style. */
        if (strpbrk(names[c], ",\"")) {
            fputc('"', f);
            for (const char *p = names[c]; *p; p++) {
                if (*p == '"') fputc('"', f);
                fputc(*p, f);
            }
            fputc('"', f);
        } else {
            fputs(names[c], f);
        }
        fprintf(f, ",%s\n", ds_format_double(num, sizeof num, ap[c]));
    }
    fclose(f);
    Status st = xwrite_file_atomic(path, text, n);
    free(text);
    return st;
}

/* ---- a run directory ------------------------------------------------------------------------ */

Status trmml_load_clip(const char *path, ClipModel **out) {
    *out = NULL;
    ParamStore *sd = NULL;
    CkptInfo info;
    Status st = ckpt_load(path, NULL, &sd, &info);
    if (st != STATUS_OK) return st;
    ClipConfig cfg;
    st = clip_config_infer(sd, &cfg);
    if (st == STATUS_OK && cfg.text.heads == 0)
        st = error_set(STATUS_ERR_FORMAT,
                       "%s: text width %lld is not a multiple of 64, so the "
                       "number of text heads is unknown",
                       path, (long long)cfg.text.width);
    if (st == STATUS_OK) st = clip_model_load(out, sd, &cfg);
    param_store_destroy(sd);
    return st;
}

static Status read_classes(const char *path, char ***names, int64_t *C) {
    DsLines lr;
    Status st = ds_lines_open(&lr, path);
    if (st != STATUS_OK) return st;
    DsStrings s = {0};
    char *line;
    while ((st = ds_lines_next(&lr, &line)) == STATUS_OK && line)
        if (*line) ds_strings_push(&s, line, strlen(line));
    ds_lines_close(&lr);
    if (st == STATUS_OK && s.n == 0) st = error_set(STATUS_ERR_FORMAT, "%s: no class names", path);
    if (st != STATUS_OK) {
        ds_strings_free(&s);
        return st;
    }
    *names = s.items;
    *C = s.n;
    return STATUS_OK;
}

Status trmml_run_open(const char *dir, TrmmlRun *run) {
    memset(run, 0, sizeof *run);
    char path[RUN_PATH_MAX], config[RUN_PATH_MAX];
    if (!run_path(path, sizeof path, dir, "checkpoint.safetensors") ||
        !run_path(config, sizeof config, dir, "config.txt"))
        return error_set(STATUS_ERR_USAGE, "%s: path too long", dir);
    /* The checkpoint first: it is verified (SHA-256) and carries the run's configuration;
     * config.txt may only move files (run_config_of_checkpoint). */
    RunCheckpoint ck;
    Status st = run_checkpoint_open(path, &ck);
    if (st == STATUS_OK) st = run_config_of_checkpoint(&ck, config, &run->cfg, NULL);
    if (st == STATUS_OK) st = run_config_apply_precision(&run->cfg);
    if (st == STATUS_OK) {
        run_path(path, sizeof path, dir, "classes.txt");
        st = read_classes(path, &run->names, &run->C);
    }
    if (st == STATUS_OK) st = trmml_load_clip(run->cfg.model, &run->clip);
    if (st == STATUS_OK)
        st = clip_tokenizer_load(clip_vocab_path(run->cfg.vocab[0] ? run->cfg.vocab : NULL),
                                 &run->tok);
    if (st == STATUS_OK)
        st = trmml_model_create(&run->model, &run->cfg, run->clip, run->tok, run->names, run->C);
    if (st == STATUS_OK) {
        run->meta = ck.meta;
        if (run->meta.method != run->cfg.method || run->meta.n_classes != run->C)
            st = error_set(STATUS_ERR_FORMAT,
                           "%s: checkpoint of another run (method or classes differ "
                           "from classes.txt)",
                           ck.path);
        Arena *arena = tensor_arena();
        size_t mark = arena_mark(arena);
        int cap = param_count(run->model.ps) + 64;
        RunTensor *t = xcalloc((size_t)cap, sizeof *t);
        int n = trmml_model_state(&run->model, t, cap);
        if (st == STATUS_OK) st = run_checkpoint_restore(&ck, t, n);
        free(t);
        arena_release(arena, mark);
        if (st != STATUS_OK) trmml_model_free(&run->model);
    }
    run_checkpoint_close(&ck);
    if (st != STATUS_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", error_last());
        clip_tokenizer_free(run->tok);
        if (run->clip) clip_model_free(run->clip);
        for (int64_t c = 0; c < run->C; c++) free(run->names[c]);
        free(run->names);
        memset(run, 0, sizeof *run);
        error_set(st, "%s", msg);
    }
    return st;
}

void trmml_run_close(TrmmlRun *run) {
    tensor_set_precision(PRECISION_FP32);
    trmml_model_free(&run->model);
    clip_tokenizer_free(run->tok);
    if (run->clip) clip_model_free(run->clip);
    for (int64_t c = 0; c < run->C; c++) free(run->names[c]);
    free(run->names);
    memset(run, 0, sizeof *run);
}

/* ---- single images and maps ----------------------------------------------------------------- */

Tensor *trmml_image_dense(const TrmmlModel *m, const Image *im) {
    const int S = (int)m->cfg.tc.input_size;
    Image t = {0};
    const bool bilinear = m->ops->test_transform == TRMML_TRANSFORM_TEST_BILINEAR;
    aug_test(im, S, bilinear ? RESAMPLE_BILINEAR : RESAMPLE_BICUBIC, &t);
    float *px = xmalloc(sizeof(float) * (size_t)(3 * S * S));
    image_normalize(&t, CLIP_MEAN, CLIP_STD, px);
    image_free(&t);
    Tensor *x = tensor_from_f32(4, SHAPE(1, 3, S, S), px);
    free(px);
    bool g = ag_set_grad_enabled(false);
    Tensor *emb = NULL, *dense = NULL;
    clip_encode_image(m->clip, x, &emb, &dense);
    ag_set_grad_enabled(g);
    return dense;
}

/* A blue-cyan-yellow-red ramp for v in [0, 1] (the "jet" colour map, piecewise linear). */
static void jet(float v, float rgb[3]) {
    v = v < 0 ? 0 : v > 1 ? 1 : v;
    float r = 1.5f - fabsf(4.0f * v - 3.0f), g = 1.5f - fabsf(4.0f * v - 2.0f),
          b = 1.5f - fabsf(4.0f * v - 1.0f);
    rgb[0] = r < 0 ? 0 : r > 1 ? 1 : r;
    rgb[1] = g < 0 ? 0 : g > 1 ? 1 : g;
    rgb[2] = b < 0 ? 0 : b > 1 ? 1 : b;
}

Image trmml_heatmap_overlay(const Image *im, const float *map, int g) {
    Image out = image_new(im->w, im->h);
    for (int y = 0; y < im->h; y++) {
        /* Bilinear with half-pixel centres (align_corners = False), edges clamped. */
        float fy = ((float)y + 0.5f) * (float)g / (float)im->h - 0.5f;
        fy = fy < 0 ? 0 : fy > g - 1 ? (float)(g - 1) : fy;
        int y0 = (int)fy, y1 = y0 + 1 < g ? y0 + 1 : y0;
        float wy = fy - (float)y0;
        for (int x = 0; x < im->w; x++) {
            float fx = ((float)x + 0.5f) * (float)g / (float)im->w - 0.5f;
            fx = fx < 0 ? 0 : fx > g - 1 ? (float)(g - 1) : fx;
            int x0 = (int)fx, x1 = x0 + 1 < g ? x0 + 1 : x0;
            float wx = fx - (float)x0;
            float v = (1 - wy) * ((1 - wx) * map[y0 * g + x0] + wx * map[y0 * g + x1]) +
                      wy * ((1 - wx) * map[y1 * g + x0] + wx * map[y1 * g + x1]);
            float rgb[3];
            jet(v, rgb);
            const uint8_t *p = im->px + ((size_t)y * im->w + x) * 3;
            uint8_t *q = out.px + ((size_t)y * im->w + x) * 3;
            for (int k = 0; k < 3; k++)
                q[k] = (uint8_t)lrintf(0.5f * p[k] + 0.5f * 255.0f * rgb[k]);
        }
    }
    return out;
}
