/* bench_conv.c — `trmml bench conv`: conv2d forward and backward at ResNet-50 shapes, batch 8.
 *
 * Keys ("conv fwd 64x64 3x3 112": input x output channels, kernel, spatial size) match
 * scripts/bench_torch.py. Forward is timed through tensor_conv2d with grad mode off; backward
 * calls the recorded node's rule (dx, dweight and dbias), as torch.autograd.grad does. GFLOP
 * counts the multiply-adds only: 2*N*O*OH*OW*C*KH*KW forward, twice that backward. */
#include <stdio.h>

#include "autograd/tape.h"
#include "tensor/ops/conv.h"
#include "tools/bench.h"

typedef struct {
    Tensor *x, *weight, *bias;
    int64_t padding;
    Node *node;
} ConvBench;

static void run_forward(void *p) {
    ConvBench *b = p;
    Arena *a = tensor_arena();
    size_t mark = arena_mark(a);
    tensor_conv2d(b->x, b->weight, b->bias, 1, b->padding);
    arena_release(a, mark);
}

static void run_backward(void *p) {
    ConvBench *b = p;
    b->node->backward(b->node);
}

BENCH(conv, "conv2d NCHW forward and backward at ResNet-50 shapes, batch 8") {
    static const struct {
        int64_t c, o, k, hw;
    } shapes[] = {
        {64, 64, 3, 112}, {256, 128, 1, 112}, {128, 128, 3, 56}, {256, 256, 3, 28},
        {512, 1024, 1, 28}, {512, 512, 3, 14}, {2048, 512, 1, 14},
    };
    const int64_t N = 8;
    for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {
        if (ctx->quick && shapes[s].hw != 14) continue; /* --quick: the two smallest tensors */
        const int64_t C = shapes[s].c, O = shapes[s].o, KS = shapes[s].k, HW = shapes[s].hw;
        char key_fwd[96], key_bwd[96];
        snprintf(key_fwd, sizeof key_fwd, "conv fwd %lldx%lld %lldx%lld %lld", (long long)C,
                 (long long)O, (long long)KS, (long long)KS, (long long)HW);
        snprintf(key_bwd, sizeof key_bwd, "conv bwd %lldx%lld %lldx%lld %lld", (long long)C,
                 (long long)O, (long long)KS, (long long)KS, (long long)HW);
        const bool want_fwd = bench_wanted(ctx, key_fwd), want_bwd = bench_wanted(ctx, key_bwd);
        if (!want_fwd && !want_bwd) continue;
        Arena *a = tensor_arena();
        size_t mark = arena_mark(a);
        Rng r;
        rng_seed(&r, 1);
        ConvBench b = {.padding = KS / 2};
        b.x = bench_uniform(&r, 4, SHAPE(N, C, HW, HW), -1, 1);
        b.weight = bench_uniform(&r, 4, SHAPE(O, C, KS, KS), -0.05f, 0.05f);
        b.bias = bench_uniform(&r, 1, SHAPE(O), -1, 1);
        const double gflop = 2.0 * N * O * HW * HW * C * KS * KS * 1e-9;
        int reps = ctx->quick ? 2 : 5;
        double min_s = ctx->quick ? 0.05 : 1.0;

        if (want_fwd) {
            bool grad = ag_set_grad_enabled(false);
            double t = bench_time(run_forward, &b, reps, min_s);
            ag_set_grad_enabled(grad);
            bench_report(key_fwd, t, gflop);
        }
        if (want_bwd) {
            ag_set_requires_grad(b.x, NULL);
            ag_set_requires_grad(b.weight, NULL);
            ag_set_requires_grad(b.bias, NULL);
            Tensor *out = tensor_conv2d(b.x, b.weight, b.bias, 1, b.padding);
            out->grad = bench_uniform(&r, out->ndim, out->shape, -1, 1);
            b.node = out->node;
            bench_report(key_bwd, bench_time(run_backward, &b, reps, min_s), 2.0 * gflop);
        }
        ag_tape_reset();
        arena_release(a, mark);
    }
}
