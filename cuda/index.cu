// index.cu — embedding, gather_rows, write_rows and topk on the GPU (specification:
// tensor/ops/index.c).
//
// Gathers are a thread per output element. The scatter-adds whose targets can collide
// (embedding backward with repeated ids, write_rows backward with a shared source) give each
// thread one column and walk the rows in order — the CPU's order — instead of using atomics, so
// the result is deterministic and equal to the CPU's. topk runs the CPU's insertion algorithm, a
// thread per row (k is small: label ranking).
#include "cuda/common.cuh"

__global__ void embedding_forward_kernel(float *out, const float *weight, const int64_t *ids,
                                         int64_t n, int64_t D) {
    GRID_LOOP(t, n * D) out[t] = weight[ids[t / D] * D + t % D];
}

void embedding_forward_cuda(float *out, const float *weight, const int64_t *ids, int64_t n,
                            int64_t D) {
    /* out (n,D), weight (V,D), ids (n) — assigns */
    LAUNCH(embedding_forward_kernel, cuda_blocks(n * D), CUDA_THREADS, out, weight, ids, n, D);
}

__global__ void embedding_backward_kernel(float *dweight, const float *dout, const int64_t *ids,
                                          int64_t n, int64_t D) {
    GRID_LOOP(c, D) {
        for (int64_t i = 0; i < n; i++) dweight[ids[i] * D + c] += dout[i * D + c];
    }
}

void embedding_backward_cuda(float *dweight, const float *dout, const int64_t *ids, int64_t n,
                             int64_t D) {
    /* dweight (V,D), dout (n,D), ids (n) — accumulates */
    LAUNCH(embedding_backward_kernel, cuda_blocks(D), CUDA_THREADS, dweight, dout, ids, n, D);
}

__global__ void gather_rows_forward_kernel(float *out, const float *inp, const int64_t *idx,
                                           int64_t B, int64_t T, int64_t D) {
    GRID_LOOP(t, B * D) {
        int64_t b = t / D, d = t % D;
        out[t] = inp[(b * T + idx[b]) * D + d];
    }
}

void gather_rows_forward_cuda(float *out, const float *inp, const int64_t *idx, int64_t B,
                              int64_t T, int64_t D) {
    /* out (B,D), inp (B,T,D), idx (B) — assigns */
    LAUNCH(gather_rows_forward_kernel, cuda_blocks(B * D), CUDA_THREADS, out, inp, idx, B, T, D);
}

__global__ void gather_rows_backward_kernel(float *dinp, const float *dout, const int64_t *idx,
                                            int64_t B, int64_t T, int64_t D) {
    // Row b writes only inside batch b of dinp: no collisions.
    GRID_LOOP(t, B * D) {
        int64_t b = t / D, d = t % D;
        dinp[(b * T + idx[b]) * D + d] += dout[t];
    }
}

void gather_rows_backward_cuda(float *dinp, const float *dout, const int64_t *idx, int64_t B,
                               int64_t T, int64_t D) {
    /* dinp (B,T,D), dout (B,D), idx (B) — accumulates */
    LAUNCH(gather_rows_backward_kernel, cuda_blocks(B * D), CUDA_THREADS, dinp, dout, idx, B, T, D);
}

__global__ void write_rows_forward_kernel(float *out, const float *base, const float *src,
                                          int64_t N, int64_t T, int64_t D, int64_t K, int64_t start,
                                          bool shared) {
    GRID_LOOP(e, N * T * D) {
        int64_t n = e / (T * D), t = (e / D) % T, d = e % D;
        if (t >= start && t < start + K)
            out[e] = src[((shared ? 0 : n) * K + (t - start)) * D + d];
        else
            out[e] = base[e];
    }
}

