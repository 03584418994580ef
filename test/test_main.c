/* test_main.c — the test runner. Usage: test_trmml [--list] [FILTER...]
 * Runs every registered test whose name contains one of the filters (all when none given). */
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tensor/device.h"
#include "test/test.h"

typedef struct {
    const char *name, *file;
    TestFn fn;
} TestCase;

static TestCase g_tests[1024];
static int g_ntests;
static int g_failed_now, g_skipped_now;
static char g_skip_reason[256];
static const char *g_current = "";

void test_register(const char *name, const char *file, TestFn fn) {
    CHECK(g_ntests < 1024, "too many tests");
    g_tests[g_ntests++] = (TestCase){name, file, fn};
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "  %s:%d: [%s] ", file, line, g_current);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    g_failed_now++;
}

void test_skip(const char *reason) {
    g_skipped_now = 1;
    snprintf(g_skip_reason, sizeof g_skip_reason, "%s", reason);
}

bool test_failed(void) { return g_failed_now > 0; }

bool test_check_close(const char *file, int line, const char *what, const float *got,
                      const float *ref, int64_t n, double atol, double rtol) {
    int64_t bad = 0, worst = -1;
    double max_abs = 0, max_rel = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i], e = fabs(g - r);
        bool ok = e <= atol + rtol * fabs(r); /* NaN compares false: a NaN fails */
        if (!ok) bad++;
        if (e > max_abs || (!ok && worst < 0) || isnan(e)) {
            if (!isnan(e)) max_abs = e;
            worst = i;
        }
        if (fabs(r) > 0 && e / fabs(r) > max_rel) max_rel = e / fabs(r);
    }
    if (!bad) return true;
    test_fail(file, line, "%s: %lld of %lld elements outside atol %.1e rtol %.1e; max abs err %.3e, "
              "max rel err %.3e, worst index %lld", what, (long long)bad, (long long)n, atol, rtol,
              max_abs, max_rel, (long long)worst);
    int shown = 0;
    for (int64_t i = 0; i < n && shown < 5; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= atol + rtol * fabs((double)ref[i]))) {
            fprintf(stderr, "    [%lld] got %.8g ref %.8g\n", (long long)i, got[i], ref[i]);
            shown++;
        }
    }
    return false;
}

bool test_check_close_normwise(const char *file, int line, const char *what, const float *got,
                               const float *ref, int64_t n, double tol, double scale) {
    if (scale < 0) {
        scale = 0;
        for (int64_t i = 0; i < n; i++)
            if (fabs((double)ref[i]) > scale) scale = fabs((double)ref[i]);
    }
    /* TRMML_TEST_MEASURE=1 prints the measured max|got - ref| / scale of every normwise check:
     * the numbers written beside the bounds (make test-matrix collects them per kernel). */
    if (getenv("TRMML_TEST_MEASURE")) {
        double e = 0;
        for (int64_t i = 0; i < n; i++) e = fmax(e, fabs((double)got[i] - ref[i]));
        fprintf(stderr, "measure: %s: %s: %.3g of scale %.3g (bound %.3g)\n", g_current, what,
                scale > 0 ? e / scale : e, scale, tol);
    }
    /* An all-zero reference must be matched exactly (atol 0): nothing to scale by. */
    char label[320];
    snprintf(label, sizeof label, "%s (normwise %.1e of scale %.3e)", what, tol, scale);
    return test_check_close(file, line, label, got, ref, n, tol * scale, 0);
}

bool test_check_tensor(const char *file, int line, const char *what, const Tensor *got,
                       const FixtureTensor *ref, double atol, double rtol) {
    if (!ref) return false; /* fixture_get already failed the test */
    if (!got) {
        test_fail(file, line, "%s: no tensor produced", what);
        return false;
    }
    bool same = got->ndim == ref->ndim && ref->dtype == 0;
    for (int i = 0; same && i < got->ndim; i++) same = got->shape[i] == ref->shape[i];
    if (!same) {
        char s[96] = "[";
        for (int i = 0; i < ref->ndim; i++)
            snprintf(s + strlen(s), sizeof s - strlen(s), "%s%lld", i ? ", " : "",
                     (long long)ref->shape[i]);
        strcat(s, "]");
        test_fail(file, line, "%s: shape %s, fixture '%s' has %s", what, tensor_shape_str(got),
                  ref->name, s);
        return false;
    }
    float *host = xmalloc((size_t)got->numel * 4 + 4);
    tensor_copy_to_host(host, got);
    bool ok = test_check_close(file, line, what, host, ref->f32, got->numel, atol, rtol);
    free(host);
    return ok;
}

Tensor *test_case_input(Fixture *fx, const char *cs, const char *name, bool requires_grad) {
    char key[160];
    snprintf(key, sizeof key, "%s/%s", cs, name);
    Tensor *t = fixture_tensor(fx, key);
    if (t && requires_grad) ag_set_requires_grad(t, NULL);
    return t;
}

