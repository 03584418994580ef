/* test_cuda.c — the CUDA backend: table completeness, the caching allocator, and CPU-vs-CUDA
 * parity of every kernel, the CLIP model and a few training steps (docs/cuda.md).
 *
 * Parity is table-driven. A case is a small function that declares its buffers through the
 * `par_*` helpers (inputs, outputs that are assigned, buffers that are accumulated into, scratch)
 * and calls one or more kernels through KERNEL_RUN with KP(p, kernel, args...). The runner calls
 * the case once per device: the helpers fill every buffer with the same deterministic host data
 * on both sides (an assigned output starts with different junk on each side, so an element a
 * kernel forgets to write shows up), copy it to the device, and after the call copy back what is
 * to be compared. Adding a kernel is one case function and one line in `cases[]`.
 *
 * Without a GPU the parity tests SKIP (counted, never passed). cuda_parity_selftest_cpu runs
 * every case CPU against CPU on any machine: it proves the cases are well formed (buffers sized
 * right under ASan, outputs fully assigned, deterministic) and that together they call every
 * kernel of tensor/kernels.def. test/parity.h lends the runner to other backends (the guard
 * device's test, test/test_guard.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "cuda/cache_alloc.h"
#include "nn/optim.h"
#include "tensor/convert.h"
#include "tensor/device.h"
#include "tensor/ops/gemm.h"
#include "tensor/ops/loss.h"
#include "tensor/ops/matmul.h"
#include "tensor/ops/elementwise.h"
#include "test/parity.h"
#include "test/test.h"
#include "test/util_clip.h"
#ifdef TRMML_CUDA
#include "cuda/runtime.h"
#endif

/* ---- table completeness (no GPU needed) --------------------------------------------------- */

TEST(cuda_table_complete) {
#ifndef TRMML_CUDA
    test_skip("CUDA backend not compiled in (CUDA=0 or no nvcc)");
#else
    const char *missing[128];
    int n = device_missing_kernels(DEVICE_CUDA, missing, 128);
    EXPECT(n == 0, "%d of %d kernels have no CUDA entry; first: %s", n, device_kernel_count(),
           n ? missing[0] : "");
    const DeviceTable *t = device_table(DEVICE_CUDA);
    EXPECT(t->alloc && t->free && t->memset0 && t->copy_h2d && t->copy_d2h && t->copy_d2d &&
               t->synchronize,
           "a CUDA memory entry is NULL");
    EXPECT(strcmp(t->name, "cuda") == 0, "table name '%s'", t->name);
#endif
}

/* ---- the caching allocator's bookkeeping, over malloc (no GPU needed) ---------------------- */

static int g_raw_allocs, g_raw_frees, g_raw_fail;
static void *counting_alloc(size_t n) {
    if (g_raw_fail) return NULL;
    g_raw_allocs++;
    return malloc(n);
}
static void counting_free(void *p) {
    g_raw_frees++;
    free(p);
}

TEST(cuda_allocator_caches_and_trims) {
    g_raw_allocs = g_raw_frees = g_raw_fail = 0;
    CacheAlloc ca = {.raw_alloc = counting_alloc, .raw_free = counting_free};
    EXPECT(cache_alloc_round(1) == 512 && cache_alloc_round(513) == 1024 &&
               cache_alloc_round((1 << 20) + 1) == ((size_t)4 << 20) - ((size_t)2 << 20),
           "rounding: %zu %zu %zu", cache_alloc_round(1), cache_alloc_round(513),
           cache_alloc_round((1 << 20) + 1));
    void *a = cache_alloc_get(&ca, 1000), *b = cache_alloc_get(&ca, 3000000);
    EXPECT(a && b && g_raw_allocs == 2 && ca.live_bytes == 1024 + ((size_t)4 << 20),
           "two raw allocations, live %zu", ca.live_bytes);
    memset(a, 1, 1000); /* usable memory (ASan checks the size) */
    cache_alloc_put(&ca, a);
    cache_alloc_put(&ca, b);
    EXPECT(ca.live_bytes == 0 && ca.cached_bytes == 1024 + ((size_t)4 << 20) && g_raw_frees == 0,
           "free goes to the cache: live %zu cached %zu frees %d", ca.live_bytes, ca.cached_bytes,
           g_raw_frees);
    /* Same bucket, fits: served from the cache. Much smaller: a new raw block (never more than
     * twice the request). */
    void *c = cache_alloc_get(&ca, 900);
    EXPECT(c == a && ca.hits == 1 && g_raw_allocs == 2, "900 B reuses the 1 KiB block");
    void *d = cache_alloc_get(&ca, 100);
    EXPECT(d != a && d != b && g_raw_allocs == 3, "100 B does not take a 4 MiB block");
    void *e = cache_alloc_get(&ca, 3500000);
    EXPECT(e == b && g_raw_allocs == 3, "3.5 MB reuses the 4 MiB block");
    cache_alloc_put(&ca, c);
    cache_alloc_put(&ca, d);
    cache_alloc_put(&ca, e);
    /* A failing raw allocator: the cache is trimmed and the request retried once. */
    g_raw_fail = 1;
    void *f = cache_alloc_get(&ca, (size_t)64 << 20);
    EXPECT(f == NULL && ca.cached_bytes == 0 && g_raw_frees == 3,
           "failure trims the cache: cached %zu frees %d", ca.cached_bytes, g_raw_frees);
    g_raw_fail = 0;
    void *g = cache_alloc_get(&ca, 10);
    cache_alloc_put(&ca, g);
    EXPECT(cache_alloc_trim(&ca) == 512 && g_raw_frees == 4 && ca.cached_bytes == 0,
           "trim returns everything cached");
}

/* ---- the parity harness ------------------------------------------------------------------- */

enum { PB_F32, PB_I64, PB_F64, PB_RAW };
enum { PB_IN, PB_OUT, PB_ACC, PB_SCRATCH };

typedef struct {
    const char *name;
    int type, role;
    size_t bytes;
    void *dev;  /* on the side's device */
    void *host; /* compared buffers: the result, copied back */
} ParBuf;

#define PAR_MAX_BUFS 96

typedef struct {
    DeviceKind dev;
    const DeviceTable *t;
    int side; /* 0 reference, 1 candidate: selects the junk of assigned outputs */
    uint64_t seed;
    int n;
    ParBuf buf[PAR_MAX_BUFS];
} Par;

/* Which kernels the cases have called (coverage over tensor/kernels.def). */
static const char *g_kernel_names[] = {
#define KERNEL(name, args) #name,
#include "tensor/kernels.def"
#undef KERNEL
};
#define N_KERNELS ((int)(sizeof g_kernel_names / sizeof g_kernel_names[0]))
static bool g_covered[N_KERNELS];

static void par_note(const char *k) {
    for (int i = 0; i < N_KERNELS; i++)
        if (strcmp(g_kernel_names[i], k) == 0) g_covered[i] = true;
}
/* Run kernel `k` of the side's device with the given arguments, through KERNEL_RUN as the op
 * wrappers do (so a backend's kernel_begin/kernel_end bracket runs too); noted for coverage. */
