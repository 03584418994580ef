/* test_guard.c — the guard device (tensor/device_guard.c, docs/guard.md): its table, its
 * allocator, the fault it turns a host access into, every kernel against the CPU's bit for bit,
 * a small network trained through the tape, and the small random CLIP (image features, text
 * features of ids, and the text tower forward and backward from embedded prompts), each equal to
 * the CPU run bit for bit.
 *
 * The crash tests run the faulting access in a child process (fork) and check that the child
 * died by SIGABRT with the handler's message on its stderr. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autograd/tape.h"
#include "nn/optim.h"
#include "tensor/device.h"
#include "tensor/ops/attention.h"
#include "tensor/ops/batchnorm.h"
#include "tensor/ops/conv.h"
#include "tensor/ops/dropout.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/index.h"
#include "tensor/ops/loss.h"
#include "tensor/ops/matmul.h"
#include "tensor/ops/norm.h"
#include "tensor/ops/pool.h"
#include "tensor/ops/reduce.h"
#include "tensor/ops/resize.h"
#include "tensor/ops/shape.h"
#include "tensor/ops/softmax.h"
#include "test/parity.h"
#include "test/test.h"
#include "test/util_clip.h"

TEST(guard_table_complete) {
    const char *missing[128];
    int n = device_missing_kernels(DEVICE_GUARD, missing, 128);
    EXPECT(n == 0, "%d of %d kernels have no guard entry; first: %s", n, device_kernel_count(),
           n ? missing[0] : "");
    const DeviceTable *t = device_table(DEVICE_GUARD);
    EXPECT(t->alloc && t->free && t->memset0 && t->copy_h2d && t->copy_d2h && t->copy_d2d &&
               t->synchronize && t->kernel_begin && t->kernel_end,
           "a guard memory entry or bracket is NULL");
    EXPECT(t->available && strcmp(t->name, "guard") == 0, "table name '%s'", t->name);
    EXPECT(strcmp(device_name(DEVICE_GUARD), "guard") == 0, "device_name '%s'",
           device_name(DEVICE_GUARD));
    EXPECT(!device_host_addressable(DEVICE_GUARD) && device_runs_cpu_kernels(DEVICE_GUARD),
           "the guard runs the CPU kernels on memory the host may not address");
    DeviceKind dev;
    int idx;
    EXPECT(device_parse("guard", &dev, &idx) == STATUS_OK && dev == DEVICE_GUARD,
           "--device guard parses");
    EXPECT(device_parse("auto", &dev, &idx) == STATUS_OK && dev != DEVICE_GUARD,
           "auto never picks the guard");
    const DeviceTable *c = device_table(DEVICE_CPU);
    EXPECT(!c->kernel_begin && !c->kernel_end, "the CPU has no kernel bracket");
}

/* ---- faults --------------------------------------------------------------------------------- */

/* Run fn(p) in a child with its stderr captured into out; returns the child's wait status. */
static int run_child(void (*fn)(void *), void *p, char *out, size_t cap) {
    int fd[2];
    CHECK(pipe(fd) == 0, "pipe");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], STDERR_FILENO);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        fn(p);
        _exit(0);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd[0], out + n, cap - 1 - n)) > 0) n += (size_t)r;
    out[n] = '\0';
    close(fd[0]);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
    return st;
}

static void host_read(void *p) {
    volatile float v = ((volatile const float *)p)[3];
    (void)v;
}
static void host_write(void *p) { ((volatile float *)p)[3] = 1.0f; }
/* An ordinary fault outside the guard's range: a PROT_NONE page of our own. */
static void fault_elsewhere(void *p) { ((volatile char *)p)[0] = 1; }

static void expect_guard_crash(const char *what, void (*fn)(void *), void *p, const char *access) {
    static char out[16384];
    int st = run_child(fn, p, out, sizeof out);
    EXPECT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: the child should die by SIGABRT "
           "(status 0x%x); its stderr:\n%s", what, st, out);
    EXPECT(strstr(out, "host access to guard-device memory at 0x"), "%s: message missing:\n%s",
           what, out);
    EXPECT(strstr(out, "(12 bytes into an allocation of 400 bytes)"),
           "%s: the offset and the allocation size are named:\n%s", what, out);
