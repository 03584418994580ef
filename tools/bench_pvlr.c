/* bench_pvlr.c — `trmml bench pvlr`: one PVLR training iteration of the head at COCO size
 * (C = 80, d = 512, 8 heads, FFN 2048, HW = 196, batch 32) from cached features, against
 * scripts/bench_pvlr_torch.py (same sizes, same threads).
 *
 * Key "pvlr head step c80 b32": KAP + CAP layer + IFM + DMA both ways + prediction + ASL with
 * dropout 0.1 in training mode, backward into every head parameter and the CAP text features
 * T^C, one AdamW step. T^C is a given (C, d) tensor: the CLIP text tower's forward and
 * backward, identical for every method, is benchmarked by `trmml bench clip` ("clip rn101 text
 * fwdbwd"; PVLR runs C prompts, half of TRM-ML's 2C). GFLOP counts the projections, FFNs,
 * attention products and the prediction cosines, forward ×3 for forward + backward. --quick:
 * batch 4. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "autograd/tape.h"
#include "nn/optim.h"
#include "tensor/ops/elementwise.h"
#include "tools/bench.h"
#include "trmml/method_pvlr.h"

typedef struct {
    PvlrHead m;
    ParamStore *ps;
    Optimizer *opt;
    Tensor *dense, *text_ctx, *y; /* in ParamStores: they survive tensor_step_end */
    Rng rng;
} PvlrBench;

static void step(void *arg) {
    PvlrBench *b = arg;
    param_zero_grad(b->ps);
    PvlrOut out;
    DropoutDraws drop = {.rng = b->rng};
    pvlr_forward(&b->m, b->dense, b->text_ctx, true, &drop, &out);
    b->rng = drop.rng;
    ag_backward(pvlr_loss(&b->m, out.logits, b->y));
    optim_step(b->opt);
    tensor_step_end();
}

static void fill(Tensor *t, Rng *rng, float std) {
    float *h = xmalloc((size_t)t->numel * sizeof(float));
    rng_fill_normal(rng, h, t->numel, 0, std);
    tensor_copy_from_host(t, h);
    free(h);
}

BENCH(pvlr, "PVLR head: one training iteration (forward, backward, AdamW) at COCO size") {
    const int64_t C = 80, d = 512, HW = 196, B = ctx->quick ? 4 : 32, H = 2048;
    char key[96];
    snprintf(key, sizeof key, "pvlr head step c80 b%lld", (long long)B);
    if (!bench_wanted(ctx, key)) return;
    PvlrBench b;
    const RunConfig rc = run_config_default(TRMML_METHOD_PVLR, NULL);
    b.ps = param_store_create(ctx->dev, "bench pvlr");
    pvlr_declare(&b.m, b.ps, "pvlr", C, d, &rc.tc, method_pvlr_config(&rc), true);
    b.text_ctx = param_add(b.ps, "bench.text_ctx", DT_F32, 2, SHAPE(C, d), true);
    ParamStore *inputs = param_store_create(ctx->dev, "bench pvlr inputs");
    b.dense = param_add(inputs, "dense", DT_F32, 3, SHAPE(B, HW + 1, d), false);
    b.y = param_add(inputs, "y", DT_F32, 2, SHAPE(B, C), false);
    param_store_finalize(b.ps);
    param_store_finalize(inputs);
    rng_seed(&b.rng, 1);
    pvlr_init(&b.m, &b.rng);
    fill(b.text_ctx, &b.rng, 1.0f / sqrtf((float)d));
    fill(b.dense, &b.rng, 1.0f);
    float *y = xmalloc((size_t)(B * C) * sizeof(float)), *raw = xmalloc((size_t)(C * d) * sizeof(float));
    for (int64_t i = 0; i < B * C; i++) y[i] = rng_next(&b.rng) % 8 == 0 ? 1.0f : -1.0f;
    tensor_copy_from_host(b.y, y);
    rng_fill_normal(&b.rng, raw, C * d, 0, 1);
    pvlr_set_knowledge(&b.m, raw);
    free(y);
    free(raw);
    b.opt = optim_adamw_create(b.ps, 1e-4, 0.9, 0.999, 1e-8, 1e-2);

    /* Multiply-accumulates of the forward: linear layers on C label rows and B·HW visual rows. */
    const double P = (double)B * HW, lin = (double)d * d, ffn = 2.0 * d * H;
    double macs = C * lin                               /* KAP (A^K T^K) W_K */
                  + C * (4 * lin + ffn) + 2.0 * C * C * d /* CAP layer */
                  + C * (8 * lin + ffn + 2 * d * d) + 4.0 * C * C * d /* IFM */
                  + P * (2 * lin + ffn) + C * 2 * lin + 2.0 * P * C * d /* DMA text->visual */
                  + C * lin + P * 2 * lin + B * C * lin + 2.0 * B * C * HW * d + B * C * ffn /* v->t */
                  + (double)B * C * (HW + 1) * d; /* prediction cosines */
    const double gflop = 3.0 * 2.0 * macs / 1e9;
    bench_report(key, bench_time(step, &b, ctx->quick ? 1 : 3, ctx->quick ? 0 : 5.0), gflop);
    optim_destroy(b.opt);
    pvlr_free(&b.m);
    param_store_destroy(inputs);
    param_store_destroy(b.ps);
}
