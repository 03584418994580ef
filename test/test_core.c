/* test_core.c — the engine's core: arena, parameter store, tape, gradcheck, device table and
 * the failure contract (CHECK aborts with file:line, out-of-memory reports the bytes). */
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tensor/clock.h"
#include "tensor/device.h"
#include "tensor/ops/conv.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/matmul.h"
#include "tensor/ops/reduce.h"
#include "autograd/tape.h"
#include "test/test.h"

/* Run fn in a child process; return its wait status and put its stderr in buf. */
static int run_child(void (*fn)(void *), void *arg, char *buf, size_t cap) {
    int pipefd[2];
    CHECK(pipe(pipefd) == 0, "pipe failed");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
        close(pipefd[0]);
        dup2(pipefd[1], 2);
        fn(arg);
        _exit(0);
    }
    close(pipefd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(pipefd[0], buf + n, cap - 1 - n)) > 0) n += (size_t)r;
    buf[n] = '\0';
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

TEST(core_arena_mark_release_and_alignment) {
    Arena *a = arena_create(DEVICE_CPU, "t", (size_t)1 << 30);
    void *p = arena_alloc(a, 3);
    EXPECT(((uintptr_t)p & 63) == 0, "allocation not 64-byte aligned");
    size_t m = arena_mark(a);
    void *q = arena_alloc(a, 1000);
    arena_release(a, m);
    void *r = arena_alloc(a, 1000);
    EXPECT(q == r, "release did not return the memory");
    EXPECT(arena_peak(a) >= m + 1000, "peak %zu too small", arena_peak(a));
    arena_destroy(a);
}

TEST(core_arena_no_system_allocation_after_warmup) {
    /* A "step" that needs more than the first chunk grows the arena; after one reset the arena is
     * a single block of the high-water size and later identical steps allocate nothing. */
    Arena *a = arena_create(DEVICE_CPU, "t", (size_t)2 << 30);
    size_t allocs_after_first = 0;
    for (int step = 0; step < 4; step++) {
        for (int i = 0; i < 5; i++) arena_alloc(a, (size_t)40 << 20);
        if (step == 1) allocs_after_first = arena_system_allocs(a);
        arena_reset(a);
    }
    EXPECT(arena_system_allocs(a) == allocs_after_first, "arena kept allocating: %zu system allocations, %zu after warm-up",
           arena_system_allocs(a), allocs_after_first);
    EXPECT(allocs_after_first <= 4, "warm-up took %zu system allocations", allocs_after_first);
    arena_destroy(a);
}

/* The block an arena coalesces into at reset is mapped there, not in the next step: writing
 * all of it afterwards takes (almost) no minor page faults. 3 x 40 MiB grows the arena past its
 * first 64 MiB chunk; the coalesced block holds 120 MiB = 30,720 pages of 4 KiB. */
TEST(core_arena_coalesced_block_is_mapped_at_reset) {
    Arena *a = arena_create(DEVICE_CPU, "t", (size_t)2 << 30);
    const size_t part = (size_t)40 << 20;
    for (int i = 0; i < 3; i++) arena_alloc(a, part);
    arena_reset(a);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    for (int i = 0; i < 3; i++) memset(arena_alloc(a, part), 1, part);
    getrusage(RUSAGE_SELF, &r1);
    const long faults = r1.ru_minflt - r0.ru_minflt;
    EXPECT(faults < 300, "the step after the coalescing reset took %ld minor faults (30720 pages "
           "if the block were mapped on first use)", faults);
    arena_destroy(a);
}

TEST(core_arena_guards_catch_overrun) {
    Arena *a = arena_create(DEVICE_CPU, "guarded", 0);
    arena_set_guards(a, true);
    float *x = arena_alloc(a, 10 * sizeof(float));
    float *y = arena_alloc(a, 10 * sizeof(float));
    for (int i = 0; i < 10; i++) x[i] = y[i] = 1.0f;
    EXPECT(arena_check_guards(a) == 0, "clean arena reported corrupt");
    x[10] = 2.0f; /* one past the end */
    fflush(stderr);
    int stderr_fd = dup(2);
    FILE *devnull = fopen("/dev/null", "w");
    dup2(fileno(devnull), 2);
    int bad = arena_check_guards(a);
    fflush(stderr);
    dup2(stderr_fd, 2);
    close(stderr_fd);
    fclose(devnull);
    EXPECT(bad == 1, "overrun not detected (%d)", bad);
    arena_destroy(a);
}

