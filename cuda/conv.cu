// conv.cu — 2-D convolution on the GPU (specification: tensor/ops/conv.c): NCHW, groups 1,
// dilation 1, im2col + cuBLAS GEMM.
//
// The CPU wrapper sizes the scratch (col, ybuf) for the block tiling in ConvGeom (tile_imgs
// images times tile_rows output rows), so this backend walks exactly the same blocks: per block
// one im2col kernel (a thread per element of col), one gemm_cuda, and for multi-image blocks a
// scatter to NCHW. The 1x1 stride-1 unpadded path needs no im2col: out[n] = weight @ x[n] is one
// strided-batched GEMM over the images. With a residual the GEMMs accumulate onto out (beta = 1);
// one epilogue kernel then adds the bias and applies the ReLU, as the CPU does.
// Backward per block: dweight += dy @ col^T (col recomputed), dcol = weight^T @ dy, and col2im
// gathers dcol back onto the input pixels — a thread per input pixel adds its contributions in
// the CPU's (kh, kw) order, so no two threads write one pixel and no atomics are needed.
// dbias is a block-per-channel double reduction.
#include "cuda/common.cuh"

static bool conv_pointwise(const ConvGeom *g) {
    return g->kh == 1 && g->kw == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_h == 0 &&
           g->pad_w == 0;
}

// col (K, nb*T), T = rows*OW: image i of the block fills columns [i*T, (i+1)*T); row
// k = (c*KH + kh)*KW + kw, column i*T + r*OW + ow holds x[n0+i, c, (oh0+r)*sh - ph + kh,
// ow*sw - pw + kw], zero in the padding — assigns.
__global__ void conv_im2col_kernel(float *col, const float *inp, ConvGeom g, int64_t n0, int64_t nb,
                                   int64_t oh0, int64_t rows) {
    const int64_t T = rows * g.ow, ld = nb * T, K = g.c * g.kh * g.kw;
    GRID_LOOP(t, K * ld) {
        int64_t k = t / ld, rem = t % ld;
        int64_t i = rem / T, r = (rem % T) / g.ow, ow = rem % g.ow;
        int64_t c = k / (g.kh * g.kw), kh = (k / g.kw) % g.kh, kw = k % g.kw;
        int64_t ih = (oh0 + r) * g.stride_h - g.pad_h + kh;
        int64_t iw = ow * g.stride_w - g.pad_w + kw;
        float v = 0.0f;
        if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w)
            v = inp[(((n0 + i) * g.c + c) * g.h + ih) * g.w + iw];
        col[t] = v;
    }
}

// dx[n0+i] (C,H,W) += col2im(dcol (K, nb*T)) for the block's output rows — accumulates.
// ih = oh*sh - ph + kh  =>  oh = (ih + ph - kh) / sh when that divides exactly; likewise ow.
__global__ void conv_col2im_kernel(float *dinp, const float *dcol, ConvGeom g, int64_t n0,
                                   int64_t nb, int64_t oh0, int64_t rows) {
    const int64_t T = rows * g.ow, ld = nb * T;
    GRID_LOOP(t, nb * g.c * g.h * g.w) {
        int64_t i = t / (g.c * g.h * g.w), c = (t / (g.h * g.w)) % g.c;
        int64_t ih = (t / g.w) % g.h, iw = t % g.w;
        float *px = dinp + (n0 * g.c * g.h * g.w) + t;
        float v = *px;
        bool touched = false;
        for (int64_t kh = 0; kh < g.kh; kh++) {
            int64_t a = ih + g.pad_h - kh;
            if (a < 0 || a % g.stride_h != 0) continue;
            int64_t r = a / g.stride_h - oh0;
            if (r < 0 || r >= rows) continue;
            for (int64_t kw = 0; kw < g.kw; kw++) {
                int64_t b = iw + g.pad_w - kw;
                if (b < 0 || b % g.stride_w != 0) continue;
                int64_t ow = b / g.stride_w;
                if (ow >= g.ow) continue;
                v += dcol[((c * g.kh + kh) * g.kw + kw) * ld + i * T + r * g.ow + ow];
                touched = true;
            }
        }
        if (touched) *px = v;
    }
}