#define KP(p, k, ...)                                                                      \
    do {                                                                                   \
        par_note(#k);                                                                      \
        KERNEL_RUN((p)->dev, k, __VA_ARGS__);                                              \
    } while (0)

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double par_u01(uint64_t *s) {
    *s += 0x9e3779b97f4a7c15ull;
    return (double)(mix64(*s) >> 11) * 0x1.0p-53;
}
static uint64_t par_stream(const Par *p) { return mix64(p->seed * 131 + (uint64_t)p->n); }

static void *par_add(Par *p, const char *name, int type, int role, size_t bytes, const void *host) {
    CHECK(p->n < PAR_MAX_BUFS, "parity case uses more than %d buffers", PAR_MAX_BUFS);
    ParBuf *b = &p->buf[p->n++];
    b->name = name;
    b->type = type;
    b->role = role;
    b->bytes = bytes;
    b->host = NULL;
    b->dev = p->t->alloc(bytes);
    CHECK(b->dev, "parity: %zu bytes on %s", bytes, p->t->name);
    p->t->copy_h2d(b->dev, host, bytes);
    return b->dev;
}

/* Uniform floats in [lo, hi): an input (role PB_IN), an accumulated buffer (PB_ACC: compared,
 * same start on both sides) or an in-out buffer. */
static float *par_f32(Par *p, const char *name, int role, int64_t n, float lo, float hi) {
    float *h = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    uint64_t s = par_stream(p);
    for (int64_t i = 0; i < n; i++) h[i] = lo + (hi - lo) * (float)par_u01(&s);
    float *d = par_add(p, name, PB_F32, role, (size_t)n * sizeof(float), h);
    free(h);
    return d;
}
static float *pin(Par *p, const char *name, int64_t n, float lo, float hi) {
    return par_f32(p, name, PB_IN, n, lo, hi);
}
static float *pacc(Par *p, const char *name, int64_t n) {
    return par_f32(p, name, PB_ACC, n, -1.0f, 1.0f);
}
/* Values drawn from a small set (ties, label targets {-1, 0, 1}). */
static float *pchoice(Par *p, const char *name, int role, int64_t n, const float *vals, int nv) {
    float *h = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    uint64_t s = par_stream(p);
    for (int64_t i = 0; i < n; i++) h[i] = vals[(int)(par_u01(&s) * nv) % nv];
    float *d = par_add(p, name, PB_F32, role, (size_t)n * sizeof(float), h);
    free(h);
    return d;
}
/* An assigned output: junk that differs between the two sides. */
static float *pout(Par *p, const char *name, int64_t n) {
    float *h = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) h[i] = p->side ? -1234.5f : 9876.5f;
    float *d = par_add(p, name, PB_F32, PB_OUT, (size_t)n * sizeof(float), h);
    free(h);
    return d;
}
static float *pscratch(Par *p, int64_t n) {
    float *h = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) h[i] = p->side ? 3.0e30f : -7.0e29f;
    float *d = par_add(p, "scratch", PB_F32, PB_SCRATCH, (size_t)n * sizeof(float), h);
    free(h);
    return d;
}
static int64_t *pidx(Par *p, const char *name, int64_t n, int64_t lo, int64_t hi) {
    int64_t *h = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    uint64_t s = par_stream(p);
    for (int64_t i = 0; i < n; i++) h[i] = lo + (int64_t)(par_u01(&s) * (double)(hi - lo));
    int64_t *d = par_add(p, name, PB_I64, PB_IN, (size_t)n * sizeof(int64_t), h);
    free(h);
    return d;
}
static int64_t *pout_i64(Par *p, const char *name, int64_t n) {
    int64_t *h = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) h[i] = p->side ? -77 : -99;
    int64_t *d = par_add(p, name, PB_I64, PB_OUT, (size_t)n * sizeof(int64_t), h);
    free(h);
    return d;
}
static void *praw(Par *p, const char *name, const void *host, size_t bytes) {
    return par_add(p, name, PB_RAW, PB_IN, bytes, host);
}

typedef void (*ParFn)(Par *p);
typedef struct {
    const char *family, *name;
    ParFn fn;
    double atol, rtol;
    int64_t k; /* > 0: a sum of k products, atol = tol_matmul_atol(k) (STYLE §6) */
} ParCase;

/* Run one case on device `dev` (side 0 or 1); the compared buffers come back in p->buf[].host. */
static void par_side(const ParCase *c, DeviceKind dev, int side, Par *p) {
    memset(p, 0, sizeof *p);
    p->dev = dev;
    p->t = device_table(dev);
    p->side = side;
    p->seed = 1 + (uint64_t)(strlen(c->name) * 7919) + (uint64_t)c->name[0];
    /* The CPU reference multiplies through the naive double-accumulating GEMM (the oracle). */
    GemmPath prev = gemm_set_path(GEMM_NAIVE);
    c->fn(p);
    gemm_set_path(prev);
    p->t->synchronize();
    for (int i = 0; i < p->n; i++) {
        ParBuf *b = &p->buf[i];
        if (b->role == PB_OUT || b->role == PB_ACC) {
            b->host = xmalloc(b->bytes ? b->bytes : 1);
            p->t->copy_d2h(b->host, b->dev, b->bytes);
        }
        p->t->free(b->dev);
    }
}

/* Bit for bit: the first element whose bytes differ, with both values. */
static void par_compare_exact(const char *what, const ParBuf *r, const ParBuf *g) {
    const size_t esz = r->type == PB_F32 ? sizeof(float) : sizeof(int64_t);
    for (size_t j = 0; j < r->bytes / esz; j++) {
        const char *a = (const char *)r->host + j * esz, *b = (const char *)g->host + j * esz;
        if (memcmp(a, b, esz) == 0) continue;
        if (r->type == PB_F32)
            test_fail(__FILE__, __LINE__, "%s[%zu]: %.9g vs %.9g (not bit-identical)", what, j,
                      *(const float *)a, *(const float *)b);
        else if (r->type == PB_F64)
            test_fail(__FILE__, __LINE__, "%s[%zu]: %.17g vs %.17g (not bit-identical)", what, j,
                      *(const double *)a, *(const double *)b);
        else
            test_fail(__FILE__, __LINE__, "%s[%zu]: %lld vs %lld", what, j,
                      (long long)*(const int64_t *)a, (long long)*(const int64_t *)b);
        return;
    }
}

