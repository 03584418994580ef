/* gemm.h — the one BLAS-semantics GEMM every matrix product goes through (STYLE.md §2).
 *
 * Two CPU paths: OpenBLAS cblas_sgemm (the default when the build found OpenBLAS) and a naive
 * OpenMP loop that accumulates in double — the parity oracle. The CUDA path (cuBLAS) lives in
 * cuda/. The kernel itself is `gemm` in tensor/kernels.def. */
#pragma once
#include <stdbool.h>

typedef enum { GEMM_BLAS = 0, GEMM_NAIVE = 1 } GemmPath;

/* Select the CPU path (the default is BLAS when compiled in, else naive; $TRMML_GEMM=naive
 * overrides at start-up). Returns the previous path. */
GemmPath gemm_set_path(GemmPath p);
GemmPath gemm_path(void);
const char *gemm_backend_name(void); /* "openblas, core Haswell" (the kernel in use), "naive" */
void gemm_set_threads(int n);
