/* gemm.h — the one BLAS-semantics GEMM every matrix product goes through (STYLE.md §2).
 *
 * Two CPU paths: OpenBLAS cblas_sgemm (the default when the build found OpenBLAS) and a naive
 * OpenMP loop that accumulates in double — the parity oracle. The CUDA path (cuBLAS) lives in
 * cuda/. The kernel itself is `gemm` in tensor/kernels.def. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

typedef enum { GEMM_BLAS = 0, GEMM_NAIVE = 1 } GemmPath;

/* Select the CPU path (the default is BLAS when compiled in, else naive; $TRMML_GEMM=naive
 * overrides at start-up). Returns the previous path. */
GemmPath gemm_set_path(GemmPath p);
GemmPath gemm_path(void);
const char *gemm_backend_name(void); /* "openblas, core Haswell" (the kernel in use), "naive" */
void gemm_set_threads(int n);

/* The GEMM clock, for measuring how a model's time splits between its products and everything
 * else (docs/profile.md): with TRMML_GEMM_CLOCK=1 in the environment, the CPU GEMMs (gemm_cpu and
 * the bf16 GEMM) add the wall time of each call to a counter; otherwise they read no clock.
 * Exact with one thread (--threads 1); with more, a product called by several threads at once
 * would be counted once per thread (the model's GEMMs are called from one thread). */
bool gemm_clock_enabled(void);
double gemm_clock_seconds(void); /* total so far */
/* For the GEMMs themselves: a start time (0 when the clock is off) and its end. */
uint64_t gemm_clock_begin(void);
void gemm_clock_end(uint64_t start);
