/* bench_clip.c — `trmml bench clip`: CLIP's towers at full RN50/RN101 size with random weights.
 *
 * The state dict is built from the SPEC §1.3 key list (clip_state_dict_declare: float16 weights
 * as in the released files) and filled with random values scaled so activations stay in a normal
 * range through the whole network (no overflow, no denormals); then it is loaded as a real one
 * would be (up-cast, BN folded). Keys, matching scripts/bench_torch.py:
 *     "clip rn101 img 448 b8"         image tower, global embedding + dense features, no grad
 *     "clip rn101 text fwd 2x80"      text tower forward of 2*80 prompts, no grad
 *     "clip rn101 text fwdbwd 2x80"   forward with the tape + backward into the prompt
 *                                     embeddings (the weights are frozen: input path only)
 *     "clip rn101 img 448 b8 bf16", "clip rn101 text fwd|fwdbwd 2x80 bf16"
 *                                     the same under --precision bf16 (CPUs with AVX512-BF16),
 *                                     with the smallest cosine of each output row against fp32
 *                                     on stderr and as `meta cosine ...` rows; the fp32 image
 *                                     rows of the same cases report the cosine of the Winograd
 *                                     F(4x4, 3x3) forward against F(2x2, 3x3) and of
 *                                     F(2x2, 3x3) against im2col alike (docs/ops/conv.md)
 *     "clip rn101 img 448 b32"        on a GPU only (--device cuda): the image tower at batch 32
 * On --device cuda the model, inputs and arenas live on the GPU and the bf16 rows are left out
 * (bf16 products are CPU-only; a note on stderr says so).
 * Prompts are 77 positions with the end-of-text token at 18..22 (learned context + class name).
 * GFLOP = 2 x multiply-accumulates of the first 23 positions of every prompt, the work PyTorch's
 * row does; trmml's tower runs each prompt to its own end and the last block at the end row only
 * (clip/text.c), about 15 % fewer products, so its rate is of that reference work. Backward through
 * frozen weights computes only dx = dy W per linear layer (as many MACs as its forward), so
 * fwdbwd counts twice the forward (attention's backward, 2x its forward, is ~2% of it at T = 23).
 * Memory of each image case goes to stderr, two ways: the activation peak in the arenas (the
 * case's fresh caller arena + the model's work arena, each peak taken separately, so an upper
 * bound; chunk tails an arena skips when it grows count too), and the growth of the process's
 * peak resident set over the case's first call, measured as scripts/bench_torch.py
 * --clip-memory measures PyTorch (Linux: the high-water mark is reset to the current RSS by
 * writing 5 to /proc/self/clear_refs, then VmHWM is read after the call). The input lives in an
 * arena of its own and is in none of these. --quick: RN50 only, image 224 batch 1 and text 2x20
 * forward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "clip/model.h"
#include "tensor/convert.h"
#include "tensor/ops/conv.h"
#include "tensor/ops/gemm_bf16.h"
#include "tools/bench.h"

/* Scale of random values for a state-dict key: He-scaled weights, unit BN statistics with the
 * last BN of each residual branch damped (keeps the 33-block RN101 trunk from growing). */
static void random_value_range(const Tensor *t, double *mean, double *half_width) {
    const char *n = t->name;
    const size_t len = strlen(n);
    *mean = 0;
    *half_width = 0;
#define ENDS(s) (len >= strlen(s) && strcmp(n + len - strlen(s), s) == 0)
    if (ENDS("running_var")) *mean = 1;
    else if (ENDS("running_mean") || strstr(n, ".ln_") || strstr(n, "ln_final")) {
        if (ENDS(".weight")) *mean = 1;
    } else if (strstr(n, ".bn") || strstr(n, "downsample.1")) {
        if (ENDS(".weight")) *mean = (strstr(n, ".bn3") || strstr(n, "downsample.1")) ? 0.2 : 1;
    } else if (ENDS("logit_scale")) {
        *mean = log(100.0);
    } else if (t->ndim >= 2) {
        /* weight (O, fan_in...) or an embedding table: uniform with variance 2/fan_in or 0.02^2 */
        const double fan_in = (double)(t->numel / t->shape[0]);
        double std = strstr(n, "embedding") ? 0.02 : sqrt(2.0 / fan_in);
        if (strcmp(n, "text_projection") == 0) std = 1.0 / sqrt((double)t->shape[0]);
        *half_width = std * sqrt(3.0);
    } else if (t->ndim == 1) {
        *half_width = 0.02; /* linear biases */
    }
#undef ENDS
}