void test_check_case(Fixture *fx, const char *cs, Tensor *out, Tensor *const *in,
                     const char *const *names, int nin, CaseTol tol) {
    char key[160], what[200];
    snprintf(key, sizeof key, "%s/out", cs);
    snprintf(what, sizeof what, "%s out", cs);
    EXPECT_TENSOR(what, out, fixture_get(fx, key), tol.out_atol, tol.out_rtol);
    snprintf(key, sizeof key, "%s/dout", cs);
    Tensor *dout = fixture_tensor(fx, key);
    if (!dout) return;
    if (!out->requires_grad) {
        test_fail(__FILE__, __LINE__, "%s: the output does not require a gradient", cs);
        return;
    }
    ag_backward_with(out, dout);
    for (int i = 0; i < nin; i++) {
        if (!in[i]) continue;
        if (!in[i]->requires_grad) {
            EXPECT(in[i]->grad == NULL, "%s: frozen input %s received a gradient buffer", cs,
                   names[i]);
            continue;
        }
        snprintf(key, sizeof key, "%s/d%s", cs, names[i]);
        snprintf(what, sizeof what, "%s d%s", cs, names[i]);
        EXPECT_TENSOR(what, in[i]->grad, fixture_get(fx, key), tol.grad_atol, tol.grad_rtol);
    }
}

bool test_gradcheck(const char *file, int line, const char *name, GradcheckFn fn, void *ctx,
                    Tensor *const *inputs, int nin, const bool *wrt, const GradcheckOpts *opts) {
    GradcheckReport rep;
    bool ok = ag_gradcheck(name, fn, ctx, inputs, nin, wrt, opts, &rep);
    if (!ok)
        test_fail(file, line, "gradcheck %s: %d of %d coordinates failed; worst: input %d index %lld "
                  "analytic %.6g numeric %.6g", name, rep.failed, rep.checked, rep.worst_input,
                  (long long)rep.worst_index, rep.worst_analytic, rep.worst_numeric);
    else if (rep.checked == 0)
        test_fail(file, line, "gradcheck %s checked no coordinate", name);
    return ok;
}

static int remove_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

void test_remove_tree(const char *dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

char *test_temp_dir(char *dir, size_t cap, const char *prefix) {
    snprintf(dir, cap, "/tmp/trmml-%s-XXXXXX", prefix);
    CHECK(mkdtemp(dir), "mkdtemp %s", dir);
    return dir;
}

void test_write_file(const char *path, const char *bytes, size_t n) {
    if (n == (size_t)-1) n = strlen(bytes);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(bytes, 1, n, f) == n && fclose(f) == 0, "cannot write %s", path);
}

bool test_trmml_path(char *out, size_t cap) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) self[n] = '\0';
    char *slash = n > 0 ? strrchr(self, '/') : NULL;
    if (!slash) {
        test_skip("the test binary's own path is unknown (no /proc/self/exe)");
        return false;
    }
    *slash = '\0';
    snprintf(out, cap, "%s/trmml", self);
    if (access(out, X_OK) == 0) return true;
    test_skip("build/trmml not built next to the test binary");
    return false;
}

int test_run_capture(const char *cmd, char *out, size_t cap) {
    fflush(stdout);
    fflush(stderr);
    FILE *p = popen(cmd, "r");
    CHECK(p, "popen failed for: %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Tensor *test_randn(uint64_t seed, int ndim, const int64_t *shape) {
    Tensor *t = tensor_empty(DT_F32, ndim, shape);
    Rng r;
    rng_seed(&r, seed);
    rng_fill_normal(&r, tensor_f32(t), t->numel, 0.0f, 1.0f);
    return t;
}

Tensor *test_rand_uniform(uint64_t seed, float lo, float hi, int ndim, const int64_t *shape) {
    Tensor *t = tensor_empty(DT_F32, ndim, shape);
    Rng r;
    rng_seed(&r, seed);
    rng_fill_uniform(&r, tensor_f32(t), t->numel, lo, hi);
    return t;
}

static bool matches(const char *name, int nf, char **filters) {
    if (nf == 0) return true;
    for (int i = 0; i < nf; i++)
        if (strstr(name, filters[i])) return true;
    return false;
}

static int cmp_tests(const void *a, const void *b) {
    const TestCase *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

int main(int argc, char **argv) {
    int nf = 0;
    char **filters = xcalloc(argc, sizeof *filters);
    bool list = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) list = true;
        else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: %s [--list] [FILTER...]\nRuns the tests whose names contain a FILTER.\n",
                   argv[0]);
            return 0;
        } else filters[nf++] = argv[i];
    }
    qsort(g_tests, g_ntests, sizeof *g_tests, cmp_tests);
    if (list) {
        for (int i = 0; i < g_ntests; i++) printf("%s (%s)\n", g_tests[i].name, g_tests[i].file);
        return 0;
    }
    /* What the numbers were computed with: the GEMM kernel and thread count round differently
     * (docs/testing.md; make test-matrix runs the suite under each). */
    printf("backend: %s\n", device_summary());
    Arena *arena = arena_create(DEVICE_CPU, "test", 0);
    arena_set_guards(arena, true);
    tensor_set_arena(arena);
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < g_ntests; i++) {
        if (!matches(g_tests[i].name, nf, filters)) continue;
        g_current = g_tests[i].name;
        g_failed_now = g_skipped_now = 0;
        ag_set_grad_enabled(true);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        g_tests[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int corrupt = arena_check_guards(arena);
        if (corrupt) test_fail(__FILE__, __LINE__, "%d arena guard regions overwritten", corrupt);
        tensor_step_end();
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (g_failed_now) {
            printf("FAIL %s (%.0f ms)\n", g_tests[i].name, ms);
            failed++;
        } else if (g_skipped_now) {
            printf("SKIP %s: %s\n", g_tests[i].name, g_skip_reason);
            skipped++;
        } else {
            printf("PASS %s (%.0f ms)\n", g_tests[i].name, ms);
            passed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    free(filters);
    arena_destroy(arena);
    return failed ? 1 : 0;
}