// The forward's epilogue, once over the whole output (N,O,P): out = act(out + bias[o]), act =
// ReLU when `relu`, else the identity; bias may be NULL — assigns in place. With a residual the
// GEMMs have already added the convolution onto it, so the value is act((residual + conv) +
// bias), in the CPU's order.
__global__ void conv_epilogue_kernel(float *out, const float *bias, bool relu, int64_t N,
                                     int64_t O, int64_t P) {
    GRID_LOOP(e, N * O * P) {
        float v = out[e] + (bias ? bias[(e / P) % O] : 0.0f);
        out[e] = relu && !(v > 0.0f) ? 0.0f : v;
    }
}

// buf (O, nb*P) <-> images [n0, n0+nb) of an (N,O,P) tensor: image i owns columns [i*P, (i+1)*P).
// scatter: out = buf — assigns, or with `residual` out += buf — accumulates; gather: buf = t —
// assigns.
__global__ void conv_block_scatter_kernel(float *out, const float *buf, bool residual,
                                          int64_t n0, int64_t nb, int64_t O, int64_t P) {
    GRID_LOOP(e, nb * O * P) {
        int64_t i = e / (O * P), o = (e / P) % O, p = e % P;
        float *dst = out + ((n0 + i) * O + o) * P + p;
        const float v = buf[o * nb * P + i * P + p];
        *dst = residual ? *dst + v : v;
    }
}

__global__ void conv_block_gather_kernel(float *buf, const float *t, int64_t n0, int64_t nb,
                                         int64_t O, int64_t P) {
    GRID_LOOP(e, nb * O * P) {
        int64_t i = e / (O * P), o = (e / P) % O, p = e % P;
        buf[o * nb * P + i * P + p] = t[((n0 + i) * O + o) * P + p];
    }
}

// A block of the im2col path: images [n0, n0 + nb) times output rows [oh0, oh0 + rows).
struct ConvBlock {
    int64_t n0, nb, oh0, rows;
};

static ConvBlock conv_block(const ConvGeom *g, int64_t n0, int64_t oh0) {
    ConvBlock b = {n0, g->tile_imgs, oh0, g->tile_rows};
    if (b.nb > g->n - n0) b.nb = g->n - n0;
    if (b.rows > g->oh - oh0) b.rows = g->oh - oh0;
    return b;
}

static void im2col_block(float *col, const float *inp, const ConvGeom *g, const ConvBlock *b) {
    int64_t K = g->c * g->kh * g->kw, ld = b->nb * b->rows * g->ow;
    LAUNCH(conv_im2col_kernel, cuda_blocks(K * ld), CUDA_THREADS, col, inp, *g, b->n0, b->nb,
           b->oh0, b->rows);
}

void conv2d_forward_cuda(float *out, const float *inp, const float *weight, const float *bias,
                         float *col, float *ybuf, const ConvGeom *g, bool residual, bool relu) {
    /* out (N,O,OH,OW), inp (N,C,H,W), weight (O,C,KH,KW), bias (O) or NULL,
     * col (C*KH*KW, tile_imgs*tile_rows*OW) scratch, unused on the 1x1 path,
     * ybuf (O, tile_imgs*OH*OW) scratch, used only when tile_imgs > 1 — assigns
     * out = act(conv + bias), or with `residual` accumulates: out = act((out + conv) + bias);
     * act = ReLU when `relu`, else the identity */
    const int64_t K = g->c * g->kh * g->kw, P = g->oh * g->ow;
    const int64_t in_img = g->c * g->h * g->w, out_img = g->o * P;
    const float beta = residual ? 1.0f : 0.0f; // the GEMMs accumulate onto a residual
    if (conv_pointwise(g)) {
        gemm_cuda(out, weight, inp, g->n, g->o, P, g->c, false, false, 1.0f, beta, g->c, P, P, 0,
                  in_img, out_img);
    } else {
        for (int64_t n0 = 0; n0 < g->n; n0 += g->tile_imgs) {
            for (int64_t oh0 = 0; oh0 < g->oh; oh0 += g->tile_rows) {
                const ConvBlock b = conv_block(g, n0, oh0);
                const int64_t T = b.rows * g->ow, ld = b.nb * T;
                im2col_block(col, inp, g, &b);
                if (b.nb == 1) {
                    // One image: the GEMM writes the (O, T) block of out in place, rows P apart.
                    float *y = out + n0 * out_img + oh0 * g->ow;
                    gemm_cuda(y, weight, col, 1, g->o, T, K, false, false, 1.0f, beta, K, T, P, 0,
                              0, 0);
                } else {
                    gemm_cuda(ybuf, weight, col, 1, g->o, ld, K, false, false, 1.0f, 0.0f, K, ld,
                              ld, 0, 0, 0);
                    LAUNCH(conv_block_scatter_kernel, cuda_blocks(b.nb * g->o * P), CUDA_THREADS,
                           out, ybuf, residual, n0, b.nb, g->o, P);
                }
            }
        }
    }
    if (bias || relu)
        LAUNCH(conv_epilogue_kernel, cuda_blocks(g->n * out_img), CUDA_THREADS, out, bias, relu,
               g->n, g->o, P);
}

