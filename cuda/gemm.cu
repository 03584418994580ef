// gemm.cu — the core kernels on the GPU: GEMM through cuBLAS, `accumulate`, `fill`, and
// `convert_to_f32` (tensor/ops/gemm.c and tensor/convert.c are the specification).
//
// gemm: for each batch index p, C_p (M,N) = alpha * op(A_p) @ op(B_p) + beta * C_p, row-major,
// row strides lda/ldb/ldc, batch strides stride_a/b/c (0 = one matrix shared by the batch).
//
// Row-major <-> column-major. cuBLAS is column-major. A row-major matrix X (R,C) with row
// stride ld is, byte for byte, the column-major matrix X^T (C,R) with leading dimension ld.
// So the row-major product C = op(A) op(B) is computed as its transpose,
//     C^T (N,M) = op(B)^T (N,K) @ op(A)^T (K,M),
// which in column-major terms is gemm(opB, opA, N, M, K, B, ldb, A, lda, C, ldc): the operands
// swap places, the transpose flags stay with their own matrix, and no data is moved.
//
// TF32 is off by default (CUBLAS_DEFAULT_MATH: full float32 products), so results follow the
// CPU oracle to STYLE §6's matmul tolerance. cuda_set_allow_tf32(true), or TRMML_ALLOW_TF32=1 in
// the environment at start-up, switches the handle to CUBLAS_TF32_TENSOR_OP_MATH.
#include "cuda/common.cuh"
#include "cuda/runtime.h"

#include <cublas_v2.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define CUBLAS_CHECK(stmt)                                                                         \
    do {                                                                                           \
        cublasStatus_t st_ = (stmt);                                                               \
        CHECK(st_ == CUBLAS_STATUS_SUCCESS, "%s: %s (%d)", #stmt, cublasGetStatusString(st_),      \
              (int)st_);                                                                           \
    } while (0)

static cublasHandle_t g_handle;
static bool g_allow_tf32;
static bool g_tf32_init;

static bool allow_tf32(void) {
    if (!g_tf32_init) {
        g_tf32_init = true;
        const char *e = getenv("TRMML_ALLOW_TF32");
        if (e && strcmp(e, "1") == 0) g_allow_tf32 = true;
    }
    return g_allow_tf32;
}

static void apply_math_mode(void) {
    CUBLAS_CHECK(cublasSetMathMode(g_handle, allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH
                                                          : CUBLAS_DEFAULT_MATH));
}

// The handle is created on the first GEMM, not at start-up: a CPU run of a CUDA-enabled binary
// never initialises cuBLAS.
static cublasHandle_t handle(void) {
    if (!g_handle) {
        CUBLAS_CHECK(cublasCreate(&g_handle));
        CUBLAS_CHECK(cublasSetStream(g_handle, 0)); // the legacy default stream, like every kernel
        apply_math_mode();
    }
    return g_handle;
}

extern "C" bool cuda_set_allow_tf32(bool on) {
    bool prev = allow_tf32();
    g_allow_tf32 = on;
    if (g_handle) apply_math_mode();
    return prev;
}

extern "C" void cuda_gemm_shutdown(void) {
    if (g_handle) CUBLAS_CHECK(cublasDestroy(g_handle));
    g_handle = nullptr;
}

// C = beta * C over the (batch, M, N) block when K = 0 (an empty sum); beta = 0 writes 0 without
// reading C, as the CPU kernel does, so uninitialised memory never leaks NaN into the result.
__global__ void gemm_scale_kernel(float *c, int64_t batch, int64_t m, int64_t n, float beta,
                                  int64_t ldc, int64_t stride_c) {
    GRID_LOOP(t, batch * m * n) {
        int64_t p = t / (m * n), i = (t / n) % m, j = t % n;
        float *C = c + p * stride_c + i * ldc + j;
        *C = beta == 0.0f ? 0.0f : beta * *C;
    }
}