static void oom_child(void *arg) {
    (void)arg;
    Arena *a = arena_create(DEVICE_CPU, "small", (size_t)1 << 20);
    arena_alloc(a, (size_t)3 << 20);
}

TEST(core_arena_overflow_reports_bytes) {
    char buf[2048];
    int st = run_child(oom_child, NULL, buf, sizeof buf);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 1, "expected exit status 1, got 0x%x", st);
    EXPECT(strstr(buf, "out of memory") && strstr(buf, "3145728 bytes") && strstr(buf, "small"),
           "message does not name the arena and the bytes asked for: %s", buf);
}

static void shape_child(void *arg) {
    (void)arg;
    Tensor *a = TENSOR_ZEROS(3, 4), *b = TENSOR_ZEROS(5, 4);
    tensor_add(a, b);
}

TEST(core_contract_violation_names_op_and_shapes) {
    char buf[2048];
    int st = run_child(shape_child, NULL, buf, sizeof buf);
    EXPECT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "expected abort, got status 0x%x", st);
    EXPECT(strstr(buf, "elementwise.c:") && strstr(buf, "add") && strstr(buf, "[3, 4]") &&
               strstr(buf, "[5, 4]"),
           "message lacks file:line, op or shapes: %s", buf);
}

static void missing_kernel_child(void *arg) {
    (void)arg;
    device_missing_kernel(DEVICE_CUDA, "conv2d_forward");
}

TEST(core_missing_kernel_is_a_hard_error) {
    const char *missing[8];
    EXPECT(device_missing_kernels(DEVICE_CPU, missing, 8) == 0, "the CPU backend lacks %s",
           missing[0]);
    char buf[2048];
    int st = run_child(missing_kernel_child, NULL, buf, sizeof buf);
    EXPECT(WIFSIGNALED(st) && strstr(buf, "conv2d_forward") && strstr(buf, "cuda"),
           "missing kernel message: %s", buf);
}

TEST(core_device_parse) {
    DeviceKind dev;
    int idx;
    EXPECT(device_parse("cpu", &dev, &idx) == STATUS_OK && dev == DEVICE_CPU, "cpu");
    EXPECT(device_parse("auto", &dev, &idx) == STATUS_OK, "auto");
    EXPECT(device_parse("gpu", &dev, &idx) == STATUS_ERR_USAGE, "bad name accepted");
    EXPECT(strstr(error_last(), "gpu") != NULL, "message does not name the value: %s", error_last());
    EXPECT(device_parse("cuda:x", &dev, &idx) == STATUS_ERR_USAGE, "cuda:x accepted");
    Status st = device_parse("cuda:0", &dev, &idx);
#ifdef TRMML_CUDA
    if (device_table(DEVICE_CUDA)->available)
        EXPECT(st == STATUS_OK && dev == DEVICE_CUDA, "cuda:0 with a GPU present");
    else
        EXPECT(st == STATUS_ERR_DEVICE && strstr(error_last(), "no GPU"), "%s", error_last());
#else
    EXPECT(st == STATUS_ERR_DEVICE && strstr(error_last(), "not compiled"), "%s", error_last());
#endif
}

TEST(core_param_store_frozen_params_have_no_grad) {
    ParamStore *ps = param_store_create(DEVICE_CPU, "model");
    Tensor *w = param_add(ps, "w", DT_F32, 2, SHAPE(4, 3), false);
    Tensor *p = param_add(ps, "prompt", DT_F32, 2, SHAPE(2, 3), true);
    Tensor *h = param_add(ps, "half", DT_F16, 1, SHAPE(5), false);
    param_store_finalize(ps);
    EXPECT(w->grad == NULL && h->grad == NULL, "frozen parameter has a gradient buffer");
    EXPECT(p->grad != NULL && p->grad->numel == 6, "trainable parameter lacks its buffer");
    EXPECT(param_numel_trainable(ps) == 6, "trainable count %lld", (long long)param_numel_trainable(ps));
    EXPECT(param_find(ps, "prompt") == p && param_find(ps, "nope") == NULL, "param_find");
    EXPECT(((uintptr_t)w->data & 63) == 0 && ((uintptr_t)p->data & 63) == 0, "alignment");
    param_store_destroy(ps);
}