static void par_compare(const ParCase *c, Par *ref, Par *got, bool exact) {
    const double atol = c->k > 0 ? tol_matmul_atol(c->k) : c->atol;
    EXPECT(ref->n == got->n, "%s: %d buffers vs %d", c->name, ref->n, got->n);
    for (int i = 0; i < ref->n && i < got->n; i++) {
        ParBuf *r = &ref->buf[i], *g = &got->buf[i];
        if (!r->host || !g->host) continue;
        char what[160];
        snprintf(what, sizeof what, "%s/%s", c->name, r->name);
        if (exact) {
            par_compare_exact(what, r, g);
        } else if (r->type == PB_F32) {
            /* NaN against NaN and an infinity against the same infinity agree (masked softmax
             * rows, max with NaN); the finite rest goes through the tolerance check. */
            int64_t n = (int64_t)(r->bytes / sizeof(float));
            float *a = r->host, *b = g->host;
            for (int64_t j = 0; j < n; j++)
                if ((isnan(a[j]) && isnan(b[j])) || (isinf(a[j]) && a[j] == b[j]))
                    a[j] = b[j] = 0.0f;
            EXPECT_CLOSE_N(what, b, a, n, atol, c->rtol);
        } else if (r->type == PB_I64) {
            const int64_t *a = r->host, *b = g->host;
            for (size_t j = 0; j < r->bytes / sizeof(int64_t); j++)
                if (a[j] != b[j]) {
                    test_fail(__FILE__, __LINE__, "%s[%zu]: %lld vs %lld", what, j, (long long)a[j],
                              (long long)b[j]);
                    break;
                }
        } else if (r->type == PB_F64) {
            const double *a = r->host, *b = g->host;
            for (size_t j = 0; j < r->bytes / sizeof(double); j++)
                EXPECT(fabs(a[j] - b[j]) <= atol + c->rtol * fabs(a[j]), "%s[%zu]: %.17g vs %.17g",
                       what, j, a[j], b[j]);
        }
    }
}

/* exact: every compared buffer bit for bit (two backends running the same kernels); otherwise
 * the case's tolerance. */
static void par_run(const ParCase *c, DeviceKind ref_dev, DeviceKind got_dev, bool exact) {
    static Par ref, got;
    par_side(c, ref_dev, 0, &ref);
    par_side(c, got_dev, 1, &got);
    par_compare(c, &ref, &got, exact);
    for (int i = 0; i < PAR_MAX_BUFS; i++) {
        free(ref.buf[i].host);
        free(got.buf[i].host);
    }
}

/* ---- the cases, one per kernel behaviour -------------------------------------------------- */

#define TOL_EW TOL_ELEMENTWISE_ATOL, TOL_ELEMENTWISE_RTOL, 0
#define TOL_RED TOL_REDUCE_ATOL, TOL_REDUCE_RTOL, 0
#define TOL_MM(k) TOL_MATMUL_ATOL, TOL_MATMUL_RTOL, (k)
#define TOL_EXACT 0.0, 0.0, 0

/* core */
static void c_gemm_nn(Par *p) {
    enum { M = 13, N = 17, K = 70 };
    float *a = pin(p, "a", M * K, -1, 1), *b = pin(p, "b", K * N, -1, 1), *c = pout(p, "c", M * N);
    KP(p, gemm, c, a, b, 1, M, N, K, false, false, 1.0f, 0.0f, K, N, N, 0, 0, 0);
}
static void c_gemm_batched_t(Par *p) {
    /* batched, both transposed, B shared (stride 0), accumulating (beta = 1), alpha != 1 */
    enum { BT = 3, M = 9, N = 11, K = 65 };
    float *a = pin(p, "a", BT * K * M, -1, 1), *b = pin(p, "b", N * K, -1, 1);
    float *c = pacc(p, "c", BT * M * N);
    KP(p, gemm, c, a, b, BT, M, N, K, true, true, 0.5f, 1.0f, M, K, N, K * M, 0, M * N);
}
static void c_gemm_tn_ld(Par *p) {
    /* A^T B with row strides larger than the matrices (sub-blocks of wider buffers) */
    enum { M = 7, N = 5, K = 33, LDA = 10, LDB = 8, LDC = 6 };
    float *a = pin(p, "a", K * LDA, -1, 1), *b = pin(p, "b", K * LDB, -1, 1);
    float *c = pacc(p, "c", M * LDC);
    KP(p, gemm, c, a, b, 1, M, N, K, true, false, 1.0f, 1.0f, LDA, LDB, LDC, 0, 0, 0);
}
static void c_gemm_k0(Par *p) {
    float *a = pin(p, "a", 4, -1, 1), *b = pin(p, "b", 4, -1, 1), *c = pacc(p, "c", 2 * 3 * 5);
    KP(p, gemm, c, a, b, 2, 3, 5, 0, false, false, 1.0f, 0.5f, 1, 5, 5, 0, 0, 15);
}
static void c_accumulate(Par *p) {
    float *in = pin(p, "in", 1001, -2, 2), *out = pacc(p, "out", 1001);
    KP(p, accumulate, out, in, 1001);
}
static void c_fill(Par *p) { KP(p, fill, pout(p, "out", 777), 0.25f, 777); }
static void c_convert(Par *p) {
    enum { N = 300 };
    uint16_t h16[N], b16[N];
    int64_t i64[N];
    uint8_t u8[N];
    int32_t i32[N];
    for (int i = 0; i < N; i++) {
        float v = (float)(i - 150) * 0.37f;
        h16[i] = f32_to_f16(v);
        b16[i] = f32_to_bf16(v);
        i64[i] = (int64_t)(i * 1000003) - 150000000;
        u8[i] = (uint8_t)(i * 7);
        i32[i] = -i * 12345;
    }
    KP(p, convert_to_f32, pout(p, "f16", N), praw(p, "h", h16, sizeof h16), N, DT_F16);
    KP(p, convert_to_f32, pout(p, "bf16", N), praw(p, "b", b16, sizeof b16), N, DT_BF16);
    KP(p, convert_to_f32, pout(p, "i64", N), praw(p, "l", i64, sizeof i64), N, DT_I64);
    KP(p, convert_to_f32, pout(p, "u8", N), praw(p, "u", u8, sizeof u8), N, DT_U8);
    KP(p, convert_to_f32, pout(p, "i32", N), praw(p, "i", i32, sizeof i32), N, DT_I32);
}

/* elementwise: a (3,1,7) (op) b (5,1) -> (3,5,7), both operands broadcast */
static BroadcastGeom bc_geom(void) {
    BroadcastGeom g = {.ndim = 3, .shape = {3, 5, 7}, .astride = {7, 0, 1}, .bstride = {0, 1, 0}};
    return g;
}
static void c_binary(Par *p) {
    BroadcastGeom g = bc_geom();
    float *a = pin(p, "a", 21, -2, 2), *b = pin(p, "b", 5, 0.5f, 2);
    for (int op = 0; op < BINARY_COUNT; op++) {
        float *out = pout(p, "out", 105);
        KP(p, binary_forward, out, a, b, &g, (BinaryOp)op);
        float *dout = pin(p, "dout", 105, -1, 1), *da = pacc(p, "da", 21), *db = pacc(p, "db", 5);
        KP(p, binary_backward, da, db, dout, a, b, &g, (BinaryOp)op);
    }
}
static void c_binary_long_reduce(Par *p) {
    /* bias-style: a (300, 9) + b (9): b's gradient sums 300 rows (the block-reduction path) */
    BroadcastGeom g = {.ndim = 2, .shape = {300, 9}, .astride = {9, 1}, .bstride = {0, 1}};
    float *a = pin(p, "a", 2700, -1, 1), *b = pin(p, "b", 9, -1, 1), *out = pout(p, "out", 2700);
    KP(p, binary_forward, out, a, b, &g, BINARY_MUL);
    float *dout = pin(p, "dout", 2700, -1, 1), *db = pacc(p, "db", 9);
    KP(p, binary_backward, NULL, db, dout, a, b, &g, BINARY_MUL);
}
static void c_unary(Par *p) {
    enum { N = 517 };
    /* inputs away from kinks and domain edges; (alpha, beta) per op where it matters */
    const float lo[UNARY_COUNT] = {-3, 0.1f, 0.1f, -3, -3, -8, -3, -4, -4, 0.2f, -3, -3, -3};
    const float al[UNARY_COUNT] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 2.5f, -0.5f, 1.5f, 0};
    const float be[UNARY_COUNT] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.7f, -0.25f, 0};
    for (int op = 0; op < UNARY_COUNT; op++) {
        float *x = pin(p, "x", N, lo[op], lo[op] < 0 ? -lo[op] : 3.0f), *y = pout(p, "y", N);
        KP(p, unary_forward, y, x, N, (UnaryOp)op, al[op], be[op]);
        float *dy = pin(p, "dy", N, -1, 1), *dx = pacc(p, "dx", N);
        KP(p, unary_backward, dx, dy, x, y, N, (UnaryOp)op, al[op], be[op], true);
        float *dx2 = pout(p, "dx assigned", N);
        KP(p, unary_backward, dx2, dy, x, y, N, (UnaryOp)op, al[op], be[op], false);
    }
}