__global__ void conv_dbias_kernel(float *dbias, const float *dout, int64_t N, int64_t O,
                                  int64_t P) {
    __shared__ double sh[CUDA_REDUCE_THREADS];
    BLOCK_LOOP(o, O) {
        double acc = 0.0;
        for (int64_t t = threadIdx.x; t < N * P; t += blockDim.x)
            acc += dout[((t / P) * O + o) * P + t % P];
        acc = block_sum(acc, sh);
        if (threadIdx.x == 0) dbias[o] += (float)acc;
    }
}

void conv2d_backward_cuda(float *dinp, float *dweight, float *dbias, float *col, float *dcol,
                          float *dybuf, const float *dout, const float *inp, const float *weight,
                          const ConvGeom *g) {
    /* dinp (N,C,H,W) or NULL, dweight (O,C,KH,KW) or NULL, dbias (O) or NULL,
     * col and dcol (C*KH*KW, tile_imgs*tile_rows*OW) scratch (unused on the 1x1 path),
     * dybuf (O, tile_imgs*OH*OW) scratch used when tile_imgs > 1, dout (N,O,OH,OW),
     * inp (N,C,H,W), weight (O,C,KH,KW) — accumulates */
    const int64_t K = g->c * g->kh * g->kw, P = g->oh * g->ow;
    const int64_t in_img = g->c * g->h * g->w, out_img = g->o * P;
    if (dbias)
        LAUNCH(conv_dbias_kernel, g->o < CUDA_MAX_BLOCKS ? g->o : CUDA_MAX_BLOCKS,
               CUDA_REDUCE_THREADS, dbias, dout, g->n, g->o, P);
    if (!dinp && !dweight) return;
    if (conv_pointwise(g)) {
        // out[n] = weight @ x[n]: dweight += dout[n] @ x[n]^T (one image after another, all
        // into the same matrix), dx[n] += weight^T @ dout[n] (batched).
        if (dweight)
            for (int64_t n = 0; n < g->n; n++)
                gemm_cuda(dweight, dout + n * out_img, inp + n * in_img, 1, g->o, g->c, P, false,
                          true, 1.0f, 1.0f, P, P, g->c, 0, 0, 0);
        if (dinp)
            gemm_cuda(dinp, weight, dout, g->n, g->c, P, g->o, true, false, 1.0f, 1.0f, g->c, P, P,
                      0, out_img, in_img);
        return;
    }
    for (int64_t n0 = 0; n0 < g->n; n0 += g->tile_imgs) {
        for (int64_t oh0 = 0; oh0 < g->oh; oh0 += g->tile_rows) {
            const ConvBlock b = conv_block(g, n0, oh0);
            const int64_t T = b.rows * g->ow, ld = b.nb * T;
            const float *dy = dout + n0 * out_img + oh0 * g->ow;
            int64_t ldy = P;
            if (b.nb > 1) {
                LAUNCH(conv_block_gather_kernel, cuda_blocks(b.nb * g->o * P), CUDA_THREADS, dybuf,
                       dout, n0, b.nb, g->o, P);
                dy = dybuf;
                ldy = ld;
            }
            if (dweight) {
                // out_block = weight @ col: dweight (O,K) += dy (O,nb*T) @ col^T (nb*T,K)
                im2col_block(col, inp, g, &b);
                gemm_cuda(dweight, dy, col, 1, g->o, K, ld, false, true, 1.0f, 1.0f, ldy, ld, K, 0,
                          0, 0);
            }
            if (dinp) {
                // dcol (K,nb*T) = weight^T (K,O) @ dy (O,nb*T), then gathered onto the pixels
                gemm_cuda(dcol, weight, dy, 1, K, ld, g->o, true, false, 1.0f, 0.0f, K, ldy, ld, 0,
                          0, 0);
                LAUNCH(conv_col2im_kernel, cuda_blocks(b.nb * in_img), CUDA_THREADS, dinp, dcol, *g,
                       n0, b.nb, oh0, b.rows);
            }
        }
    }
}