TEST(core_grad_accumulates_across_backward_until_zeroed) {
    ParamStore *ps = param_store_create(DEVICE_CPU, "m");
    Tensor *p = param_add(ps, "p", DT_F32, 1, SHAPE(3), true);
    param_store_finalize(ps);
    float v[3] = {1, 2, 3};
    tensor_copy_from_host(p, v);
    for (int rep = 0; rep < 2; rep++) {   /* two micro-batches: gradients add up */
        Tensor *y = tensor_mul_scalar(p, 2.0f);
        ag_backward_with(y, tensor_from_f32(1, SHAPE(3), (float[]){1, 1, 1}));
        ag_tape_reset();
    }
    float want[3] = {4, 4, 4};
    EXPECT_CLOSE_N("accumulated grad", tensor_f32(p->grad), want, 3, 0, 0);
    param_zero_grad(ps);
    EXPECT(tensor_f32(p->grad)[0] == 0.0f, "param_zero_grad");
    param_store_destroy(ps);
}

TEST(core_no_grad_mode_records_nothing) {
    Tensor *x = test_randn(1, 1, SHAPE(5));
    ag_set_requires_grad(x, NULL);
    bool prev = ag_set_grad_enabled(false);
    Tensor *y = tensor_exp(x);
    ag_set_grad_enabled(prev);
    EXPECT(ag_tape_length() == 0 && !y->requires_grad, "no-grad mode recorded a node");
    Tensor *z = tensor_exp(x);
    EXPECT(ag_tape_length() == 1 && z->requires_grad, "grad mode did not record");
}

/* A deliberately wrong backward rule: gradcheck must reject it. */
static void wrong_backward(Node *n) {
    float *dx = ag_grad(n->in[0])->data;
    const float *dy = n->out->grad->data;
    for (int64_t i = 0; i < n->out->numel; i++) dx[i] += 2.0f * dy[i]; /* true derivative: 3 */
}

static Tensor *times_three(Tensor *const *in, void *ctx) {
    (void)ctx;
    Tensor *out = tensor_mul_scalar(in[0], 3.0f);
    out->node = NULL;
    out->requires_grad = false;
    if (ag_grad_enabled()) {
        ag_tape_reset(); /* replace the recorded rule with the wrong one */
        AG_RECORD("times_three_wrong", out, wrong_backward, in[0]);
    }
    return out;
}

TEST(core_gradcheck_rejects_a_wrong_rule) {
    Tensor *x = test_randn(7, 1, SHAPE(9));
    fflush(stderr);
    int fd = dup(2);
    FILE *devnull = fopen("/dev/null", "w");
    dup2(fileno(devnull), 2);
    GradcheckReport rep;
    bool ok = ag_gradcheck("wrong", times_three, NULL, &x, 1, NULL, NULL, &rep);
    fflush(stderr);
    dup2(fd, 2);
    close(fd);
    fclose(devnull);
    EXPECT(!ok && rep.failed == 9, "gradcheck accepted a wrong rule (%d of %d failed)", rep.failed,
           rep.checked);
}

TEST(core_backward_through_frozen_chain) {
    /* Gradients flow through a chain of frozen ops into the one input that requires them, and
     * the tape holds exactly one node per op on that path. */
    Tensor *w1 = test_randn(2, 1, SHAPE(6)), *w2 = test_randn(3, 1, SHAPE(6));
    Tensor *x = test_randn(4, 1, SHAPE(6));
    ag_set_requires_grad(x, NULL);
    ag_tape_reset();
    Tensor *y = tensor_mul(tensor_add(tensor_mul(x, w1), w2), w1);
    EXPECT(ag_tape_length() == 3, "tape length %d", ag_tape_length());
    ag_backward_with(y, tensor_from_f32(1, SHAPE(6), (float[]){1, 1, 1, 1, 1, 1}));
    float want[6];
    for (int i = 0; i < 6; i++) want[i] = tensor_f32(w1)[i] * tensor_f32(w1)[i];
    EXPECT_CLOSE_N("dx", tensor_f32(x->grad), want, 6, TOL_ELEMENTWISE_ATOL, TOL_ELEMENTWISE_RTOL);
    EXPECT(w1->grad == NULL && w2->grad == NULL, "frozen tensors received gradient buffers");
}

