/* test.h — the test harness: registration, close-checks, skips and the summary line.
 *
 *     TEST(add_broadcast) {
 *         Fixture *fx = fixture_open("elementwise");
 *         ...
 *         EXPECT_CLOSE("add/bcast/out", got, ref, TOL_ELEMENTWISE_ATOL, TOL_ELEMENTWISE_RTOL);
 *     }
 *
 * Tests register themselves at start-up. The runner (test/test_main.c) runs those whose name
 * contains any filter given on the command line, gives each a fresh guarded arena (canary words
 * after every allocation catch out-of-bounds writes by kernels), and prints one line per test and
 * finally `N passed, N failed, N skipped` alone on its line. Any failure means exit status 1. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "tensor/tensor.h"
#include "test/fixture.h"
#include "test/tolerance.h"

typedef void (*TestFn)(void);
void test_register(const char *name, const char *file, TestFn fn);

#define TEST(name)                                                                         \
    static void test_##name(void);                                                         \
    __attribute__((constructor)) static void test_register_##name(void) {                  \
        test_register(#name, __FILE__, test_##name);                                       \
    }                                                                                      \
    static void test_##name(void)

/* Mark the running test failed with a message (the test continues; return to stop it). */
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Remove a temporary directory and everything under it (nftw, symbolic links not followed). */
void test_remove_tree(const char *dir);
/* A new directory /tmp/trmml-PREFIX-XXXXXX in dir (cap >= 64); CHECKs that it was made. */
char *test_temp_dir(char *dir, size_t cap, const char *prefix);
/* Write n bytes to path (n = (size_t)-1: the string's length); CHECKs that it was written. */
void test_write_file(const char *path, const char *bytes, size_t n);
/* Mark the running test skipped, with the reason (counted, printed, never a pass). */
void test_skip(const char *reason);
bool test_failed(void);

#define EXPECT(cond, ...)                                                                  \
    do {                                                                                   \
        if (!(cond)) test_fail(__FILE__, __LINE__, __VA_ARGS__);                           \
    } while (0)

/* Compare n floats; on failure prints what, shape, max abs/rel error, worst index and the first
 * <= 5 mismatches with both values, and fails the running test. Returns true on pass. */
bool test_check_close(const char *file, int line, const char *what, const float *got,
                      const float *ref, int64_t n, double atol, double rtol);
#define EXPECT_CLOSE_N(what, got, ref, n, atol, rtol)                                      \
    test_check_close(__FILE__, __LINE__, (what), (got), (ref), (n), (atol), (rtol))
/* Normwise: every |got - ref| <= tol * max|ref| (TRMML_TEST_MEASURE=1 prints the measured ratio). For values that are sums with cancellation
 * (gradients over classes and tokens), where rounding error scales with the magnitude of the terms,
 * not of each result (docs/testing.md, "Two float32 computations of one quantity"). */
bool test_check_close_normwise(const char *file, int line, const char *what, const float *got,
                               const float *ref, int64_t n, double tol, double scale);
#define EXPECT_CLOSE_NORMWISE(what, got, ref, n, tol)                                      \
    test_check_close_normwise(__FILE__, __LINE__, (what), (got), (ref), (n), (tol), -1.0)
/* The same with the scale given (e.g. the largest gradient of the parameter's module). */
#define EXPECT_CLOSE_SCALED(what, got, ref, n, tol, scale)                                 \
    test_check_close_normwise(__FILE__, __LINE__, (what), (got), (ref), (n), (tol), (scale))
/* Tensor against a fixture tensor (shapes must match too). */
bool test_check_tensor(const char *file, int line, const char *what, const Tensor *got,
                       const FixtureTensor *ref, double atol, double rtol);
#define EXPECT_TENSOR(what, got, ref, atol, rtol)                                          \
    test_check_tensor(__FILE__, __LINE__, (what), (got), (ref), (atol), (rtol))

/* The fixture tensor "<cs>/<name>" copied into a new arena tensor; with requires_grad, a leaf
 * that requires a gradient. NULL (and the test failed) when absent. */
Tensor *test_case_input(Fixture *fx, const char *cs, const char *name, bool requires_grad);

/* Tolerances of one fixture case: for the output, and for the input gradients. */
typedef struct {
    double out_atol, out_rtol, grad_atol, grad_rtol;
} CaseTol;
/* The same tolerance for the output and the gradients. */
#define CASE_TOL(atol, rtol) ((CaseTol){(atol), (rtol), (atol), (rtol)})

/* The standard fixture case: compare out with "<cs>/out", back-propagate "<cs>/dout" (consuming
 * the tape), then for each input: if it requires a gradient, compare it with "<cs>/d<name>";
 * if not (frozen), check that it received no gradient buffer. NULL inputs are skipped. */
void test_check_case(Fixture *fx, const char *cs, Tensor *out, Tensor *const *in,
                     const char *const *names, int nin, CaseTol tol);

/* Gradcheck wrapper that fails the running test with the report. */
#define EXPECT_GRADCHECK(name, fn, ctx, inputs, nin, wrt, opts)                            \
    test_gradcheck(__FILE__, __LINE__, (name), (fn), (ctx), (inputs), (nin), (wrt), (opts))
bool test_gradcheck(const char *file, int line, const char *name, GradcheckFn fn, void *ctx,
                    Tensor *const *inputs, int nin, const bool *wrt, const GradcheckOpts *opts);

/* The path of build/trmml next to the test binary (make test builds both); false, and the
 * running test skipped, if absent. */
bool test_trmml_path(char *out, size_t cap);
/* Run a shell command; its stdout (and stderr if the command redirects it) into out; returns the
 * exit status (-1 if it did not exit normally). */
int test_run_capture(const char *cmd, char *out, size_t cap);

/* Random f32 tensor in the current arena (deterministic for a seed). */
Tensor *test_randn(uint64_t seed, int ndim, const int64_t *shape);
Tensor *test_rand_uniform(uint64_t seed, float lo, float hi, int ndim, const int64_t *shape);