ParamStore *bench_random_clip_state(ClipConfig cfg) {
    ParamStore *sd = param_store_create(DEVICE_CPU, "random clip");
    clip_state_dict_declare(sd, &cfg);
    param_store_finalize(sd);
    Rng r;
    rng_seed(&r, 7);
    for (int i = 0; i < param_count(sd); i++) {
        Tensor *t = param_at(sd, i);
        double mean, hw;
        random_value_range(t, &mean, &hw);
        for (int64_t j = 0; j < t->numel; j++) {
            const float v = (float)(mean + hw * (2 * rng_uniform(&r) - 1));
            if (t->dtype == DT_F16) ((uint16_t *)t->data)[j] = f32_to_f16(v);
            else if (t->dtype == DT_F32) ((float *)t->data)[j] = v;
            else if (t->dtype == DT_I64) ((int64_t *)t->data)[j] = 0;
        }
    }
    return sd;
}

ClipModel *bench_random_clip(ClipConfig cfg) {
    ParamStore *sd = bench_random_clip_state(cfg);
    ClipModel *m = NULL;
    Status st = clip_model_load(&m, sd, &cfg);
    CHECK(st == STATUS_OK, "bench clip: loading the random model: %s", error_last());
    param_store_destroy(sd);
    return m;
}

typedef struct {
    const ClipModel *m;
    Tensor *images, *prompts, *eot, *dout;
} ClipBench;

static void run_image(void *p) {
    ClipBench *b = p;
    Arena *a = tensor_arena();
    size_t mark = arena_mark(a);
    Tensor *emb, *dense;
    clip_encode_image(b->m, b->images, &emb, &dense);
    arena_release(a, mark);
}

static void run_text(void *p) {
    ClipBench *b = p;
    Arena *a = tensor_arena();
    size_t mark = arena_mark(a);
    clip_encode_text_embedded(b->m, b->prompts, b->eot);
    arena_release(a, mark);
}

static void run_text_backward(void *p) {
    ClipBench *b = p;
    Arena *a = tensor_arena();
    size_t mark = arena_mark(a);
    /* A fresh gradient every call, as PyTorch's `x.grad = None`: the previous call's buffer was
     * taken above the mark and has been released. */
    b->prompts->grad = NULL;
    Tensor *f = clip_encode_text_embedded(b->m, b->prompts, b->eot);
    ag_backward_with(f, b->dout);
    ag_tape_reset();
    arena_release(a, mark);
}