static void double_backward_child(void *arg) {
    (void)arg;
    Tensor *x = test_randn(1, 1, SHAPE(4));
    ag_set_requires_grad(x, NULL);
    Tensor *y = tensor_mul_scalar(x, 2.0f);
    Tensor *dout = test_randn(2, 1, SHAPE(4));
    ag_backward_with(y, dout);
    ag_backward_with(y, dout); /* the tape was consumed: must abort, not double the gradient */
}

TEST(core_backward_consumes_the_tape) {
    char buf[2048];
    int st = run_child(double_backward_child, NULL, buf, sizeof buf);
    EXPECT(WIFSIGNALED(st) && strstr(buf, "tape is empty"), "second backward: status 0x%x, %s", st,
           buf);
}

TEST(core_backward_many_walks_once) {
    /* Two outputs sharing x: y1 = 2x, y2 = x*x. dx = 2*d1 + 2x*d2, each counted once. */
    Tensor *x = test_randn(3, 1, SHAPE(5));
    ag_set_requires_grad(x, NULL);
    Tensor *y1 = tensor_mul_scalar(x, 2.0f), *y2 = tensor_mul(x, x);
    Tensor *d1 = test_randn(4, 1, SHAPE(5)), *d2 = test_randn(5, 1, SHAPE(5));
    ag_backward_many((Tensor *[]){y1, y2}, (Tensor *[]){d1, d2}, 2);
    float want[5];
    for (int i = 0; i < 5; i++)
        want[i] = 2 * tensor_f32(d1)[i] + 2 * tensor_f32(x)[i] * tensor_f32(d2)[i];
    EXPECT_CLOSE_N("dx", tensor_f32(x->grad), want, 5, TOL_ELEMENTWISE_ATOL, TOL_ELEMENTWISE_RTOL);
    EXPECT(ag_tape_length() == 0, "tape not consumed");
}

/* A graph set aside with ag_tape_stash survives another graph's record-and-backward, and its
 * own backward after ag_tape_restore gives the gradients it would have given at once. */
TEST(core_tape_stash_and_restore) {
    Tensor *a = tensor_from_f32(1, SHAPE(3), (const float[]){1, 2, 3});
    Tensor *b = tensor_from_f32(1, SHAPE(3), (const float[]){4, 5, 6});
    ag_set_requires_grad(a, NULL);
    ag_set_requires_grad(b, NULL);
    Tensor *ya = tensor_sum_all(tensor_mul(a, a)); /* d/da = 2a */
    const int n = ag_tape_length();
    AgTapeSaved saved = ag_tape_stash();
    EXPECT(ag_tape_length() == 0 && n >= 2, "stash left %d nodes (had %d)", ag_tape_length(), n);
    ag_backward(tensor_sum_all(tensor_mul_scalar(b, 3))); /* another graph, consumed */
    ag_tape_restore(saved);
    EXPECT(ag_tape_length() == n, "restored %d nodes, expected %d", ag_tape_length(), n);
    ag_backward(ya);
    const float want_a[3] = {2, 4, 6}, want_b[3] = {3, 3, 3};
    EXPECT_CLOSE_N("da", tensor_f32(a->grad), want_a, 3, 0, 0);
    EXPECT_CLOSE_N("db", tensor_f32(b->grad), want_b, 3, 0, 0);
    tensor_step_end();
}

