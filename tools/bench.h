/* bench.h — `trmml bench`: self-registering benchmarks.
 *
 *     BENCH(gemm, "sgemm GFLOP/s at square and CLIP shapes") { ... bench_report(...) ... }
 *
 * Each benchmark times its work with bench_time() and reports rows with bench_report(): a key
 * (stable across trmml and scripts/bench_torch.py, so the two can be joined), milliseconds per
 * call and the floating-point work per call. Output is TSV on stdout:
 *     bench <TAB> key <TAB> ms <TAB> gflop
 * plus `meta <TAB> name <TAB> value` facts (the GEMM kernel, the device). scripts/bench.sh joins
 * these rows with PyTorch's and writes docs/benchmarks.md (the CPU); scripts/gpu-check.sh times
 * the GPU rows (--device cuda) against PyTorch on the same GPU.
 *
 * The benchmarks run on --device: its tensors' default device (tool_device_select), ctx->dev.
 * A row that cannot run there (bf16 products are CPU-only) is left out with a note on stderr
 * (bench_skip); timings read the clock after synchronising the device (bench_clock). */
#pragma once
#include <stdbool.h>

#include "clip/model.h"

typedef struct {
    int threads;
    bool quick;       /* fewer repetitions (smoke test) */
    const char *only_case; /* --case S: run only the rows whose key contains S (NULL: all) */
    DeviceKind dev;        /* where the benchmarks run: the default device of tensors */
} BenchCtx;

/* Whether the row `key` is to be run (the --case filter); benchmarks skip the work otherwise. */
bool bench_wanted(const BenchCtx *ctx, const char *key);

typedef void (*BenchFn)(const BenchCtx *ctx);
void bench_register(const char *name, const char *about, BenchFn fn);

#define BENCH(name, about)                                                                 \
    static void bench_##name(const BenchCtx *ctx);                                         \
    __attribute__((constructor)) static void bench_register_##name(void) {                 \
        bench_register(#name, (about), bench_##name);                                      \
    }                                                                                      \
    static void bench_##name(const BenchCtx *ctx)

/* Seconds on the monotonic clock, read after the benchmarks' device has finished the work
 * queued on it (device_table(dev)->synchronize; a no-op on the CPU), so that a difference of two
 * readings counts asynchronous GPU work. Every timing of `trmml bench` reads this clock. */
double bench_clock(void);
/* Median seconds per call of fn(arg) over at least `min_reps` calls and ~`min_seconds`, after
 * one warm-up call; each call timed with bench_clock. The next bench_report's log line (stderr)
 * adds the mean CPU time (user + system, all threads) and minor page faults per timed call, and
 * the warm-up call's faults. */
double bench_time(void (*fn)(void *), void *arg, int min_reps, double min_seconds);
/* A row left out on this device: one line on stderr, "KEY: skipped on DEVICE: why". */
void bench_skip(const BenchCtx *ctx, const char *key, const char *why);
/* One result row (stdout), and a readable line on stderr. */
void bench_report(const char *key, double seconds, double gflop);
/* An f32 tensor of `shape` in the current arena (on its device): uniform in [lo, hi) from r,
 * drawn on the host and copied there. */
Tensor *bench_uniform(Rng *r, int ndim, const int64_t *shape, float lo, float hi);
/* A CLIP model of cfg's shapes with random weights scaled to keep activations in range
 * (tools/bench_clip.c); free with clip_model_free. */
ClipModel *bench_random_clip(ClipConfig cfg);
/* Its state dict (OpenAI's key names and dtypes, on the CPU; seed 7): what `trmml bench
 * --random-clip` writes as a checkpoint. Free with param_store_destroy. */
ParamStore *bench_random_clip_state(ClipConfig cfg);