void write_rows_forward_cuda(float *out, const float *base, const float *src, int64_t N, int64_t T,
                             int64_t D, int64_t K, int64_t start, bool shared) {
    /* out (N,T,D), base (N,T,D), src (N,K,D), or (1,K,D) when shared — assigns */
    LAUNCH(write_rows_forward_kernel, cuda_blocks(N * T * D), CUDA_THREADS, out, base, src, N, T, D,
           K, start, shared);
}

__global__ void write_rows_dbase_kernel(float *dbase, const float *dout, int64_t N, int64_t T,
                                        int64_t D, int64_t K, int64_t start) {
    GRID_LOOP(e, N * T * D) {
        int64_t t = (e / D) % T;
        // Rows [start, start+K) were overwritten in the forward: no gradient reaches them.
        if (t < start || t >= start + K) dbase[e] += dout[e];
    }
}

__global__ void write_rows_dsrc_kernel(float *dsrc, const float *dout, int64_t N, int64_t T,
                                       int64_t D, int64_t K, int64_t start) {
    GRID_LOOP(e, N * K * D) {
        int64_t n = e / (K * D), j = e % (K * D);
        dsrc[e] += dout[(n * T + start) * D + j];
    }
}

__global__ void write_rows_dsrc_shared_kernel(float *dsrc, const float *dout, int64_t N, int64_t T,
                                              int64_t D, int64_t K, int64_t start) {
    // Every n read the same rows: their gradients sum in double, in n order.
    GRID_LOOP(j, K * D) {
        double acc = 0.0;
        for (int64_t n = 0; n < N; n++) acc += dout[(n * T + start) * D + j];
        dsrc[j] += (float)acc;
    }
}

void write_rows_backward_cuda(float *dbase, float *dsrc, const float *dout, int64_t N, int64_t T,
                              int64_t D, int64_t K, int64_t start, bool shared) {
    /* dbase (N,T,D) or NULL, dsrc (N,K,D), or (1,K,D) when shared, or NULL, dout (N,T,D)
     * — accumulates */
    if (dbase)
        LAUNCH(write_rows_dbase_kernel, cuda_blocks(N * T * D), CUDA_THREADS, dbase, dout, N, T, D,
               K, start);
    if (dsrc && !shared)
        LAUNCH(write_rows_dsrc_kernel, cuda_blocks(N * K * D), CUDA_THREADS, dsrc, dout, N, T, D, K,
               start);
    else if (dsrc)
        LAUNCH(write_rows_dsrc_shared_kernel, cuda_blocks(K * D), CUDA_THREADS, dsrc, dout, N, T, D,
               K, start);
}

// (a at ia) ranks before (b at ib): larger first, NaN above every number, ties by index.
__device__ inline bool topk_before(float a, int64_t ia, float b, int64_t ib) {
    bool na = isnan(a), nb = isnan(b);
    if (na || nb) return na && (!nb || ia < ib);
    return a > b || (a == b && ia < ib);
}

__global__ void topk_forward_kernel(float *values, int64_t *indices, const float *inp, int64_t rows,
                                    int64_t L, int64_t k) {
    GRID_LOOP(r, rows) {
        const float *x = inp + r * L;
        float *v = values + r * k;
        int64_t *ix = indices + r * k, cnt = 0;
        for (int64_t j = 0; j < L; j++) {
            if (cnt == k && !topk_before(x[j], j, v[k - 1], ix[k - 1])) continue;
            int64_t pos = cnt < k ? cnt++ : k - 1;
            while (pos > 0 && topk_before(x[j], j, v[pos - 1], ix[pos - 1])) {
                v[pos] = v[pos - 1];
                ix[pos] = ix[pos - 1];
                pos--;
            }
            v[pos] = x[j];
            ix[pos] = j;
        }
    }
}

void topk_forward_cuda(float *values, int64_t *indices, const float *inp, int64_t rows, int64_t L,
                       int64_t k) {
    /* values (rows,k), indices (rows,k), inp (rows,L) — assigns */
    LAUNCH(topk_forward_kernel, cuda_blocks(rows), CUDA_THREADS, values, indices, inp, rows, L, k);
}