TEST(core_fixture_manifest_lists_every_fixture) {
    /* test/fixtures/MANIFEST records how each committed fixture was made (docs/testing.md);
     * scripts/fixture_io.py adds the line when it writes a file, so a fixture without one was
     * committed without its provenance. */
    const char *dir = getenv("TRMML_FIXTURES");
    if (!dir || !*dir) dir = "test/fixtures";
    char path[512];
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    FILE *f = fopen(path, "r");
    EXPECT(f != NULL, "cannot open %s", path);
    if (!f) return;
    static char manifest[1 << 16]; /* "\n" + the file, so every line starts after a '\n' */
    manifest[0] = '\n';
    const size_t n = fread(manifest + 1, 1, sizeof manifest - 2, f);
    fclose(f);
    manifest[n + 1] = '\0';
    DIR *d = opendir(dir);
    EXPECT(d != NULL, "cannot list %s", dir);
    if (!d) return;
    int bins = 0;
    for (struct dirent *e; (e = readdir(d));) {
        const size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".bin") != 0) continue;
        bins++;
        char line_start[300];
        snprintf(line_start, sizeof line_start, "\n%s ", e->d_name);
        EXPECT(strstr(manifest, line_start) != NULL, "%s/%s has no line in %s", dir, e->d_name,
               path);
    }
    closedir(d);
    EXPECT(bins > 0, "no fixture in %s", dir);
}

TEST(core_bench_case_filter) {
    /* `trmml bench NAME --case TEXT` runs only the rows whose key contains TEXT; a TEXT no row
     * matches, or a missing one, is a usage error (exit 2) that says so. (The own fp32 GEMM's
     * rows, "gemm own ...", are switched off: the rows counted are the device GEMM's.) */
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    static char out[1 << 14];
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "TRMML_GEMM_F32=off '%s' --threads 1 bench gemm --quick --case 'gemm 256x' "
             "2>/dev/null",
             exe);
    EXPECT(test_run_capture(cmd, out, sizeof out) == 0, "bench --case: %s", out);
    int rows = 0;
    for (const char *p = out; (p = strstr(p, "bench\tgemm ")); p++) rows++;
    EXPECT(rows == 1 && strstr(out, "bench\tgemm 256x256x256\t"), "one row expected: %s", out);
    /* A final $ anchors TEXT at the key's end: '512$' is the 512 row only, 'x256$' the 256 row
     * and not 'gemm 256' (which the 256 row contains but does not end in). */
    snprintf(cmd, sizeof cmd, "TRMML_GEMM_F32=off '%s' --threads 1 bench gemm --quick --case '512$' 2>/dev/null",
             exe);
    EXPECT(test_run_capture(cmd, out, sizeof out) == 0, "bench --case '512$': %s", out);
    rows = 0;
    for (const char *p = out; (p = strstr(p, "bench\tgemm ")); p++) rows++;
    EXPECT(rows == 1 && strstr(out, "bench\tgemm 512x512x512\t"), "one row expected: %s", out);
    snprintf(cmd, sizeof cmd, "'%s' bench gemm --quick --case 'gemm 256$' 2>&1", exe);
    EXPECT(test_run_capture(cmd, out, sizeof out) == 2 && strstr(out, "matches no row"),
           "--case 'gemm 256$' should match nothing: %s", out);
    snprintf(cmd, sizeof cmd, "'%s' bench gemm --quick --case 'no such row' 2>&1", exe);
    EXPECT(test_run_capture(cmd, out, sizeof out) == 2 && strstr(out, "matches no row"),
           "a --case matching nothing: %s", out);
    snprintf(cmd, sizeof cmd, "'%s' bench gemm --case 2>&1", exe);
    EXPECT(test_run_capture(cmd, out, sizeof out) == 2 && strstr(out, "--case needs"),
           "--case without a value: %s", out);
}

/* The log (stderr) of `trmml --threads 1 bench gemm --quick --case 'gemm 512x'` run with the
 * environment assignments env ("" for none) into out; returns the exit status. */
static int bench_gemm_512_log(const char *exe, const char *env, char *out, size_t cap) {
    char cmd[4400];
    snprintf(cmd, sizeof cmd,
             "%s '%s' --threads 1 bench gemm --quick --case 'gemm 512x' 2>&1 >/dev/null", env, exe);
    return test_run_capture(cmd, out, cap);
}

/* TRMML_GEMM_CLOCK=1: bench's log line adds the time per call spent in the CPU GEMMs; a bench of
 * GEMMs alone spends nearly all of it there (at least half, leaving room for a loaded machine's
 * clock reads). Without the variable no clock is read and the line says nothing of it. */