/* matmul */
static void c_linear_bias(Par *p) {
    /* the forward without the own GEMM's scratch on either side (the fill + gemm form) */
    float *x = pin(p, "x", 29 * 19, -1, 1), *w = pin(p, "w", 37 * 19, -1, 1);
    float *bias = pin(p, "bias", 37, -1, 1), *out = pout(p, "out", 29 * 37);
    KP(p, linear_forward, out, x, w, bias, 29, 19, 37, NULL);
    float *out2 = pout(p, "out without bias", 29 * 37);
    KP(p, linear_forward, out2, x, w, NULL, 29, 19, 37, NULL);
    float *dout = pin(p, "dout", 29 * 37, -1, 1), *db = pacc(p, "dbias", 37);
    KP(p, linear_bias_backward, db, dout, 29, 37);
}

/* conv: 3x3 stride 2 pad 1 in row tiles; 3x3 stride 1 in multi-image tiles; 1x1 pointwise;
 * each also with the fused epilogue (a residual in out, ReLU), forward only */
static void conv_case(Par *p, ConvGeom g, bool bias, bool fused) {
    int64_t K = g.c * g.kh * g.kw;
    int64_t colsz = K * g.tile_imgs * g.tile_rows * g.ow, ysz = g.o * g.tile_imgs * g.oh * g.ow;
    float *x = pin(p, "x", g.n * g.c * g.h * g.w, -1, 1), *w = pin(p, "w", g.o * K, -1, 1);
    float *b = bias ? pin(p, "b", g.o, -1, 1) : NULL;
    const int64_t nout = g.n * g.o * g.oh * g.ow;
    float *out = fused ? pacc(p, "out", nout) : pout(p, "out", nout);
    KP(p, conv2d_forward, out, x, w, b, pscratch(p, colsz), pscratch(p, ysz), &g, fused, fused);
    if (fused) return;
    float *dout = pin(p, "dout", g.n * g.o * g.oh * g.ow, -1, 1);
    float *dx = pacc(p, "dx", g.n * g.c * g.h * g.w), *dw = pacc(p, "dw", g.o * K);
    float *db = pacc(p, "db", g.o);
    KP(p, conv2d_backward, dx, dw, db, pscratch(p, colsz), pscratch(p, colsz), pscratch(p, ysz),
            dout, x, w, &g);
}
static void c_conv_strided(Par *p) {
    ConvGeom g = {.n = 2,
                  .c = 3,
                  .h = 11,
                  .w = 9,
                  .o = 5,
                  .kh = 3,
                  .kw = 3,
                  .oh = 6,
                  .ow = 5,
                  .stride_h = 2,
                  .stride_w = 2,
                  .pad_h = 1,
                  .pad_w = 1,
                  .tile_rows = 4,
                  .tile_imgs = 1};
    conv_case(p, g, true, false);
    conv_case(p, g, true, true);
}
static void c_conv_images(Par *p) {
    ConvGeom g = {.n = 3,
                  .c = 4,
                  .h = 7,
                  .w = 6,
                  .o = 6,
                  .kh = 3,
                  .kw = 2,
                  .oh = 5,
                  .ow = 5,
                  .stride_h = 1,
                  .stride_w = 1,
                  .pad_h = 0,
                  .pad_w = 0,
                  .tile_rows = 5,
                  .tile_imgs = 2};
    conv_case(p, g, false, false);
    conv_case(p, g, true, true);
}
static void c_conv_pointwise(Par *p) {
    ConvGeom g = {.n = 2,
                  .c = 7,
                  .h = 5,
                  .w = 3,
                  .o = 4,
                  .kh = 1,
                  .kw = 1,
                  .oh = 5,
                  .ow = 3,
                  .stride_h = 1,
                  .stride_w = 1,
                  .pad_h = 0,
                  .pad_w = 0,
                  .tile_rows = 5,
                  .tile_imgs = 1};
    conv_case(p, g, true, false);
    conv_case(p, g, true, true);
}

/* pool */
static void c_pool(Par *p) {
    float *x = pin(p, "x", 2 * 3 * 8 * 6, -1, 1), *y = pout(p, "y", 2 * 3 * 4 * 3);
    KP(p, avg_pool2d_forward, y, x, 2, 3, 8, 6, 2);
    KP(p, avg_pool2d_backward, pacc(p, "dx", 2 * 3 * 8 * 6), pin(p, "dy", 2 * 3 * 4 * 3, -1, 1),
            2, 3, 8, 6, 2);
    float *m = pout(p, "mean", 6);
    KP(p, spatial_mean_forward, m, pin(p, "x2", 6 * 555, -1, 1), 6, 555);
    KP(p, spatial_mean_backward, pacc(p, "dx2", 6 * 555), pin(p, "dm", 6, -1, 1), 6, 555);
}

/* batchnorm: training (running stats updated) and eval, then backward of each */
static void c_batchnorm(Par *p) {
    enum { N = 3, C = 5, HW = 13 };
    for (int training = 0; training < 2; training++) {
        float *x = pin(p, "x", N * C * HW, -2, 3), *w = pin(p, "w", C, 0.5f, 1.5f);
        float *b = pin(p, "b", C, -1, 1), *out = pout(p, "out", N * C * HW);
        float *mean = pout(p, "mean", C), *rstd = pout(p, "rstd", C);
        float *rm = par_f32(p, "running_mean", PB_ACC, C, -0.5f, 0.5f);
        float *rv = par_f32(p, "running_var", PB_ACC, C, 0.5f, 2.0f);
        KP(p, batchnorm_forward, out, mean, rstd, rm, rv, x, w, b, N, C, HW, training, 0.1f, 1e-5f);
        float *dout = pin(p, "dout", N * C * HW, -1, 1);
        KP(p, batchnorm_backward, pacc(p, "dx", N * C * HW), pacc(p, "dw", C), pacc(p, "db", C),
                dout, x, mean, rstd, w, N,
         C, HW, training);
    }
    enum { O = 4, K = 27 };
    float *cw = pin(p, "conv_w", O * K, -1, 1), *cb = pin(p, "conv_b", O, -1, 1);
    float *wo = pout(p, "w_out", O * K), *bo = pout(p, "b_out", O);
    KP(p, batchnorm_fold_forward, wo, bo, cw, cb, pin(p, "bn_w", O, 0.5f, 1.5f), pin(p, "bn_b", O,
            -1, 1),
     pin(p, "rm", O, -1, 1), pin(p, "rv", O, 0.5f, 2), O, K, 1e-5f);
}