#if defined(__x86_64__)
    EXPECT(strstr(out, access), "%s: '%s' expected:\n%s", what, access, out);
#endif
    EXPECT(strstr(out, "Backtrace:\n") && strstr(out, "[0x"), "%s: no backtrace:\n%s", what, out);
}

TEST(guard_host_access_crashes) {
    const DeviceTable *t = device_table(DEVICE_GUARD);
    float *p = t->alloc(400);
    expect_guard_crash("host read", host_read, p, ", a read.");
    expect_guard_crash("host write", host_write, p, ", a write.");
    /* The same access through a kernel is fine. */
    KERNEL_RUN(DEVICE_GUARD, fill, p, 2.5f, 100);
    float h[100];
    t->copy_d2h(h, p, sizeof h);
    EXPECT(h[0] == 2.5f && h[99] == 2.5f, "fill through the table: %g %g", h[0], h[99]);
    t->free(p);
}

TEST(guard_other_faults_fall_through) {
    device_table(DEVICE_GUARD); /* the handler is installed */
    long page = sysconf(_SC_PAGESIZE);
    void *q = mmap(NULL, (size_t)page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(q != MAP_FAILED, "mmap");
    static char out[16384];
    int st = run_child(fault_elsewhere, q, out, sizeof out);
    munmap(q, (size_t)page);
    EXPECT(!strstr(out, "guard-device"), "a fault outside the guard's range is not its own:\n%s",
           out);
    /* the default action (SIGSEGV), or under ASan its own report and exit status */
    EXPECT((WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV) || (WIFEXITED(st) && WEXITSTATUS(st) != 0),
           "the child should die of the fault (status 0x%x):\n%s", st, out);
}

/* ---- memory --------------------------------------------------------------------------------- */

TEST(guard_copies_and_memset) {
    const DeviceTable *t = device_table(DEVICE_GUARD);
    enum { N = 1000 };
    float h[N], back[N];
    for (int i = 0; i < N; i++) h[i] = (float)i * 0.5f - 7.0f;
    float *a = t->alloc(N * sizeof(float)), *b = t->alloc(N * sizeof(float));
    EXPECT((uintptr_t)a % 64 == 0 && (uintptr_t)b % 64 == 0, "64-byte aligned: %p %p", (void *)a,
           (void *)b);
    t->copy_h2d(a, h, sizeof h);
    t->copy_d2d(b, a, sizeof h);
    t->copy_d2h(back, b, sizeof back);
    EXPECT(memcmp(back, h, sizeof h) == 0, "h2d, d2d, d2h round trip");
    t->memset0(b + 10, 20 * sizeof(float));
    t->copy_d2h(back, b, sizeof back);
    EXPECT(back[9] == h[9] && back[10] == 0.0f && back[29] == 0.0f && back[30] == h[30],
           "memset0 of [10, 30): %g %g %g %g", back[9], back[10], back[29], back[30]);
    t->copy_h2d(a, h, 0); /* empty copies are fine */
    t->free(a);
    t->free(b);
    t->free(NULL);
}

TEST(guard_allocation_reuse) {
    const DeviceTable *t = device_table(DEVICE_GUARD);
    void *a = t->alloc(1000);
    t->free(a);
    void *b = t->alloc(900);
    EXPECT(b == a, "a freed 1000-byte block serves 900 bytes (same size class)");
    void *c = t->alloc(100);
    EXPECT(c != a, "100 bytes do not take the 1 KiB block");
    t->free(b);
    t->free(c);
    /* A long run of large allocations and frees stays in the same few blocks. */
    void *first = t->alloc((size_t)3 << 20);
    t->free(first);
    for (int i = 0; i < 1000; i++) {
        void *p = t->alloc((size_t)3 << 20);
        if (p != first) {
            test_fail(__FILE__, __LINE__, "round %d: a new 3 MiB block, not the freed one", i);
            t->free(p);
            break;
        }
        t->free(p);
    }
}

TEST(guard_allocation_too_large) {
    const DeviceTable *t = device_table(DEVICE_GUARD);
    void *p = t->alloc((size_t)1 << 46);
    EXPECT(p == NULL, "64 TiB cannot fit in the reservation");
    EXPECT(strstr(error_last(), "guard device") && strstr(error_last(), "do not fit"),
           "a clear error: '%s'", error_last());
    p = t->alloc(SIZE_MAX - 100);
    EXPECT(p == NULL, "SIZE_MAX - 100 bytes cannot fit");
    void *q = t->alloc(64);
    EXPECT(q != NULL, "the device still allocates after a refusal");
    t->free(q);
}

/* Arenas, tensors and parameter stores on the guard device; host objects (headers) released
 * with the device memory after a mark, and kept before it. */
TEST(guard_arena_tensors_params) {
    Arena *ga = arena_create(DEVICE_GUARD, "guard test", 0);
    Arena *prev = tensor_set_arena(ga);
    float h[7] = {1, -2, 3, -4, 5, -6, 7}, back[7];
    Tensor *a = tensor_from_f32(1, SHAPE(7), h);
    Tensor *wrap = tensor_wrap(DT_F32, DEVICE_GUARD, 1, SHAPE(7), a->data); /* header only */
    size_t mark = arena_mark(ga);
    Tensor *z = TENSOR_ZEROS(3, 5);
    tensor_fill(z, 1.5f);
    float hz[15];
    tensor_copy_to_host(hz, z);
    EXPECT(hz[0] == 1.5f && hz[14] == 1.5f, "tensor_fill on guard: %g %g", hz[0], hz[14]);
    arena_release(ga, mark);
    Tensor *y = TENSOR_F32(9);
    EXPECT(y == z, "the header made after the mark is released (reused: %p vs %p)", (void *)y,
           (void *)z);
    EXPECT(wrap->shape[0] == 7 && a->shape[0] == 7 && y != wrap && y != a,
           "headers made before the mark survive its release");
    tensor_copy_to_host(back, wrap);
    EXPECT(memcmp(back, h, sizeof h) == 0, "data made before the mark survives");

    ParamStore *ps = param_store_create(DEVICE_GUARD, "guard params");
    Tensor *w = param_add(ps, "w", DT_F32, 2, SHAPE(4, 3), true);
    param_add(ps, "frozen", DT_F32, 1, SHAPE(5), false);
    param_store_finalize(ps);
    tensor_fill(w->grad, 3.0f);
    param_zero_grad(ps);
    float g[12];
    tensor_copy_to_host(g, w->grad);
    EXPECT(g[0] == 0.0f && g[11] == 0.0f, "param_zero_grad on guard");
    param_store_destroy(ps);

    tensor_step_end(); /* resets the arena with its host side */
    EXPECT(arena_used(ga) == 0, "reset: %zu bytes used", arena_used(ga));
    tensor_set_arena(prev);
    arena_destroy(ga);
}

/* ---- every kernel, bit for bit ------------------------------------------------------------- */

TEST(guard_parity_all_kernels) { parity_run_all(DEVICE_CPU, DEVICE_GUARD, true); }

/* ---- a network through the tape -------------------------------------------------------------- */

enum { NET_B = 2, NET_C = 8, NET_S = 12, NET_D = 16, NET_NC = 5, NET_STEPS = 3, NET_NH = 2 };

typedef struct {
    ParamStore *ps;
    Tensor *c1w, *c1b, *bnw, *bnb, *rm, *rv, *c2w, *fcw, *emb, *lnw, *lnb, *qkv, *proj, *hw, *hb;
} Net;

static Tensor *net_param(Net *n, const char *name, int ndim, const int64_t *shape, bool train) {
    return param_add(n->ps, name, DT_F32, ndim, shape, train);
}

static void net_create(Net *n, DeviceKind dev) {
    n->ps = param_store_create(dev, "net");
    n->c1w = net_param(n, "c1w", 4, SHAPE(NET_C, 3, 3, 3), true);
    n->c1b = net_param(n, "c1b", 1, SHAPE(NET_C), true);
    n->bnw = net_param(n, "bnw", 1, SHAPE(NET_C), true);
    n->bnb = net_param(n, "bnb", 1, SHAPE(NET_C), true);
    n->rm = net_param(n, "running_mean", 1, SHAPE(NET_C), false);
    n->rv = net_param(n, "running_var", 1, SHAPE(NET_C), false);
    n->c2w = net_param(n, "c2w", 4, SHAPE(NET_C, NET_C, 3, 3), true);
    n->fcw = net_param(n, "fcw", 2, SHAPE(NET_D, NET_C), true);
    n->emb = net_param(n, "emb", 2, SHAPE(10, NET_D), true);
    n->lnw = net_param(n, "lnw", 1, SHAPE(NET_D), true);
    n->lnb = net_param(n, "lnb", 1, SHAPE(NET_D), true);
    n->qkv = net_param(n, "qkv", 2, SHAPE(3 * NET_D, NET_D), true);
    n->proj = net_param(n, "proj", 2, SHAPE(NET_D, NET_D), true);
    n->hw = net_param(n, "hw", 2, SHAPE(NET_NC, NET_D), true);
    n->hb = net_param(n, "hb", 1, SHAPE(NET_NC), true);
    param_store_finalize(n->ps);
    Rng r;
    rng_seed(&r, 7);
    for (int i = 0; i < param_count(n->ps); i++) {
        Tensor *t = param_at(n->ps, i);
        float *h = xmalloc((size_t)t->numel * sizeof(float));
        rng_fill_uniform(&r, h, t->numel, -0.4f, 0.4f);
        if (t == n->bnw || t == n->lnw || t == n->rv)
            for (int64_t k = 0; k < t->numel; k++) h[k] += 1.0f;
        tensor_copy_from_host(t, h);
        free(h);
    }
}

/* A tensor of the current arena's device from host values. */
static Tensor *net_input(DType dt, int ndim, const int64_t *shape, const void *host) {
    Tensor *t = tensor_empty(dt, ndim, shape);
    device_table(t->device)->copy_h2d(t->data, host, (size_t)t->numel * dtype_size(dt));
    return t;
}

/* One step's loss: every op family with a backward rule on the way. */
static Tensor *net_forward(const Net *n, Rng *drop) {
    enum { B = NET_B, C = NET_C, S = NET_S, D = NET_D, NC = NET_NC, P = (S / 2) * (S / 2) };
    Rng r;
    rng_seed(&r, 11);
    float xh[B * 3 * 16 * 16];
    rng_fill_uniform(&r, xh, B * 3 * 16 * 16, -1, 1);
    int64_t ids[B * P], cls[B];
    for (int i = 0; i < B * P; i++) ids[i] = (i * 7 + 3) % 10;
    float yh[B * NC], mh[B * B] = {1, 0, 0, 1}, th[B * NC];
    for (int i = 0; i < B * NC; i++) yh[i] = (float)((i * 5) % 3 == 0);
    rng_fill_uniform(&r, th, B * NC, -1, 1);
    for (int i = 0; i < B; i++) cls[i] = (i * 3 + 1) % NC;

    Tensor *x = net_input(DT_F32, 4, SHAPE(B, 3, 16, 16), xh);
    x = tensor_resize_bilinear(x, S, S);
    Tensor *h = tensor_conv2d(x, n->c1w, n->c1b, 1, 1);
    h = tensor_batchnorm2d(h, n->bnw, n->bnb, n->rm, n->rv, true, 0.1f, 1e-5f);
    h = tensor_avg_pool2d(tensor_relu(h), 2);
    h = tensor_gelu(tensor_conv2d(h, n->c2w, NULL, 1, 1)); /* Winograd (forced by the test) */
    /* (B, C, P) -> tokens (B, P, C) -> (B, P, D), plus an embedding of ids */
    Tensor *tok = tensor_transpose(tensor_reshape(h, 3, SHAPE(B, C, P)), 1, 2);
    tok = tensor_add(tensor_linear(tok, n->fcw, NULL),
                     tensor_embedding(n->emb, net_input(DT_I64, 2, SHAPE(B, P), ids)));
    Tensor *ln = tensor_layernorm(tok, n->lnw, n->lnb, 1e-5f);
    Tensor *parts[3];
    tensor_split(tensor_linear(ln, n->qkv, NULL), -1, SHAPE(D, D, D), 3, parts);
    Tensor *att = tensor_attention(tensor_attention_heads_split(parts[0], NET_NH),
                                   tensor_attention_heads_split(parts[1], NET_NH),
                                   tensor_attention_heads_split(parts[2], NET_NH), true,
                                   1.0f / sqrtf((float)(D / NET_NH)));
    tok = tensor_add(tok, tensor_linear(tensor_attention_heads_merge(att), n->proj, NULL));
    tok = tensor_dropout(tok, 0.1f, true, drop);
    Tensor *pooled = tensor_add(tensor_mean(tok, 1, false), tensor_max(tok, 1, false));
    Tensor *logits = tensor_linear(pooled, n->hw, n->hb);
    Tensor *y = net_input(DT_F32, 2, SHAPE(B, NC), yh);
    Tensor *teacher = net_input(DT_F32, 2, SHAPE(B, NC), th);
    Tensor *mask = net_input(DT_F32, 2, SHAPE(B, B), mh);
    Tensor *sim = tensor_cosine_similarity_matrix(pooled, pooled);
    Tensor *terms[] = {
        tensor_bce_with_logits(logits, y, LOSS_MEAN),
        tensor_asl(logits, y, 1.0f, 4.0f, 0.05f, 1e-8f, LOSS_MEAN),
        tensor_cross_entropy(logits, net_input(DT_I64, 1, SHAPE(B), cls)),
        tensor_kl_div_softmax(logits, teacher, 1, 2.0f),
        tensor_info_nce(sim, mask, 0.5f),
        tensor_mul_scalar(tensor_sum_all(tensor_log_softmax(logits, 1, NULL)), -0.01f),
        tensor_mul_scalar(tensor_max_all(tensor_softmax(logits, 0, NULL)), 0.1f),
        tensor_mean_all(tensor_l2_normalize(tensor_stack((Tensor *[]){pooled, pooled}, 2, 0), -1)),
    };
    Tensor *loss = terms[0];
    for (size_t i = 1; i < sizeof terms / sizeof terms[0]; i++) loss = tensor_add(loss, terms[i]);
    return loss;
}

/* NET_STEPS AdamW steps on `dev`: the losses, and every parameter afterwards (host copies). */
static float *net_train(DeviceKind dev, float *losses, int64_t *nvalues) {
    Arena *a = dev == DEVICE_CPU ? NULL : arena_create(dev, "net", 0);
    Arena *prev = a ? tensor_set_arena(a) : NULL;
    Net n;
    net_create(&n, dev);
    Optimizer *opt = optim_adamw_create(n.ps, 1e-2, 0.9, 0.999, 1e-8, 0.01);
    Rng drop;
    rng_seed(&drop, 5);
    for (int s = 0; s < NET_STEPS; s++) {
        Tensor *loss = net_forward(&n, &drop);
        tensor_copy_to_host(&losses[s], loss);
        optim_zero_grad(opt);
        ag_backward(loss);
        clip_grad_norm(n.ps, 0.5);
        optim_step(opt);
        tensor_step_end();
    }
    int64_t total = 0;
    for (int i = 0; i < param_count(n.ps); i++) total += param_at(n.ps, i)->numel;
    float *out = xmalloc((size_t)total * sizeof(float));
    int64_t off = 0;
    for (int i = 0; i < param_count(n.ps); i++) {
        tensor_copy_to_host(out + off, param_at(n.ps, i));
        off += param_at(n.ps, i)->numel;
    }
    *nvalues = total;
    optim_destroy(opt);
    param_store_destroy(n.ps);
    if (a) {
        tensor_set_arena(prev);
        arena_destroy(a);
    }
    return out;
}

TEST(guard_network_equals_cpu) {
    ConvWinograd wino = conv_set_winograd(CONV_WINOGRAD_ALWAYS);
    float lc[NET_STEPS], lg[NET_STEPS];
    int64_t nc = 0, ng = 0;
    float *pc = net_train(DEVICE_CPU, lc, &nc);
    float *pg = net_train(DEVICE_GUARD, lg, &ng);
    conv_set_winograd(wino);
    EXPECT(memcmp(lc, lg, sizeof lc) == 0,
           "losses differ: cpu %.9g %.9g %.9g, guard %.9g %.9g %.9g",
           lc[0], lc[1], lc[2], lg[0], lg[1], lg[2]);
    EXPECT(isfinite(lc[0]) && lc[NET_STEPS - 1] < lc[0], "the loss should fall: %g -> %g", lc[0],
           lc[NET_STEPS - 1]);
    EXPECT(nc == ng, "parameter counts %lld vs %lld", (long long)nc, (long long)ng);
    if (nc == ng && memcmp(pc, pg, (size_t)nc * sizeof(float)) != 0)
        EXPECT_CLOSE_N("parameters after training", pg, pc, nc, 0.0, 0.0);
    free(pc);
    free(pg);
}

/* ---- CLIP --------------------------------------------------------------------------------- */

enum { CLIP_B = 2, CLIP_T = 9 };

typedef struct {
    float *emb, *dense, *ids_txt, *txt, *dx;
    int64_t n_emb, n_dense, n_ids_txt, n_txt, n_dx;
} ClipRun;

static float *clip_to_host(const Tensor *t, int64_t *n) {
    float *h = xmalloc((size_t)t->numel * sizeof(float));
    tensor_copy_to_host(h, t);
    *n = t->numel;
    return h;
}

/* sum(t * w) with w uniform in [-1, 1) from `seed`: a scalar whose gradient is w. */
static Tensor *clip_weighted_sum(Tensor *t, uint64_t seed) {
    float *h = xmalloc((size_t)t->numel * sizeof(float));
    Rng r;
    rng_seed(&r, seed);
    rng_fill_uniform(&r, h, t->numel, -1, 1);
    Tensor *w = tensor_from_f32(t->ndim, t->shape, h);
    free(h);
    return tensor_sum_all(tensor_mul(t, w));
}

/* Image features (inference only), text features of token ids, and text features of embedded
 * prompts with x's gradient, on `dev` (the CPU in the test's arena, another device in an arena
 * of its own). */
static ClipRun clip_run(const ParamStore *sd_cpu, const ClipConfig *cfg, DeviceKind dev) {
    Arena *a = dev == DEVICE_CPU ? NULL : arena_create(dev, "clip", 0);
    Arena *prev = a ? tensor_set_arena(a) : NULL;
    ParamStore *sd = test_store_copy(sd_cpu, dev);
    ClipModel *m = NULL;
    CHECK(clip_model_load(&m, sd, cfg) == STATUS_OK, "%s", error_last());
    const int64_t W = cfg->text.width;
    Rng r;
    rng_seed(&r, 40);
    float *img = xmalloc((size_t)CLIP_B * 3 * 64 * 64 * sizeof(float));
    float *xh = xmalloc((size_t)(CLIP_B * CLIP_T * W) * sizeof(float));
    rng_fill_normal(&r, img, CLIP_B * 3 * 64 * 64, 0.0f, 1.0f);
    rng_fill_normal(&r, xh, CLIP_B * CLIP_T * W, 0.0f, 0.02f);
    int64_t eoth[CLIP_B] = {5, 8};

    ClipRun out;
    Tensor *images = tensor_from_f32(4, SHAPE(CLIP_B, 3, 64, 64), img);
    Tensor *emb = NULL, *dense = NULL;
    clip_encode_image(m, images, &emb, &dense);
    out.emb = clip_to_host(emb, &out.n_emb);
    out.dense = clip_to_host(dense, &out.n_dense);
    int64_t idh[CLIP_B * CLIP_T] = {0};
    for (int b = 0; b < CLIP_B; b++) {
        idh[b * CLIP_T] = 49406;
        for (int t = 1; t < 5 + b; t++) idh[b * CLIP_T + t] = 300 + 97 * t + 13 * b;
        idh[b * CLIP_T + 5 + b] = 49407;
    }
    Tensor *ids = tensor_empty(DT_I64, 2, SHAPE(CLIP_B, CLIP_T));
    device_table(dev)->copy_h2d(ids->data, idh, sizeof idh);
    out.ids_txt = clip_to_host(clip_encode_text(m, ids), &out.n_ids_txt);
    Tensor *x = tensor_from_f32(3, SHAPE(CLIP_B, CLIP_T, W), xh);
    ag_set_requires_grad(x, NULL);
    Tensor *eot = tensor_empty(DT_I64, 1, SHAPE(CLIP_B));
    device_table(dev)->copy_h2d(eot->data, eoth, sizeof eoth);
    Tensor *txt = clip_encode_text_embedded(m, x, eot);
    out.txt = clip_to_host(txt, &out.n_txt);
    ag_backward(clip_weighted_sum(txt, 3));
    out.dx = clip_to_host(x->grad, &out.n_dx);

    free(img);
    free(xh);
    clip_model_free(m);
    param_store_destroy(sd);
    tensor_step_end();
    if (a) {
        tensor_set_arena(prev);
        arena_destroy(a);
    }
    return out;
}

static void clip_expect_same(const char *what, const float *cpu, int64_t nc, const float *guard,
                             int64_t ng) {
    EXPECT(nc == ng, "%s: %lld vs %lld values", what, (long long)nc, (long long)ng);
    if (nc == ng && memcmp(cpu, guard, (size_t)nc * sizeof(float)) != 0)
        EXPECT_CLOSE_N(what, guard, cpu, nc, 0.0, 0.0);
}

TEST(guard_clip_equals_cpu) {
    ClipConfig cfg = test_small_clip_config();
    ParamStore *sd = test_random_clip(&cfg, 5);
    ClipRun c = clip_run(sd, &cfg, DEVICE_CPU), g = clip_run(sd, &cfg, DEVICE_GUARD);
    clip_expect_same("image embedding", c.emb, c.n_emb, g.emb, g.n_emb);
    clip_expect_same("dense features", c.dense, c.n_dense, g.dense, g.n_dense);
    clip_expect_same("text features of ids", c.ids_txt, c.n_ids_txt, g.ids_txt, g.n_ids_txt);
    clip_expect_same("text features", c.txt, c.n_txt, g.txt, g.n_txt);
    clip_expect_same("prompt gradient", c.dx, c.n_dx, g.dx, g.n_dx);
    float *bufs[] = {c.emb, c.dense, c.ids_txt, c.txt, c.dx,
                     g.emb, g.dense, g.ids_txt, g.txt, g.dx};
    for (int i = 0; i < 10; i++) free(bufs[i]);
    param_store_destroy(sd);
}

/* Out of memory on a device is reported, not crashed on: an arena whose device cannot give it
 * the next chunk exits with status 1 and a message naming the arena and the bytes asked for
 * (tensor/error.c fatal_oom), the path a CUDA arena takes when cudaMalloc fails. The guard's
 * reservation (64 GiB by default) stands in for a GPU's memory. */
static void device_oom(void *p) {
    (void)p;
    Arena *a = arena_create(DEVICE_GUARD, "activations on the device", (size_t)1 << 40);
    arena_alloc(a, (size_t)100 << 30); /* 100 GiB: more than the reservation */
}

TEST(guard_device_out_of_memory_names_the_bytes) {
    static char out[4096];
    int st = run_child(device_oom, NULL, out, sizeof out);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 1, "exit status 1 expected (status 0x%x): %s", st,
           out);
    EXPECT(strstr(out, "out of memory in activations on the device") &&
               strstr(out, "asked for 107374182400 bytes"),
           "the arena and the bytes are named: %s", out);
}