TEST(core_bench_gemm_clock) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    static char out[1 << 14];
    EXPECT(bench_gemm_512_log(exe, "TRMML_GEMM_CLOCK=1", out, sizeof out) == 0,
           "bench with the GEMM clock: %s", out);
    const char *line = strstr(out, "gemm 512x512x512");
    const char *cpu = line ? strstr(line, "cpu ") : NULL;
    const char *clk = line ? strstr(line, "GEMM clock: ") : NULL;
    const double cpu_ms = cpu ? atof(cpu + 4) : -1, gemm_ms = clk ? atof(clk + 12) : -1;
    EXPECT(cpu_ms > 0 && gemm_ms >= 0.5 * cpu_ms && gemm_ms <= 1.5 * cpu_ms + 0.5,
           "GEMM clock %.2f ms against cpu %.2f ms per call: %s", gemm_ms, cpu_ms, out);
    EXPECT(bench_gemm_512_log(exe, "", out, sizeof out) == 0 && !strstr(out, "GEMM clock") &&
               !strstr(out, "kernels per call"),
           "the GEMM clock or the profile without TRMML_GEMM_CLOCK / TRMML_PROFILE: %s", out);
}

/* TRMML_PROFILE=1: after each row, the kernels by time per timed call. A GEMM bench runs one
 * kernel, gemm, once per call, and it takes (nearly) all of the time. */
TEST(core_bench_kernel_profile) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    static char out[1 << 14];
    EXPECT(bench_gemm_512_log(exe, "TRMML_PROFILE=1", out, sizeof out) == 0,
           "bench with the profiler: %s", out);
    const char *p = strstr(out, "kernels per call");
    const char *g = p ? strstr(p, ": gemm ") : NULL;
    double ms = -1, share = -1, calls = -1;
    EXPECT(g && sscanf(g, ": gemm %lf ms (%lf%%, %lf calls)", &ms, &share, &calls) == 3 &&
               ms > 0 && share >= 90 && calls == 1,
           "gemm should lead the profile with one call per timed call: %s", out);
}

/* The layer profile (prof_layer_*, TRMML_PROFILE=1): a linear layer forward and backward and a
 * convolution land under their shapes' labels, with one call each and the operations of the
 * shape; with the profiler off nothing is counted. */
static int layer_entry(const char *label, double *s, int64_t *calls, double *flop) {
    const char *labels[256];
    double ss[256], ff[256];
    int64_t cc[256];
    const int n = prof_layer_read(256, labels, ss, cc, ff);
    for (int i = 0; i < n && i < 256; i++)
        if (strcmp(labels[i], label) == 0) {
            *s = ss[i], *calls = cc[i], *flop = ff[i];
            return i;
        }
    return -1;
}

TEST(core_layer_profile) {
    Tensor *x = test_randn(1, 2, SHAPE(6, 40)), *w = test_randn(2, 2, SHAPE(24, 40));
    Tensor *img = test_randn(3, 4, SHAPE(2, 3, 9, 9)), *k = test_randn(4, 4, SHAPE(5, 3, 1, 1));
    ag_set_requires_grad(x, NULL);
    const bool was = kernel_prof_on;
    device_init_profiler(); /* this thread is the one that counts */
    kernel_prof_on = false; /* off: nothing counted */
    double s0 = 0, f0 = 0;
    int64_t c0 = 0;
    Tensor *y = tensor_linear(x, w, NULL);
    const int before = layer_entry("linear 40->24", &s0, &c0, &f0);
    EXPECT(before < 0, "a linear layer was counted with the profiler off (%lld calls)",
           (long long)c0);
    kernel_prof_on = true;
    y = tensor_linear(x, w, NULL);
    ag_backward_with(y, test_randn(5, 2, SHAPE(6, 24)));
    tensor_conv2d_ex(img, k, NULL, 1, 1, 0, 0);
    kernel_prof_on = was;
    struct { const char *label; double flop; } want[] = {
        {"linear 40->24", 2.0 * 6 * 40 * 24},
        {"linear 40->24 dx", 2.0 * 6 * 40 * 24},
        {"conv 1x1/1 3->5 9x9 b2", 2.0 * 2 * 5 * 81 * 3},
    };
    for (int i = 0; i < 3; i++) {
        double s = 0, f = 0;
        int64_t c = 0;
        const bool had = i == 0 && before >= 0;
        EXPECT(layer_entry(want[i].label, &s, &c, &f) >= 0 && c == (had ? c0 : 0) + 1 &&
                   f == (had ? f0 : 0) + want[i].flop && s > (had ? s0 : 0),
               "layer profile '%s': %lld calls, %g operations, %g s (want one more call, %g "
               "more operations)", want[i].label, (long long)c, f, s, want[i].flop);
    }
}