/* resize: down and up, both filters */
static void c_resize(Par *p) {
    const int64_t sz[2][4] = {{13, 11, 7, 5}, {5, 6, 12, 9}}; /* H W OH OW */
    for (int i = 0; i < 2; i++) {
        int64_t H = sz[i][0], W = sz[i][1], OH = sz[i][2], OW = sz[i][3];
        float *x = pin(p, "x", 2 * 3 * H * W, 0, 1);
        KP(p, resize_bicubic_forward, pout(p, "bicubic", 2 * 3 * OH * OW), pscratch(p,
                6 * H * OW), x, 2, 3, H, W, OH, OW);
        KP(p, resize_bilinear_forward, pout(p, "bilinear", 2 * 3 * OH * OW), pscratch(p,
                6 * H * OW), x, 2, 3, H, W, OH, OW);
    }
}

/* reduce: a middle dim, a whole-tensor reduction (the block path), ties and NaN for max */
static void c_reduce(Par *p) {
    float *x = pin(p, "x", 4 * 9 * 5, -2, 2);
    KP(p, sum_forward, pout(p, "sum", 20), x, 4, 9, 5, 1);
    KP(p, sum_forward, pout(p, "mean_all", 1), x, 1, 180, 1, 180);
    KP(p, sum_backward, pacc(p, "dx", 180), pin(p, "dy", 20, -1, 1), 4, 9, 5, 9);
    const float vals[4] = {0.0f, 1.0f, 2.0f, 2.0f};
    float *t = pchoice(p, "ties", PB_IN, 4 * 9 * 5, vals, 4);
    int64_t *am = pout_i64(p, "argmax", 20);
    KP(p, max_forward, pout(p, "max", 20), am, t, 4, 9, 5);
    KP(p, max_backward, pacc(p, "dx_max", 180), pin(p, "dy_max", 20, -1, 1), am, 4, 9, 5);
    float *mall = pout(p, "max_all", 1);
    KP(p, max_forward, mall, pout_i64(p, "argmax_all", 1), t, 1, 180, 1);
    KP(p, max_all_backward, pacc(p, "dx_all", 180), pin(p, "dy_all", 1, -1, 1), t, mall, 180);
    const float nanv[3] = {NAN, 1.0f, 3.0f};
    float *tn = pchoice(p, "nan", PB_IN, 7 * 50, nanv, 3);
    KP(p, max_forward, pout(p, "max_nan", 7), pout_i64(p, "argmax_nan", 7), tn, 7, 50, 1);
}

/* softmax: a masked middle axis, log-softmax of the last axis, and the causal mask */
static void c_softmax(Par *p) {
    enum { O = 3, D = 6, I = 4 };
    /* mask (1, D, I) broadcast over the outer dim; one column fully masked */
    float mh[D * I];
    for (int i = 0; i < D * I; i++)
        mh[i] = (i % I == 3) ? -INFINITY : (i % 5 == 0 ? -INFINITY : 0.3f * (i % 3));
    float *mask = praw(p, "mask", mh, sizeof mh);
    SoftmaxMask mg = {.ndim = 3, .shape = {O, D, I}, .stride = {0, I, 1}, .axis = 1};
    float *x = pin(p, "x", O * D * I, -3, 3), *y = pout(p, "y", O * D * I);
    KP(p, softmax_forward, y, x, mask, &mg, O, D, I);
    KP(p, softmax_backward, pacc(p, "dx", O * D * I), pin(p, "dy", O * D * I, -1, 1), y, O, D, I);
    float *ly = pout(p, "logy", 7 * 300);
    KP(p, log_softmax_forward, ly, pin(p, "x2", 7 * 300, -5, 5), NULL, NULL, 7, 300, 1);
    KP(p, log_softmax_backward, pacc(p, "dx2", 7 * 300), pin(p, "dy2", 7 * 300, -1, 1), ly, 7,
            300, 1);
    KP(p, causal_mask, pout(p, "causal", 9 * 9), 9);
}

/* norm */
static void c_layernorm(Par *p) {
    enum { N = 11, C = 300 };
    for (int affine = 0; affine < 2; affine++) {
        float *x = pin(p, "x", N * C, -2, 4);
        float *w = affine ? pin(p, "w", C, 0.5f, 1.5f) : NULL,
              *b = affine ? pin(p, "b", C, -1, 1) : NULL;
        float *y = pout(p, "y", N * C), *mean = pout(p, "mean", N), *rstd = pout(p, "rstd", N);
        KP(p, layernorm_forward, y, mean, rstd, x, w, b, N, C, 1e-5f);
        KP(p, layernorm_backward, pacc(p, "dx", N * C), affine ? pacc(p, "dw", C) : NULL,
                affine ? pacc(p, "db", C) : NULL,
         pin(p, "dy", N * C, -1, 1), x, w, mean, rstd, N, C);
    }
}
static void c_l2_normalize(Par *p) {
    enum { O = 3, D = 33, I = 2 };
    float *x = pin(p, "x", O * D * I, -1, 1), *y = pout(p, "y", O * D * I),
          *nrm = pout(p, "norm", O * I);
    KP(p, l2_normalize_forward, y, nrm, x, O, D, I, 1e-12f);
    KP(p, l2_normalize_backward, pacc(p, "dx", O * D * I), pin(p, "dy", O * D * I, -1, 1), x, nrm,
            O, D, I, 1e-12f);
    KP(p, l2_normalize_apply, pout(p, "apply", O * D * I), x, nrm, O, D, I, 1e-12f);
}

/* shape: a permute (2,3,4) -> (4,2,3) into a larger buffer at an offset */
static void c_strided_copy(Par *p) {
    StridedCopyGeom g = {.ndim = 3,
                         .shape = {4, 2, 3},
                         .in_stride = {1, 12, 4},
                         .out_stride = {6, 3, 1},
                         .in_offset = 0,
                         .out_offset = 5};
    float *x = pin(p, "x", 24, -1, 1);
    KP(p, strided_copy_forward, par_f32(p, "out", PB_ACC, 30, -1, 1), x, &g);
    KP(p, strided_copy_backward, pacc(p, "dx", 24), pin(p, "dout", 30, -1, 1), &g);
}

