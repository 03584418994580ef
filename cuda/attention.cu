// attention.cu — the attention pieces between the two GEMMs, on the GPU (specification:
// tensor/ops/attention.c): the row softmax of the scores (causal or not) and its backward, a
// block per row, sums in double; the head split/merge layout copies, a thread per element.
#include "cuda/common.cuh"

static int64_t row_grid(int64_t rows) { return rows < CUDA_MAX_BLOCKS ? rows : CUDA_MAX_BLOCKS; }

__global__ void attention_softmax_forward_kernel(float *probs, int64_t BH, int64_t T, int64_t S,
                                                 bool causal) {
    __shared__ float shf[CUDA_REDUCE_THREADS];
    __shared__ double shd[CUDA_REDUCE_THREADS];
    BLOCK_LOOP(r, BH * T) {
        float *p = probs + r * S;
        // Causal: query i = r mod T sees keys 0..i (T == S); the rest get probability 0.
        int64_t n = causal ? r % T + 1 : S;
        float mx = -INFINITY;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, p[j]);
        mx = block_max(mx, shf);
        double sum = 0.0;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
            float e = expf(p[j] - mx);
            p[j] = e;
            sum += e;
        }
        sum = block_sum(sum, shd);
        float inv = (float)(1.0 / sum); // sum >= 1: the maximum contributes exp(0)
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) p[j] *= inv;
        for (int64_t j = n + threadIdx.x; j < S; j += blockDim.x) p[j] = 0.0f;
    }
}

void attention_softmax_forward_cuda(float *probs, int64_t BH, int64_t T, int64_t S, bool causal) {
    /* probs (BH,T,S): scaled scores on entry, probabilities on return — assigns, in place */
    LAUNCH(attention_softmax_forward_kernel, row_grid(BH * T), CUDA_REDUCE_THREADS, probs, BH, T, S,
           causal);
}

__global__ void attention_softmax_backward_kernel(float *dscores, const float *dprobs,
                                                  const float *probs, int64_t BH, int64_t T,
                                                  int64_t S) {
    __shared__ double sh[CUDA_REDUCE_THREADS];
    BLOCK_LOOP(r, BH * T) {
        const float *p = probs + r * S, *dp = dprobs + r * S;
        float *ds = dscores + r * S;
        double dot = 0.0;
        for (int64_t j = threadIdx.x; j < S; j += blockDim.x) dot += (double)dp[j] * p[j];
        // The barrier inside block_sum orders every read of dp before any write of ds, which
        // may alias it.
        float fdot = (float)block_sum(dot, sh);
        for (int64_t j = threadIdx.x; j < S; j += blockDim.x) ds[j] = p[j] * (dp[j] - fdot);
    }
}

void attention_softmax_backward_cuda(float *dscores, const float *dprobs, const float *probs,
                                     int64_t BH, int64_t T, int64_t S) {
    /* dscores (BH,T,S), dprobs (BH,T,S), probs (BH,T,S); dscores may alias dprobs — assigns */
    LAUNCH(attention_softmax_backward_kernel, row_grid(BH * T), CUDA_REDUCE_THREADS, dscores,
           dprobs, probs, BH, T, S);
}

// Element (b, h, t, d) of the head-major tensor is column col0 + h*HS + d of row (b, t) of the
// flat (B,T,W) one. to_heads: dst head-major, src flat; otherwise the reverse.
__global__ void heads_copy_kernel(float *dst, const float *src, int64_t B, int64_t T, int64_t W,
                                  int64_t col0, int64_t NH, int64_t HS, bool to_heads,
                                  bool accumulate) {
    GRID_LOOP(e, B * NH * T * HS) {
        int64_t r = e / HS, i = e % HS;
        int64_t t = r % T, h = (r / T) % NH, b = r / (T * NH);
        int64_t head_off = e, flat_off = (b * T + t) * W + col0 + h * HS + i;
        float *d = dst + (to_heads ? head_off : flat_off);
        float s = src[to_heads ? flat_off : head_off];
        if (accumulate)
            *d += s;
        else
            *d = s;
    }
}

static void heads_copy(float *dst, const float *src, int64_t B, int64_t T, int64_t W, int64_t col0,
                       int64_t NH, int64_t HS, bool to_heads, bool accumulate) {
    LAUNCH(heads_copy_kernel, cuda_blocks(B * NH * T * HS), CUDA_THREADS, dst, src, B, T, W, col0,
           NH, HS, to_heads, accumulate);
}

void attention_heads_split_forward_cuda(float *out, const float *inp, int64_t B, int64_t T,
                                        int64_t W, int64_t col0, int64_t NH, int64_t HS) {
    /* out (B,NH,T,HS), inp (B,T,W) — assigns */
    heads_copy(out, inp, B, T, W, col0, NH, HS, true, false);
}

void attention_heads_split_backward_cuda(float *dinp, const float *dout, int64_t B, int64_t T,
                                         int64_t W, int64_t col0, int64_t NH, int64_t HS) {
    /* dinp (B,T,W), dout (B,NH,T,HS) — accumulates into columns [col0, col0 + NH*HS) */
    heads_copy(dinp, dout, B, T, W, col0, NH, HS, false, true);
}

void attention_heads_merge_forward_cuda(float *out, const float *inp, int64_t B, int64_t T,
                                        int64_t NH, int64_t HS) {
    /* out (B,T,NH*HS), inp (B,NH,T,HS) — assigns */
    heads_copy(out, inp, B, T, NH * HS, 0, NH, HS, false, false);
}

void attention_heads_merge_backward_cuda(float *dinp, const float *dout, int64_t B, int64_t T,
                                         int64_t NH, int64_t HS) {
    /* dinp (B,NH,T,HS), dout (B,T,NH*HS) — accumulates */
    heads_copy(dinp, dout, B, T, NH * HS, 0, NH, HS, true, true);
}