/* A field of /proc/self/status in KiB, or -1 where there is none (not Linux). */
static long status_kib(const char *field) {
    FILE *f = xfopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    const size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

/* Reset the resident-set high-water mark to the current RSS; false where that is not possible. */
static bool rss_peak_reset(void) {
    FILE *f = xfopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    const bool ok = xfwrite("5", 1, 1, f, "/proc/self/clear_refs") == STATUS_OK;
    return fclose(f) == 0 && ok;
}

/* The model of one tag, built on first use: building RN101 with random weights takes seconds,
 * and a --case filter may want none of its rows. */
typedef struct {
    ClipConfig cfg;
    ClipModel *m;
} LazyClip;

static const ClipModel *lazy_clip(LazyClip *lc) {
    if (!lc->m) lc->m = bench_random_clip(lc->cfg);
    return lc->m;
}

static void set_precision(int p) {
    CHECK(tensor_set_precision((Precision)p) == STATUS_OK, "bench clip: %s", error_last());
}

/* The accuracy of a row against a reference computed another way on the same input (bf16
 * against fp32, `how` "bf16 against fp32"): the smallest cosine between a row of `ref` and the
 * same row of `got` (rows: the last dimension), on stderr and as a `meta` row
 * "cosine KEY WHAT" for the report (docs/benchmarks.md). */
static void report_cosine(const char *key, const char *how, const char *what, const Tensor *ref,
                          const Tensor *got) {
    const int64_t d = ref->shape[ref->ndim - 1], rows = ref->numel / d;
    float *x0 = tensor_to_host(ref), *y0 = tensor_to_host(got);
    double worst = 1;
    for (int64_t r = 0; r < rows; r++) {
        const float *x = x0 + r * d, *y = y0 + r * d;
        double xy = 0, xx = 0, yy = 0;
        for (int64_t i = 0; i < d; i++) xy += (double)x[i] * y[i], xx += (double)x[i] * x[i],
                                         yy += (double)y[i] * y[i];
        const double c = xx > 0 && yy > 0 ? xy / sqrt(xx * yy) : 1;
        if (c < worst) worst = c;
    }
    free(x0);
    free(y0);
    fprintf(stderr, "  %-40s %s: smallest %s cosine %.9f (1 - cosine %.2e) over %lld rows\n",
            key, how, what, worst, 1 - worst, (long long)rows);
    printf("meta\tcosine %s %s\t%.9f\n", key, what, worst);
}

/* The fp32 image tower's Winograd forward on the CPU (docs/ops/conv.md): the F(4x4, 3x3) tiles
 * against F(2x2, 3x3), and F(2x2, 3x3) against im2col, cosines as report_cosine. Three extra
 * calls, before the timed ones; the modes are restored. */
static void report_winograd_tiles(const ClipModel *m, Tensor *images, const char *key) {
    Tensor *emb[3], *dense[3]; /* im2col, F(2x2, 3x3), F(4x4, 3x3) */
    const ConvWinograd mode = conv_set_winograd(CONV_WINOGRAD_OFF);
    const ConvWinogradTile tile = conv_set_winograd_tile(CONV_WINOGRAD_F2);
    for (int i = 0; i < 3; i++) {
        conv_set_winograd(i == 0 ? CONV_WINOGRAD_OFF : CONV_WINOGRAD_AUTO);
        conv_set_winograd_tile(i == 2 ? CONV_WINOGRAD_F4 : CONV_WINOGRAD_F2);
        clip_encode_image(m, images, &emb[i], &dense[i]);
    }
    conv_set_winograd(mode);
    conv_set_winograd_tile(tile);
    report_cosine(key, "Winograd F4 against F2", "embedding F4 vs F2", emb[1], emb[2]);
    report_cosine(key, "Winograd F4 against F2", "dense F4 vs F2", dense[1], dense[2]);
    report_cosine(key, "Winograd F2 against im2col", "embedding F2 vs im2col", emb[0], emb[1]);
    report_cosine(key, "Winograd F2 against im2col", "dense F2 vs im2col", dense[0], dense[1]);
}

/* The image rows of one case: its key, whether it runs on this device and at this setting. */
static bool image_case(const BenchCtx *ctx, const char *tag, int64_t B, int64_t side, int prec,
                       char *key, size_t cap) {
    snprintf(key, cap, "clip %s img %lld b%lld%s", tag, (long long)side, (long long)B,
             prec == PRECISION_BF16 ? " bf16" : "");
    if (ctx->quick && (B != 1 || side != 224)) return false;
    /* Batch 32: the GPU's case (448 px); on the CPU it would take minutes. */
    if (B == 32 && (ctx->dev == DEVICE_CPU || side != 448 || prec == PRECISION_BF16)) return false;
    /* bf16 rows: the largest case (the smoke test's one), where the CPU has bf16. */
    if (prec == PRECISION_BF16 && (!gemm_bf16_available() || (!ctx->quick && B != 8)))
        return false;
    if (!bench_wanted(ctx, key)) return false;
    if (prec == PRECISION_BF16 && ctx->dev != DEVICE_CPU) {
        bench_skip(ctx, key, "bf16 products are CPU-only (docs/ops/gemm_bf16.md)");
        return false;
    }
    return true;
}

static void bench_images(const BenchCtx *ctx, const char *tag, LazyClip *lc) {
    static const int64_t batches[3] = {1, 8, 32}, sides[2] = {224, 448};
    for (int bi = 0; bi < 3; bi++) {
        for (int si = 0; si < 2; si++) {
          for (int prec = PRECISION_FP32; prec <= PRECISION_BF16; prec++) {
            const int64_t B = batches[bi], side = sides[si];
            char key[96];
            if (!image_case(ctx, tag, B, side, prec, key, sizeof key)) continue;
            const ClipModel *m = lazy_clip(lc);
            /* The input in an arena of its own; a fresh caller arena per case, so its peak is
             * this case's. */
            Arena *in = arena_create(ctx->dev, "bench clip input", 0);
            Arena *a = arena_create(ctx->dev, "bench clip images", 0);
            Arena *prev = tensor_set_arena(in);
            Rng r;
            rng_seed(&r, 11);
            ClipBench b = {.m = m};
            b.images = bench_uniform(&r, 4, SHAPE(B, 3, side, side), -1, 1);
            tensor_set_arena(a);
            Tensor *emb, *dense, *emb32 = NULL, *dense32 = NULL;
            if (prec == PRECISION_BF16) clip_encode_image(m, b.images, &emb32, &dense32);
            if (prec == PRECISION_FP32 && ctx->dev == DEVICE_CPU && (ctx->quick || B == 8))
                report_winograd_tiles(m, b.images, key);
            set_precision(prec);
            const bool rss = rss_peak_reset();
            const long rss_base = status_kib("VmRSS");
            clip_encode_image(m, b.images, &emb, &dense);
            const long rss_growth = rss && rss_base >= 0 ? status_kib("VmHWM") - rss_base : -1;
            float *host = tensor_to_host(emb);
            for (int64_t i = 0; i < emb->numel; i++)
                CHECK(isfinite(host[i]), "bench clip: non-finite image embedding");
            free(host);
            if (emb32) {
                report_cosine(key, "bf16 against fp32", "embedding", emb32, emb);
                report_cosine(key, "bf16 against fp32", "dense", dense32, dense);
            }
            double conv, pool, dmacs;
            clip_resnet_macs(&m->cfg.vision, side, side, &conv, &pool, &dmacs);
            const double S = (double)((side / 32) * (side / 32) + 1);
            const double extra = S * (double)m->cfg.vision.channels * (double)m->cfg.embed_dim;
            const double gflop = 2.0 * (double)B * (conv + pool + extra) * 1e-9;
            const double t = bench_time(run_image, &b, ctx->quick ? 1 : 3, ctx->quick ? 0 : 1.0);
            bench_report(key, t, gflop);
            fprintf(stderr, "  %-40s arena peaks %.1f MiB (caller %.1f + work %.1f so far)", key,
                    (arena_peak(a) + arena_peak(m->work)) / 1048576.0, arena_peak(a) / 1048576.0,
                    arena_peak(m->work) / 1048576.0);
            if (rss_growth >= 0)
                fprintf(stderr, "; peak RSS growth %.1f MiB over the first call",
                        rss_growth / 1024.0);
            fprintf(stderr, "; input %.1f MiB not included\n", b.images->numel * 4.0 / 1048576.0);
            set_precision(PRECISION_FP32);
            tensor_set_arena(prev);
            arena_destroy(a);
            arena_destroy(in);
          }
        }
    }
}

static void bench_text(const BenchCtx *ctx, const char *tag, LazyClip *lc) {
    static const int64_t classes[2] = {20, 80};
    const int64_t C = lc->cfg.text.width, T = lc->cfg.text.context;
    for (int ci = 0; ci < 2; ci++)
      for (int prec = PRECISION_FP32; prec <= PRECISION_BF16; prec++) {
        if (ctx->quick && ci > 0) continue;
        /* bf16 rows: the 80-class case (the smoke test's one), where the CPU has bf16. */
        if (prec == PRECISION_BF16 && (!gemm_bf16_available() || (!ctx->quick && ci == 0)))
            continue;
        const char *suffix = prec == PRECISION_BF16 ? " bf16" : "";
        char key[96], key_bwd[96];
        snprintf(key, sizeof key, "clip %s text fwd 2x%lld%s", tag, (long long)classes[ci], suffix);
        snprintf(key_bwd, sizeof key_bwd, "clip %s text fwdbwd 2x%lld%s", tag,
                 (long long)classes[ci], suffix);
        const bool want_fwd = bench_wanted(ctx, key);
        const bool want_bwd = !ctx->quick && bench_wanted(ctx, key_bwd);
        if (!want_fwd && !want_bwd) continue;
        if (prec == PRECISION_BF16 && ctx->dev != DEVICE_CPU) {
            bench_skip(ctx, want_fwd ? key : key_bwd,
                       "bf16 products are CPU-only (docs/ops/gemm_bf16.md)");
            continue;
        }
        const ClipModel *m = lazy_clip(lc);
        const int64_t N = 2 * classes[ci];
        Arena *a = tensor_arena();
        size_t mark = arena_mark(a);
        Rng r;
        rng_seed(&r, 13);
        ClipBench b = {.m = m};
        float *h = xmalloc((size_t)(N * T * C) * sizeof *h);
        rng_fill_normal(&r, h, N * T * C, 0, 0.02f);
        b.prompts = tensor_from_f32(3, SHAPE(N, T, C), h);
        free(h);
        int64_t *eot = xmalloc((size_t)N * sizeof *eot);
        for (int64_t n = 0; n < N; n++) eot[n] = 18 + n % 5;
        b.eot = tensor_empty(DT_I64, 1, SHAPE(N));
        tensor_copy(b.eot, tensor_wrap(DT_I64, DEVICE_CPU, 1, SHAPE(N), eot));
        free(eot);
        b.dout = bench_uniform(&r, 2, SHAPE(N, m->cfg.embed_dim), -1, 1);
        const double fwd = 2.0 * (double)N * clip_text_macs(&m->cfg.text, 23) * 1e-9;
        const int reps = ctx->quick ? 1 : 3;
        const double min_s = ctx->quick ? 0 : 1.0;
        if (prec == PRECISION_BF16) {
            Tensor *f32 = clip_encode_text_embedded(m, b.prompts, b.eot);
            set_precision(prec);
            report_cosine(want_fwd ? key : key_bwd, "bf16 against fp32", "text features", f32,
                          clip_encode_text_embedded(m, b.prompts, b.eot));
        }
        if (want_fwd) bench_report(key, bench_time(run_text, &b, reps, min_s), fwd);
        if (want_bwd) {
            ag_set_requires_grad(b.prompts, NULL);
            bench_report(key_bwd, bench_time(run_text_backward, &b, reps, min_s), 2.0 * fwd);
        }
        set_precision(PRECISION_FP32);
        arena_release(a, mark);
      }
}

BENCH(clip, "CLIP RN50/RN101 towers: image forward (224/448, batch 1/8; 448 batch 32 on a "
            "GPU), text forward and backward into prompts (2x20, 2x80)") {
    static const struct {
        const char *tag;
        bool rn101;
    } models[2] = {{"rn50", false}, {"rn101", true}};
    for (int i = 0; i < 2; i++) {
        if (ctx->quick && models[i].rn101) continue;
        LazyClip lc = {.cfg = models[i].rn101 ? clip_config_rn101() : clip_config_rn50()};
        bench_images(ctx, models[i].tag, &lc);
        bench_text(ctx, models[i].tag, &lc);
        if (lc.m) clip_model_free(lc.m);
    }
}