/* index */
static void c_index(Par *p) {
    enum { V = 10, D = 7, NI = 23, B = 3, T = 5, K = 2 };
    int64_t *ids = pidx(p, "ids", NI, 0, V); /* 23 draws from 10 rows: repeats */
    KP(p, embedding_forward, pout(p, "emb", NI * D), pin(p, "w", V * D, -1, 1), ids, NI, D);
    KP(p, embedding_backward, pacc(p, "dw", V * D), pin(p, "demb", NI * D, -1, 1), ids, NI, D);
    int64_t *idx = pidx(p, "idx", B, 0, T);
    KP(p, gather_rows_forward, pout(p, "rows", B * D), pin(p, "x", B * T * D, -1, 1), idx, B, T, D);
    KP(p, gather_rows_backward, pacc(p, "dx", B * T * D), pin(p, "drows", B * D, -1, 1), idx, B,
            T, D);
    for (int shared = 0; shared < 2; shared++) {
        float *base = pin(p, "base", B * T * D, -1, 1);
        float *src = pin(p, "src", (shared ? 1 : B) * K * D, -1, 1);
        KP(p, write_rows_forward, pout(p, "written", B * T * D), base, src, B, T, D, K, 2, shared);
        KP(p, write_rows_backward, pacc(p, "dbase", B * T * D), pacc(p, "dsrc",
                (shared ? 1 : B) * K * D),
         pin(p, "dwritten", B * T * D, -1, 1), B, T, D, K, 2, shared);
    }
    const float vals[5] = {0.5f, 1.0f, 1.0f, 2.0f, NAN};
    float *s = pchoice(p, "scores", PB_IN, 6 * 20, vals, 5);
    KP(p, topk_forward, pout(p, "topv", 6 * 4), pout_i64(p, "topi", 6 * 4), s, 6, 20, 4);
}

/* dropout: the mask must be identical (exact compare), the values to rounding */
static void c_dropout(Par *p) {
    enum { N = 4099 };
    float *x = pin(p, "x", N, -1, 1), *y = pout(p, "y", N), *m = pout(p, "mask", N);
    KP(p, dropout_forward, y, m, x, N, 0.3f, 1.0f / 0.7f, 0x1234abcd5678ull, (int64_t)0);
    /* A slice of a larger tensor: draws from element 5000 on. */
    KP(p, dropout_forward, pout(p, "y_at", N), pout(p, "mask_at", N), x, N, 0.3f, 1.0f / 0.7f,
       0x1234abcd5678ull, (int64_t)5000);
    KP(p, dropout_backward, pacc(p, "dx", N), pin(p, "dy", N, -1, 1), m, N, 1.0f / 0.7f);
}

/* attention */
static void c_attention(Par *p) {
    enum { B = 2, NH = 3, T = 5, HS = 4, W = 20 };
    float *pr = par_f32(p, "probs", PB_ACC, B * NH * T * T, -3, 3); /* in place */
    KP(p, attention_softmax_forward, pr, B * NH, T, T, true);
    float *pr2 = par_f32(p, "probs_full", PB_ACC, B * NH * T * 7, -3, 3);
    KP(p, attention_softmax_forward, pr2, B * NH, T, 7, false);
    /* dscores aliasing dprobs, as the wrapper calls it */
    float *dp = par_f32(p, "dprobs", PB_ACC, B * NH * T * 7, -1, 1);
    KP(p, attention_softmax_backward, dp, dp, pr2, B * NH, T, 7);
    float *flat = pin(p, "flat", B * T * W, -1, 1), *heads = pout(p, "heads", B * NH * T * HS);
    KP(p, attention_heads_split_forward, heads, flat, B, T, W, 5, NH, HS);
    KP(p, attention_heads_split_backward, pacc(p, "dflat", B * T * W), pin(p, "dheads",
            B * NH * T * HS, -1, 1), B, T, W, 5, NH, HS);
    KP(p, attention_heads_merge_forward, pout(p, "merged", B * T * NH * HS), heads, B, T, NH, HS);
    KP(p, attention_heads_merge_backward, pacc(p, "dheads2", B * NH * T * HS), pin(p, "dmerged",
            B * T * NH * HS, -1, 1), B, T, NH, HS);
}

/* loss */
static void c_loss(Par *p) {
    enum { N = 6, C = 9 };
    const float tv[3] = {-1.0f, 0.0f, 1.0f};
    float *z = pin(p, "z", N * C, -6, 6), *zn = pin(p, "zneg", N * C, -3, 3);
    float *y = pchoice(p, "y", PB_IN, N * C, tv, 3), *dl = pin(p, "dloss", 1, 0.5f, 2);
    for (int r = 0; r < LOSS_REDUCTION_COUNT; r++) {
        KP(p, bce_with_logits_forward, pout(p, "bce", 1), z, y, N, C, (LossReduction)r);
        KP(p, bce_with_logits_backward, pacc(p, "dbce", N * C), dl, z, y, N, C, (LossReduction)r);
    }
    AslParams ap = {.gamma_pos = 1.0f, .gamma_neg = 4.0f, .clip = 0.05f, .eps = 1e-8f};
    KP(p, asl_forward, pout(p, "asl", 1), z, zn, y, N, C, &ap, LOSS_MEAN);
    KP(p, asl_backward, pacc(p, "dasl_pos", N * C), pacc(p, "dasl_neg", N * C), dl, z, zn, y, N,
            C, &ap, LOSS_MEAN);
    AslParams ap0 = {.gamma_pos = 0.0f, .gamma_neg = 2.0f, .clip = 0.0f, .eps = 1e-8f};
    KP(p, asl_forward, pout(p, "asl1", 1), z, NULL, y, N, C, &ap0, LOSS_SUM);
    KP(p, asl_backward, pacc(p, "dasl1", N * C), NULL, dl, z, NULL, y, N, C, &ap0, LOSS_SUM);
    /* kl over the middle axis of (2, 5, 3) */
    float *s = pin(p, "student", 30, -2, 2), *t = pin(p, "teacher", 30, -2, 2);
    float *ls = pout(p, "lse_s", 6), *lt = pout(p, "lse_t", 6);
    KP(p, kl_div_softmax_forward, pout(p, "kl", 1), ls, lt, s, t, 2, 5, 3, 2.0f);
    KP(p, kl_div_softmax_backward, pacc(p, "dkl", 30), dl, s, t, ls, lt, 2, 5, 3, 2.0f);
    int64_t *tgt = pidx(p, "target", N, 0, C);
    float *lse = pout(p, "lse", N);
    KP(p, cross_entropy_forward, pout(p, "ce", 1), lse, z, tgt, N, C);
    KP(p, cross_entropy_backward, pacc(p, "dce", N * C), dl, z, tgt, lse, N, C);
    const float mv[3] = {0.0f, 0.0f, 1.0f};
    float *pm = pchoice(p, "pos_mask", PB_IN, N * C, mv, 3);
    float *nm = pout(p, "neg_max", N), *ns = pout(p, "neg_sum", N);
    KP(p, info_nce_forward, pout(p, "nce", 1), nm, ns, z, pm, N, C, 0.07f);
    KP(p, info_nce_backward, pacc(p, "dnce", N * C), dl, z, pm, nm, ns, N, C, 0.07f);
}