void gemm_cuda(float *c, const float *a, const float *b, int64_t batch, int64_t m, int64_t n,
               int64_t k, bool trans_a, bool trans_b, float alpha, float beta, int64_t lda,
               int64_t ldb, int64_t ldc, int64_t stride_a, int64_t stride_b, int64_t stride_c) {
    /* c (batch,M,N) a (batch,M,K) or (batch,K,M) b (batch,K,N) or (batch,N,K) — assigns when
     * beta = 0 (C not read), accumulates when beta = 1 */
    if (batch <= 0 || m <= 0 || n <= 0) return;
    CHECK(batch == 1 || stride_c != 0,
          "gemm: batch %lld with stride_c = 0 would race on C "
          "(only A and B may be shared across the batch)",
          (long long)batch);
    if (k == 0) {
        LAUNCH(gemm_scale_kernel, cuda_blocks(batch * m * n), CUDA_THREADS, c, batch, m, n, beta,
               ldc, stride_c);
        return;
    }
    CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
              ldc <= INT_MAX && batch <= INT_MAX,
          "gemm: sizes %lldx%lldx%lld (batch %lld) exceed cuBLAS's int range", (long long)m,
          (long long)n, (long long)k, (long long)batch);
    // Column-major view (header): C^T = op(B)^T op(A)^T, so B goes first.
    cublasOperation_t opb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (batch == 1) {
        CUBLAS_CHECK(cublasSgemm(handle(), opb, opa, (int)n, (int)m, (int)k, &alpha, b, (int)ldb, a,
                                 (int)lda, &beta, c, (int)ldc));
    } else {
        CUBLAS_CHECK(cublasSgemmStridedBatched(
            handle(), opb, opa, (int)n, (int)m, (int)k, &alpha, b, (int)ldb, (long long)stride_b, a,
            (int)lda, (long long)stride_a, &beta, c, (int)ldc, (long long)stride_c, (int)batch));
    }
    if (cuda_sync_each_launch()) CUDA_CHECK(cudaDeviceSynchronize());
}

__global__ void accumulate_kernel(float *out, const float *in, int64_t n) {
    GRID_LOOP(i, n) out[i] += in[i];
}

void accumulate_cuda(float *out, const float *in, int64_t n) {
    /* out (n) += in (n) — accumulates */
    LAUNCH(accumulate_kernel, cuda_blocks(n), CUDA_THREADS, out, in, n);
}

__global__ void fill_kernel(float *out, float v, int64_t n) { GRID_LOOP(i, n) out[i] = v; }

void fill_cuda(float *out, float v, int64_t n) {
    /* out (n) = v — assigns */
    LAUNCH(fill_kernel, cuda_blocks(n), CUDA_THREADS, out, v, n);
}

// The bit-level conversions of tensor/convert.c, on the device.
__device__ inline float bits_f32(uint32_t u) { return __uint_as_float(u); }

__device__ inline float f16_to_f32_dev(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); // inf, NaN
    if (exp == 0) { // zero or subnormal: man * 2^-24, exact in float32
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13)); // rebias 15 -> 127
}

__global__ void convert_to_f32_kernel(float *out, const void *inp, int64_t n, DType dtype) {
    GRID_LOOP(i, n) {
        switch (dtype) {
        case DT_F32: out[i] = ((const float *)inp)[i]; break;
        case DT_F16: out[i] = f16_to_f32_dev(((const uint16_t *)inp)[i]); break;
        case DT_BF16: out[i] = bits_f32((uint32_t)((const uint16_t *)inp)[i] << 16); break;
        case DT_I64: out[i] = (float)((const int64_t *)inp)[i]; break;
        case DT_I32: out[i] = (float)((const int32_t *)inp)[i]; break;
        case DT_U8: out[i] = (float)((const uint8_t *)inp)[i]; break;
        default: out[i] = NAN; break;
        }
    }
}

void convert_to_f32_cuda(float *out, const void *inp, int64_t n, DType dtype) {
    /* out (n), inp (n) of `dtype` — assigns */
    LAUNCH(convert_to_f32_kernel, cuda_blocks(n), CUDA_THREADS, out, inp, n, dtype);
}