TEST(core_bench_device) {
    /* `trmml bench` runs on --device and says so in a `meta device` row; --device cuda without a
     * GPU (or without CUDA compiled in) fails with exit 1 and no rows, with a GPU its GEMM rows
     * are cuBLAS's. */
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    static char out[1 << 14];
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "'%s' --device cpu --threads 1 bench gemm --quick --case "
             "'gemm 256x' 2>/dev/null", exe);
    EXPECT(test_run_capture(cmd, out, sizeof out) == 0 && strstr(out, "meta\tdevice\tcpu\n") &&
               strstr(out, "bench\tgemm 256x256x256\t"),
           "bench --device cpu: %s", out);
    snprintf(cmd, sizeof cmd, "'%s' --device cuda --threads 1 bench gemm --quick --case "
             "'gemm 256x' 2>&1", exe);
    const int rc = test_run_capture(cmd, out, sizeof out);
    DeviceKind dev;
    int idx;
    if (device_parse("cuda", &dev, &idx) == STATUS_OK)
        EXPECT(rc == 0 && strstr(out, "meta\tdevice\tcuda\n") &&
                   strstr(out, "meta\tgemm\tcuBLAS\n") && strstr(out, "bench\tgemm 256x256x256\t"),
               "bench --device cuda on a GPU: exit %d: %s", rc, out);
    else
        EXPECT(rc == 1 && strstr(out, "--device cuda") && !strstr(out, "bench\t"),
               "bench --device cuda without a GPU: exit %d: %s", rc, out);
}

/* Entries of dir whose name begins with prefix. */
static int count_entries(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d) closedir(d);
    return n;
}

TEST(core_write_file_atomic) {
    /* xwrite_file_atomic replaces the whole file and leaves no temporary; an AtomicFile closed
     * with an error publishes nothing; a missing directory is an I/O error naming the path. */
    char dir[64] = "/tmp/trmml-atomic-XXXXXX", path[128];
    CHECK(mkdtemp(dir), "mkdtemp");
    snprintf(path, sizeof path, "%s/f.txt", dir);
    EXPECT(xwrite_file_atomic(path, "first version\n", 14) == STATUS_OK, "%s", error_last());
    EXPECT(xwrite_file_atomic(path, "second\n", 7) == STATUS_OK, "%s", error_last());
    uint8_t *buf = NULL;
    size_t n = 0;
    EXPECT(xread_file(path, "test file", &buf, &n) == STATUS_OK && n == 7 &&
               memcmp(buf, "second\n", 7) == 0,
           "content after the second write: %zu bytes", n);
    free(buf);
    struct stat sb;
    EXPECT(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0644, "mode %o", sb.st_mode & 0777);
    AtomicFile af;
    char other[160];
    snprintf(other, sizeof other, "%s/g.txt", dir);
    EXPECT(xatomic_open(other, &af) == STATUS_OK, "%s", error_last());
    fputs("partial", af.f);
    EXPECT(xatomic_close(&af, STATUS_ERR_FORMAT) == STATUS_ERR_FORMAT, "the error comes back");
    EXPECT(access(other, F_OK) != 0, "a failed write published %s", other);
    EXPECT(count_entries(dir, "f.txt.tmp") == 0 && count_entries(dir, "g.txt.tmp") == 0 &&
               count_entries(dir, "") == 3, /* ".", "..", f.txt */
           "temporaries left in %s", dir);
    snprintf(other, sizeof other, "%s/missing/h.txt", dir);
    EXPECT(xwrite_file_atomic(other, "x", 1) == STATUS_ERR_IO && strstr(error_last(), other),
           "missing directory: %s", error_last());
    const double t0 = time_now_s(), t1 = time_now_s();
    EXPECT(t0 > 0 && t1 >= t0, "time_now_s %.9f then %.9f", t0, t1);
    test_remove_tree(dir);
}