/* optim */
static void c_optim(Par *p) {
    enum { N = 1031 };
    float *g = pin(p, "grad", N, -1, 1);
    SgdStep s0 = {
        .lr = 0.1f, .momentum = 0.9f, .weight_decay = 1e-4f, .nesterov = true, .first = true};
    float *prm = par_f32(p, "param", PB_ACC, N, -1, 1), *buf = pacc(p, "momentum", N);
    KP(p, sgd_step, prm, buf, g, N, &s0);
    s0.first = false;
    KP(p, sgd_step, prm, buf, g, N, &s0);
    SgdStep s1 = {.lr = 0.05f};
    KP(p, sgd_step, par_f32(p, "param_plain", PB_ACC, N, -1, 1), NULL, g, N, &s1);
    AdamWStep a = {.decay = 1.0f - 1e-3f * 0.01f,
                   .beta1 = 0.9f,
                   .beta2 = 0.999f,
                   .one_minus_beta1 = 0.1f,
                   .one_minus_beta2 = 0.001f,
                   .eps = 1e-8f,
                   .step_size = 1e-3f / (1.0f - 0.9f),
                   .bias_correction2_sqrt = sqrtf(0.001f)};
    float *pa = par_f32(p, "param_adamw", PB_ACC, N, -1, 1);
    float *m = pacc(p, "exp_avg", N), *v = par_f32(p, "exp_avg_sq", PB_ACC, N, 0, 1);
    KP(p, adamw_step, pa, m, v, g, N, &a);
    double zero = 0.0;
    double *acc = par_add(p, "sum_squares", PB_F64, PB_ACC, sizeof(double), &zero);
    KP(p, sum_squares, acc, g, N);
    KP(p, scale_inplace, par_f32(p, "scaled", PB_ACC, N, -1, 1), N, 0.37f);
}

