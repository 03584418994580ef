/* bench.c — the `trmml bench` registry, timer and the GEMM benchmark. */
#include "tools/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "clip/safetensors.h"
#include "tensor/clock.h"
#include "tensor/device.h"
#include "tensor/ops/gemm.h"
#include "tensor/ops/gemm_f32.h"
#include "tools/command.h"
#include "tools/flags.h"

typedef struct {
    const char *name, *about;
    BenchFn fn;
} BenchEntry;

static BenchEntry g_bench[64];
static int g_nbench;

void bench_register(const char *name, const char *about, BenchFn fn) {
    CHECK(g_nbench < 64, "too many benchmarks");
    g_bench[g_nbench++] = (BenchEntry){name, about, fn};
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static DeviceKind g_dev = DEVICE_CPU; /* the benchmarks' device (bench_main) */

double bench_clock(void) {
    /* GPU kernels run asynchronously: without this a timing would end when the launches were
     * queued, not when the work was done. */
    device_table(g_dev)->synchronize();
    return time_now_s();
}

/* Over the timed calls of the last bench_time: mean CPU seconds (user + system, all threads)
 * and mean minor page faults per call, and the faults of its warm-up call, for the log line of
 * the next bench_report. CPU time of a
 * one-thread run barely moves when other processes load the machine (wall time does); faults per
 * call say whether a call maps fresh memory (docs/profile.md). */
static double g_cpu_per_call;
static double g_gemm_per_call; /* wall time in the CPU GEMMs (TRMML_GEMM_CLOCK=1) */
/* TRMML_PROFILE=1: each kernel's seconds and calls over the timed calls, per call. */
static double *g_prof_s;
static int64_t *g_prof_calls;
static int g_prof_n;

/* The profiler's totals now, into fresh arrays (freed by the caller). */
static void prof_snapshot(double **s, int64_t **calls) {
    g_prof_n = device_kernel_count();
    *s = xmalloc((size_t)g_prof_n * sizeof **s);
    *calls = xmalloc((size_t)g_prof_n * sizeof **calls);
    kernel_prof_read(*s, *calls);
}

/* The kernels that took the most time per timed call, largest first, on stderr. */
static void prof_print(int n_calls_shown) {
    bool *shown = xcalloc((size_t)g_prof_n, sizeof *shown);
    double total = 0;
    for (int i = 0; i < g_prof_n; i++) total += g_prof_s[i];
    fprintf(stderr, "    kernels per call (TRMML_PROFILE=1; exclusive wall time, %.1f ms in all):",
            total * 1e3);
    for (int k = 0; k < n_calls_shown; k++) {
        int best = -1;
        for (int i = 0; i < g_prof_n; i++)
            if (!shown[i] && g_prof_s[i] > 0 && (best < 0 || g_prof_s[i] > g_prof_s[best]))
                best = i;
        if (best < 0) break;
        shown[best] = true;
        fprintf(stderr, "%s %s %.1f ms (%.1f%%, %.0f calls)", k ? "," : "",
                device_kernel_name(best), g_prof_s[best] * 1e3,
                total > 0 ? 100 * g_prof_s[best] / total : 0.0, (double)g_prof_calls[best]);
    }
    fputc('\n', stderr);
    free(shown);
}
/* TRMML_PROFILE=1: each layer shape's seconds, calls and operations over the timed calls, per
 * call (prof_layer_* in tensor/device.h). */
enum { BENCH_LAYERS = 256 };
static const char *g_lay_label[BENCH_LAYERS];
static double g_lay_s[BENCH_LAYERS], g_lay_flop[BENCH_LAYERS];
static int64_t g_lay_calls[BENCH_LAYERS];
static int g_lay_n;
static DeviceKind g_bench_dev = DEVICE_CPU; /* the peak column is the CPU sgemm's: CPU runs only */

/* The CPU sgemm's peak here, for the layer table: the best of four 2048^3 products at the
 * current thread count (measured once, ~0.3 s at one thread). */
static double sgemm_peak_gflops(void) {
    static double peak;
    if (peak > 0) return peak;
    const int64_t n = 2048;
    float *a = xmalloc((size_t)(n * n) * sizeof *a), *b = xmalloc((size_t)(n * n) * sizeof *b);
    float *c = xmalloc((size_t)(n * n) * sizeof *c);
    for (int64_t i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.25f - 0.75f;
    for (int r = 0; r < 4; r++) {
        const double t0 = bench_clock();
        KERNEL_RUN(DEVICE_CPU, gemm, c, a, b, 1, n, n, n, false, false, 1.0f, 0.0f, n, n, n, 0, 0,
                   0);
        const double g = 2.0 * (double)n * n * n * 1e-9 / (bench_clock() - t0);
        peak = g > peak ? g : peak;
    }
    free(a), free(b), free(c);
    return peak;
}

/* The layer shapes that took the most time per timed call, largest first, on stderr: time,
 * calls, GFLOP/s and the share of the sgemm peak (a Winograd convolution counts the direct
 * convolution's operations, so it can pass 100 %). */
static void layers_print(int n_shown) {
    bool shown[BENCH_LAYERS] = {false};
    double total = 0;
    for (int i = 0; i < g_lay_n; i++) total += g_lay_s[i];
    if (total <= 0) return;
    const double peak = g_bench_dev == DEVICE_CPU ? sgemm_peak_gflops() : 0;
    fprintf(stderr, "    layers per call (TRMML_PROFILE=1; wall time with their kernels, %.1f ms "
            "in all", total * 1e3);
    if (peak > 0) fprintf(stderr, "; sgemm peak 2048^3 here %.1f GFLOP/s", peak);
    fputs("):\n", stderr);
    for (int k = 0; k < n_shown; k++) {
        int best = -1;
        for (int i = 0; i < g_lay_n; i++)
            if (!shown[i] && g_lay_s[i] > 0 && (best < 0 || g_lay_s[i] > g_lay_s[best])) best = i;
        if (best < 0) break;
        shown[best] = true;
        const double gfs = g_lay_flop[best] * 1e-9 / g_lay_s[best];
        fprintf(stderr, "      %-40s %8.1f ms %5.1f%% %5lld calls %8.1f GFLOP/s", g_lay_label[best],
                g_lay_s[best] * 1e3, 100 * g_lay_s[best] / total, (long long)g_lay_calls[best],
                gfs);
        if (peak > 0) fprintf(stderr, " %5.0f%% of peak", 100 * gfs / peak);
        fputc('\n', stderr);
    }
}

static double g_faults_per_call;
static long g_warmup_faults;
static bool g_have_call_stats; /* set by bench_time, used up by bench_report */

static double cpu_seconds(const struct rusage *r) {
    return (double)(r->ru_utime.tv_sec + r->ru_stime.tv_sec) +
           1e-6 * (double)(r->ru_utime.tv_usec + r->ru_stime.tv_usec);
}

double bench_time(void (*fn)(void *), void *arg, int min_reps, double min_seconds) {
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    fn(arg); /* warm-up */
    double times[1000];
    int n = 0;
    getrusage(RUSAGE_SELF, &r1);
    g_warmup_faults = r1.ru_minflt - r0.ru_minflt;
    r0 = r1;
    const double gemm0 = gemm_clock_seconds();
    double *prof0 = NULL;
    int64_t *calls0 = NULL;
    static double lay_s0[BENCH_LAYERS], lay_f0[BENCH_LAYERS];
    static int64_t lay_c0[BENCH_LAYERS];
    int lay_n0 = 0;
    if (kernel_prof_on) {
        prof_snapshot(&prof0, &calls0);
        lay_n0 = prof_layer_read(BENCH_LAYERS, g_lay_label, lay_s0, lay_c0, lay_f0);
    }
    double start = bench_clock();
    while (n < 1000 && (n < min_reps || bench_clock() - start < min_seconds)) {
        double t0 = bench_clock();
        fn(arg);
        times[n++] = bench_clock() - t0;
    }
    getrusage(RUSAGE_SELF, &r1);
    g_cpu_per_call = (cpu_seconds(&r1) - cpu_seconds(&r0)) / n;
    g_faults_per_call = (double)(r1.ru_minflt - r0.ru_minflt) / n;
    g_gemm_per_call = (gemm_clock_seconds() - gemm0) / n;
    if (kernel_prof_on) {
        free(g_prof_s);
        free(g_prof_calls);
        prof_snapshot(&g_prof_s, &g_prof_calls);
        for (int i = 0; i < g_prof_n; i++) {
            g_prof_s[i] = (g_prof_s[i] - prof0[i]) / n;
            g_prof_calls[i] = (g_prof_calls[i] - calls0[i]) / n;
        }
        free(prof0);
        free(calls0);
        g_lay_n = prof_layer_read(BENCH_LAYERS, g_lay_label, g_lay_s, g_lay_calls, g_lay_flop);
        if (g_lay_n > BENCH_LAYERS) g_lay_n = BENCH_LAYERS;
        for (int i = 0; i < g_lay_n; i++) {
            const bool old = i < lay_n0 && i < BENCH_LAYERS;
            g_lay_s[i] = (g_lay_s[i] - (old ? lay_s0[i] : 0)) / n;
            g_lay_flop[i] = (g_lay_flop[i] - (old ? lay_f0[i] : 0)) / n;
            g_lay_calls[i] = (g_lay_calls[i] - (old ? lay_c0[i] : 0)) / n;
        }
    }
    g_have_call_stats = true;
    qsort(times, n, sizeof *times, cmp_double);
    return times[n / 2];
}

Tensor *bench_uniform(Rng *r, int ndim, const int64_t *shape, float lo, float hi) {
    const int64_t n = shape_numel(ndim, shape);
    float *h = xmalloc((size_t)n * sizeof *h);
    rng_fill_uniform(r, h, n, lo, hi);
    Tensor *t = tensor_from_f32(ndim, shape, h);
    free(h);
    return t;
}

static int g_rows; /* rows reported so far */

void bench_report(const char *key, double seconds, double gflop) {
    g_rows++;
    printf("bench\t%s\t%.4f\t%.6f\n", key, seconds * 1e3, gflop);
    fprintf(stderr, "  %-40s %10.3f ms  %8.1f GFLOP/s", key, seconds * 1e3,
            seconds > 0 ? gflop / seconds : 0.0);
    if (g_have_call_stats)
        fprintf(stderr, "  (per timed call: cpu %.1f ms, %.0f minor faults; warm-up call: %ld "
                "faults)", g_cpu_per_call * 1e3, g_faults_per_call, g_warmup_faults);
    if (g_have_call_stats && gemm_clock_enabled())
        fprintf(stderr, "  (GEMM clock: %.1f ms per call in the CPU GEMMs)", g_gemm_per_call * 1e3);
    fputc('\n', stderr);
    if (g_have_call_stats && kernel_prof_on && g_prof_s) {
        prof_print(16);
        layers_print(24);
    }
    g_have_call_stats = false;
    fflush(stdout);
}

/* --case TEXT: keys containing TEXT; TEXT$: keys ending in TEXT (the fp32 row without its bf16
 * twin, e.g. "rn101 img 448 b8$"). */
bool bench_wanted(const BenchCtx *ctx, const char *key) {
    const char *c = ctx->only_case;
    if (!c) return true;
    const size_t n = strlen(c), k = strlen(key);
    if (n > 0 && c[n - 1] == '$') return k >= n - 1 && strncmp(key + k - (n - 1), c, n - 1) == 0;
    return strstr(key, c) != NULL;
}

void bench_skip(const BenchCtx *ctx, const char *key, const char *why) {
    fprintf(stderr, "  %-40s skipped on %s: %s\n", key, device_name(ctx->dev), why);
}

typedef struct {
    bool quick, list;
    const char *only_case, *random_clip, *out;
} BenchOptions;

static const KeySpec BENCH_FLAGS[] = {
    FLAG_SWITCH(BenchOptions, "quick", quick, "fewer repetitions (a smoke test)"),
    FLAG_SWITCH(BenchOptions, "list", list, "list the benchmarks and exit"),
    FLAG_ARG(BenchOptions, "case", only_case, "TEXT",
             "only the rows whose key contains TEXT (e.g. \"rn101 img 448 b8\"), or ends in "
             "it with a final $ (\"rn101 img 448 b8$\": without the bf16 row); loader runs "
             "all its rows"),
    FLAG_ARG(BenchOptions, "random-clip", random_clip, "rn50|rn101",
             "write the benchmarks' random-weight CLIP of that size to --out (safetensors, a "
             "--model for measurements without downloads: scripts/dist-measure.sh) and exit"),
    FLAG_ARG(BenchOptions, "out", out, "PATH", "where --random-clip writes"),
};

/* --random-clip ARCH --out PATH: the state dict of bench_random_clip as a checkpoint. */
static int write_random_clip(const char *arch, const char *out) {
    if (!out) return tool_usage_error("--random-clip needs --out PATH");
    ClipConfig cfg;
    if (strcmp(arch, "rn50") == 0) cfg = clip_config_rn50();
    else if (strcmp(arch, "rn101") == 0) cfg = clip_config_rn101();
    else return tool_usage_error("--random-clip '%s': expected rn50 or rn101", arch);
    ParamStore *sd = bench_random_clip_state(cfg);
    Status st = safetensors_write(out, sd);
    param_store_destroy(sd);
    if (st != STATUS_OK) return tool_fail(st);
    printf("random %s CLIP (the benchmarks' initialisation, seed 7) written to %s\n", arch, out);
    return 0;
}

int bench_main(int argc, char **argv) {
    BenchOptions o = {0};
    const KeyGroup groups[] = {FLAGS_OF(BENCH_FLAGS, &o)};
    FlagsParsed fp;
    int rc = flags_parse(groups, KEY_COUNT(groups), 1, argc, argv, &fp);
    if (rc != FLAGS_GO) return rc;
    const char *only = fp.npos ? argv[0] : NULL; /* one benchmark, or all */
    if (o.random_clip) return write_random_clip(o.random_clip, o.out);
    if (o.list) {
        for (int i = 0; i < g_nbench; i++) printf("%-12s %s\n", g_bench[i].name, g_bench[i].about);
        return 0;
    }
    /* --device: the benchmarks' tensors live there (auto = CUDA when a GPU answers). */
    DeviceKind dev;
    Status st = tool_device_select(&dev);
    if (st != STATUS_OK) return tool_fail(st);
    g_dev = dev;
    BenchCtx ctx = {.threads = tool_threads(), .quick = o.quick, .only_case = o.only_case,
                    .dev = dev};
    g_bench_dev = dev;
    fprintf(stderr, "trmml bench: %s; running on %s\n", device_summary(), device_name(dev));
    /* The GEMM kernel in use and the device, for the report's header (scripts/bench_report.py):
     * on CUDA the GEMMs are cuBLAS's, the CPU kernel only serves host-side work. */
    printf("meta\tgemm\t%s\n", dev == DEVICE_CPU ? gemm_backend_name() : "cuBLAS");
    printf("meta\tdevice\t%s\n", device_name(dev));
    int ran = 0;
    for (int i = 0; i < g_nbench; i++) {
        if (only && strcmp(only, g_bench[i].name) != 0) continue;
        fprintf(stderr, "%s: %s\n", g_bench[i].name, g_bench[i].about);
        g_bench[i].fn(&ctx);
        ran++;
    }
    if (!ran) {
        fprintf(stderr, "trmml bench: no benchmark named '%s' (see trmml bench --list)\n", only);
        return 2;
    }
    if (o.only_case && g_rows == 0) {
        fprintf(stderr, "trmml bench: --case '%s' matches no row of %s (row keys: the second "
                "column of the TSV, e.g. \"clip rn101 img 448 b8\")\n", o.only_case,
                only ? only : "any benchmark");
        return 2;
    }
    return 0;
}

/* ---- GEMM --------------------------------------------------------------------------------- */

typedef struct {
    DeviceKind dev;
    float *a, *b, *c; /* device memory of dev */
    int64_t m, n, k;
    bool own;      /* the project's fp32 GEMM (gemm_f32.h) instead of the device's gemm kernel */
    void *scratch; /* its packing scratch */
} GemmArgs;

static void run_gemm(void *p) {
    GemmArgs *g = p;
    if (g->own) {
        gemm_f32_batched_cpu(g->c, g->a, g->b, 1, g->m, g->n, g->k, false, false, 1.0f, 0.0f,
                             g->k, g->n, g->n, 0, 0, 0, g->scratch, NULL);
        return;
    }
    KERNEL_RUN(g->dev, gemm, g->c, g->a, g->b, 1, g->m, g->n, g->k, false, false, 1.0f, 0.0f,
               g->k, g->n, g->n, 0, 0, 0);
}

/* n floats uniform in [-1, 1) from r, in new memory of dev (free with dt->free). */
static float *device_uniform(const DeviceTable *dt, Rng *r, int64_t n) {
    float *h = xmalloc((size_t)n * sizeof *h);
    rng_fill_uniform(r, h, n, -1, 1);
    float *d = dt->alloc((size_t)n * sizeof *d);
    CHECK(d, "bench gemm: no %lld bytes of %s memory", (long long)n * 4, dt->name);
    dt->copy_h2d(d, h, (size_t)n * sizeof *h);
    free(h);
    return d;
}

BENCH(gemm, "sgemm C = A B (row-major, no transposes) through the device's gemm kernel (the "
            "CPU's, or cuBLAS), and on an AVX-512 CPU the project's own fp32 GEMM ('gemm own')") {
    /* Square sizes find the peak; the others are the shapes CLIP RN50/RN101 convolutions and the
     * text transformer produce (M = rows of im2col or tokens), then one image of RN101's 1x1
     * convolutions at 448 px (M = output channels, N = pixels, K = input channels). */
    static const int64_t shapes[][3] = {
        {256, 256, 256},    {512, 512, 512},   {1024, 1024, 1024}, {2048, 2048, 2048},
        {1568, 2048, 512},  {6272, 64, 576},   {616, 2048, 512},   {616, 512, 2048},
        {256, 12544, 64},   {64, 12544, 256},  {256, 784, 1024},   {1024, 784, 256},
    };
    int nshapes = ctx->quick ? 2 : (int)(sizeof shapes / sizeof shapes[0]);
    for (int s = 0; s < 2 * nshapes; s++) {
        GemmArgs g = {.m = shapes[s / 2][0], .n = shapes[s / 2][1], .k = shapes[s / 2][2],
                      .own = s % 2 == 1};
        if (g.own && !(device_runs_cpu_kernels(ctx->dev) && gemm_f32_available())) continue;
        char key[96];
        snprintf(key, sizeof key, "gemm %s%lldx%lldx%lld", g.own ? "own " : "", (long long)g.m,
                 (long long)g.n, (long long)g.k);
        if (!bench_wanted(ctx, key)) continue;
        const DeviceTable *dt = device_table(ctx->dev);
        g.dev = ctx->dev;
        Rng r;
        rng_seed(&r, 1);
        g.a = device_uniform(dt, &r, g.m * g.k);
        g.b = device_uniform(dt, &r, g.k * g.n);
        g.c = dt->alloc((size_t)(g.m * g.n) * sizeof *g.c);
        CHECK(g.c, "bench gemm: no memory for C (%s)", key);
        if (g.own) g.scratch = xmalloc(gemm_f32_batched_scratch_bytes(1, true, g.m, g.n, g.k));
        double t = bench_time(run_gemm, &g, ctx->quick ? 2 : 5, ctx->quick ? 0.05 : 1.0);
        free(g.scratch);
        bench_report(key, t, 2.0 * g.m * g.n * g.k * 1e-9);
        dt->free(g.a);
        dt->free(g.b);
        dt->free(g.c);
    }
}
