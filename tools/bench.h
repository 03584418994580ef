/* bench.h — `trmml bench`: self-registering benchmarks.
 *
 *     BENCH(gemm, "sgemm GFLOP/s at square and CLIP shapes") { ... bench_report(...) ... }
 *
 * Each benchmark times its work with bench_time() and reports rows with bench_report(): a key
 * (stable across trmml and scripts/bench_torch.py, so the two can be joined), milliseconds per
 * call and the floating-point work per call. Output is TSV on stdout:
 *     bench <TAB> key <TAB> ms <TAB> gflop
 * scripts/bench.sh joins these rows with PyTorch's and writes docs/benchmarks.md. */
#pragma once
#include <stdbool.h>

#include "clip/model.h"

typedef struct {
    int threads;
    bool quick;       /* fewer repetitions (smoke test) */
    const char *only_case; /* --case S: run only the rows whose key contains S (NULL: all) */
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

/* Median seconds per call of fn(arg) over at least `min_reps` calls and ~`min_seconds`, after
 * one warm-up call. The next bench_report's log line (stderr) adds the mean CPU time (user +
 * system, all threads) and minor page faults per timed call, and the warm-up call's faults. */
double bench_time(void (*fn)(void *), void *arg, int min_reps, double min_seconds);
/* One result row (stdout), and a readable line on stderr. */
void bench_report(const char *key, double seconds, double gflop);
/* A CLIP model of cfg's shapes with random weights scaled to keep activations in range
 * (tools/bench_clip.c); free with clip_model_free. */
ClipModel *bench_random_clip(ClipConfig cfg);