static const ParCase cases[] = {
    {"core", "gemm_nn", c_gemm_nn, TOL_MM(70)},
    {"core", "gemm_batched_transposed_shared_b", c_gemm_batched_t, TOL_MM(65)},
    {"core", "gemm_tn_strided_rows", c_gemm_tn_ld, TOL_MM(33)},
    {"core", "gemm_k0", c_gemm_k0, TOL_EXACT},
    {"core", "accumulate", c_accumulate, TOL_EW},
    {"core", "fill", c_fill, TOL_EXACT},
    {"core", "convert_to_f32", c_convert, TOL_EXACT},
    {"elementwise", "binary_broadcast_all_ops", c_binary, TOL_EW},
    /* a 300-row sum in double, rounded once: reduction tolerance */
    {"elementwise", "binary_long_reduction", c_binary_long_reduce, TOL_RED},
    {"elementwise", "unary_all_ops", c_unary, TOL_EW},
    {"matmul", "linear_bias", c_linear_bias, TOL_RED},
    {"conv", "conv_strided_row_tiles", c_conv_strided, TOL_MM(27)},
    {"conv", "conv_multi_image_tiles", c_conv_images, TOL_MM(24)},
    {"conv", "conv_pointwise", c_conv_pointwise, TOL_MM(30)},
    {"pool", "pool", c_pool, TOL_RED},
    {"batchnorm", "batchnorm_train_eval_fold", c_batchnorm, TOL_RED},
    {"resize", "resize_up_down", c_resize, TOL_EW},
    {"reduce", "reduce_sum_max", c_reduce, TOL_RED},
    {"softmax", "softmax_masked_log_causal", c_softmax, TOL_RED},
    {"norm", "layernorm", c_layernorm, TOL_RED},
    {"norm", "l2_normalize", c_l2_normalize, TOL_RED},
    {"shape", "strided_copy_permute", c_strided_copy, TOL_EXACT},
    {"index", "index_all", c_index, TOL_EW},
    {"dropout", "dropout_same_mask", c_dropout, TOL_EW},
    {"attention", "attention_pieces", c_attention, TOL_RED},
    {"loss", "losses", c_loss, TOL_RED},
    {"optim", "optimizers", c_optim, TOL_EW},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

void parity_run_all(DeviceKind ref, DeviceKind got, bool exact) {
    memset(g_covered, 0, sizeof g_covered);
    for (int i = 0; i < N_CASES; i++) par_run(&cases[i], ref, got, exact);
    for (int i = 0; i < N_KERNELS; i++)
        EXPECT(g_covered[i], "no parity case calls kernel '%s'", g_kernel_names[i]);
}

/* Every case CPU against CPU: runs on any machine (the harness's own test) and checks that the
 * cases together call every kernel of the table. */
TEST(cuda_parity_selftest_cpu) { parity_run_all(DEVICE_CPU, DEVICE_CPU, false); }

/* The runs that need a GPU: SKIP (counted) without one. */
static bool gpu_or_skip(void) {
#ifndef TRMML_CUDA
    test_skip("CUDA backend not compiled in");
    return false;
#else
    if (!device_table(DEVICE_CUDA)->available) {
        test_skip("no GPU answers");
        return false;
    }
    return true;
#endif
}

static void parity_family(const char *family) {
    if (!gpu_or_skip()) return;
    int n = 0;
    for (int i = 0; i < N_CASES; i++)
        if (strcmp(cases[i].family, family) == 0) {
            par_run(&cases[i], DEVICE_CPU, DEVICE_CUDA, false);
            n++;
        }
    EXPECT(n > 0, "no parity case in family %s", family);
}

TEST(cuda_parity_core) { parity_family("core"); }
TEST(cuda_parity_elementwise) { parity_family("elementwise"); }
TEST(cuda_parity_matmul) { parity_family("matmul"); }
TEST(cuda_parity_conv) { parity_family("conv"); }
TEST(cuda_parity_pool) { parity_family("pool"); }
TEST(cuda_parity_batchnorm) { parity_family("batchnorm"); }
TEST(cuda_parity_resize) { parity_family("resize"); }
TEST(cuda_parity_reduce) { parity_family("reduce"); }
TEST(cuda_parity_softmax) { parity_family("softmax"); }
TEST(cuda_parity_norm) { parity_family("norm"); }
TEST(cuda_parity_shape) { parity_family("shape"); }
TEST(cuda_parity_index) { parity_family("index"); }
TEST(cuda_parity_dropout) { parity_family("dropout"); }
TEST(cuda_parity_attention) { parity_family("attention"); }
TEST(cuda_parity_loss) { parity_family("loss"); }
TEST(cuda_parity_optim) { parity_family("optim"); }

/* Every family of cases[] has its TEST above (a new family needs one more line there). */
TEST(cuda_parity_families_registered) {
    static const char *registered[] = {
        "core",    "elementwise", "matmul", "conv",  "pool",    "batchnorm", "resize", "reduce",
        "softmax", "norm",        "shape",  "index", "dropout", "attention", "loss",   "optim"};
    for (int i = 0; i < N_CASES; i++) {
        bool found = false;
        for (size_t j = 0; j < sizeof registered / sizeof registered[0]; j++)
            found |= strcmp(cases[i].family, registered[j]) == 0;
        EXPECT(found, "case %s: family %s has no cuda_parity_ TEST", cases[i].name,
               cases[i].family);
    }
}

/* ---- model level ------------------------------------------------------------------------ */

#ifdef TRMML_CUDA
static float *to_host(const Tensor *t) {
    float *h = xmalloc((size_t)t->numel * sizeof(float));
    tensor_copy_to_host(h, t);
    return h;
}
#endif

/* The small random CLIP (test/util_clip.h): image and text embeddings on CPU and CUDA. */
TEST(cuda_clip_model_equivalence) {
    if (!gpu_or_skip()) return;
#ifdef TRMML_CUDA
    ClipConfig cfg = test_small_clip_config();
    ParamStore *sd = test_random_clip(&cfg, 5);
    enum { B = 2, T = 12 };
    Tensor *img = test_randn(40, 4, SHAPE(B, 3, 64, 64));
    int64_t ids[B * T] = {0};
    for (int b = 0; b < B; b++) {
        ids[b * T] = 49406;
        for (int t = 1; t < 6 + b; t++) ids[b * T + t] = 300 + 97 * t + 13 * b;
        ids[b * T + 6 + b] = 49407;
    }
    Tensor *tid = tensor_empty(DT_I64, 2, SHAPE(B, T));
    memcpy(tid->data, ids, sizeof ids);
    ClipModel *cpu = NULL, *gpu = NULL;
    CHECK(clip_model_load(&cpu, sd, &cfg) == STATUS_OK, "%s", error_last());
    bool g = ag_set_grad_enabled(false);
    Tensor *emb = NULL, *dense = NULL;
    clip_encode_image(cpu, img, &emb, &dense);
    Tensor *txt = clip_encode_text(cpu, tid);

    Arena *ga = arena_create(DEVICE_CUDA, "clip parity", 0);
    Arena *prev = tensor_set_arena(ga);
    ParamStore *gsd = test_store_copy(sd, DEVICE_CUDA);
    CHECK(clip_model_load(&gpu, gsd, &cfg) == STATUS_OK, "%s", error_last());
    Tensor *gimg = tensor_empty_like(img);
    tensor_copy_from_host(gimg, tensor_f32(img));
    Tensor *gtid = tensor_empty(DT_I64, 2, SHAPE(B, T));
    device_table(DEVICE_CUDA)->copy_h2d(gtid->data, ids, sizeof ids);
    Tensor *gemb = NULL, *gdense = NULL;
    clip_encode_image(gpu, gimg, &gemb, &gdense);
    Tensor *gtxt = clip_encode_text(gpu, gtid);
    float *h1 = to_host(gemb), *h2 = to_host(gdense), *h3 = to_host(gtxt);
    EXPECT_CLOSE_N("image embedding", h1, tensor_f32(emb), emb->numel, TOL_MODEL_ATOL,
                   TOL_MODEL_RTOL);
    EXPECT_CLOSE_N("dense features", h2, tensor_f32(dense), dense->numel, TOL_MODEL_ATOL,
                   TOL_MODEL_RTOL);
    EXPECT_CLOSE_N("text embedding", h3, tensor_f32(txt), txt->numel, TOL_MODEL_ATOL,
                   TOL_MODEL_RTOL);
    free(h1), free(h2), free(h3);
    ag_set_grad_enabled(g);
    clip_model_free(gpu);
    param_store_destroy(gsd);
    tensor_set_arena(prev);
    arena_destroy(ga);
    clip_model_free(cpu);
    param_store_destroy(sd);
#endif
}

#ifdef TRMML_CUDA
/* Five steps of a two-layer classifier with AdamW (and SGD with momentum) on `dev`; the losses
 * of every step into losses[]. Parameters start from the same host values on both devices. */
static void train_steps(DeviceKind dev, bool adamw, float *losses) {
    enum { B = 16, IN = 12, HID = 24, NC = 5, STEPS = 5 };
    Arena *a = arena_create(dev, "train steps", 0);
    Arena *prev = tensor_set_arena(a);
    ParamStore *ps = param_store_create(dev, "mlp");
    Tensor *w1 = param_add(ps, "w1", DT_F32, 2, SHAPE(HID, IN), true);
    Tensor *b1 = param_add(ps, "b1", DT_F32, 1, SHAPE(HID), true);
    Tensor *w2 = param_add(ps, "w2", DT_F32, 2, SHAPE(NC, HID), true);
    Tensor *b2 = param_add(ps, "b2", DT_F32, 1, SHAPE(NC), true);
    param_store_finalize(ps);
    Tensor *prm[4] = {w1, b1, w2, b2};
    Rng r;
    rng_seed(&r, 99);
    for (int i = 0; i < 4; i++) {
        float *h = xmalloc((size_t)prm[i]->numel * sizeof(float));
        rng_fill_normal(&r, h, prm[i]->numel, 0.0f, 0.3f);
        tensor_copy_from_host(prm[i], h);
        free(h);
    }
    float xh[B * IN];
    int64_t yh[B];
    rng_fill_uniform(&r, xh, B * IN, -1, 1);
    for (int i = 0; i < B; i++) yh[i] = (int64_t)(rng_uniform(&r) * NC);
    Optimizer *opt = adamw ? optim_adamw_create(ps, 1e-2, 0.9, 0.999, 1e-8, 0.01)
                           : optim_sgd_create(ps, 0.1, 0.9, 1e-4, false);
    for (int s = 0; s < STEPS; s++) {
        Tensor *x = TENSOR_F32(B, IN);
        tensor_copy_from_host(x, xh);
        Tensor *y = tensor_empty(DT_I64, 1, SHAPE(B));
        device_table(dev)->copy_h2d(y->data, yh, sizeof yh);
        Tensor *h = tensor_relu(tensor_linear(x, w1, b1));
        Tensor *loss = tensor_cross_entropy(tensor_linear(h, w2, b2), y);
        device_table(dev)->copy_d2h(&losses[s], loss->data, sizeof(float));
        optim_zero_grad(opt);
        ag_backward(loss);
        clip_grad_norm(ps, 1.0);
        optim_step(opt);
        tensor_step_end();
    }
    optim_destroy(opt);
    param_store_destroy(ps);
    tensor_set_arena(prev);
    arena_destroy(a);
}
#endif

/* A few optimizer steps through the tape on the GPU follow the CPU's loss trajectory. */
TEST(cuda_train_steps_match_cpu) {
    if (!gpu_or_skip()) return;
#ifdef TRMML_CUDA
    for (int adamw = 0; adamw < 2; adamw++) {
        float lc[5], lg[5];
        train_steps(DEVICE_CPU, adamw, lc);
        train_steps(DEVICE_CUDA, adamw, lg);
        EXPECT_CLOSE_N(adamw ? "adamw losses" : "sgd losses", lg, lc, 5, TOL_MODEL_ATOL,
                       TOL_MODEL_RTOL);
        EXPECT(lc[4] < lc[0], "the loss should fall over 5 steps: %g -> %g", lc[0], lc[4]);
    }
#endif
}

/* The caching allocator on the device: a freed block is reused, trim returns it. */
TEST(cuda_allocator_on_device) {
    if (!gpu_or_skip()) return;
#ifdef TRMML_CUDA
    cuda_allocator_trim();
    size_t live0, cached0;
    cuda_allocator_stats(&live0, &cached0);
    const DeviceTable *t = device_table(DEVICE_CUDA);
    void *a = t->alloc(3 << 20);
    t->free(a);
    void *b = t->alloc(3 << 20);
    EXPECT(a == b, "a freed 3 MiB block should be handed out again");
    t->free(b);
    size_t live, cached;
    cuda_allocator_stats(&live, &cached);
    EXPECT(live == live0 && cached >= (size_t)(3 << 20), "live %zu cached %zu", live, cached);
    EXPECT(cuda_allocator_trim() >= (size_t)(3 << 20), "trim released the block");
#endif
}
