// shape.cu — the one strided copy behind permute, slice, concat, split and stack, on the GPU
// (specification: tensor/ops/shape.c; geometry in tensor/ops/shape_types.h). One thread per
// element of the index space; both maps are injective, so no two threads write one element.
#include "cuda/common.cuh"

__device__ inline void strided_offsets(const StridedCopyGeom &g, int64_t lin, int64_t *in_off,
                                       int64_t *out_off) {
    int64_t io = g.in_offset, oo = g.out_offset;
    for (int d = g.ndim - 1; d >= 0; d--) {
        int64_t i = lin % g.shape[d];
        lin /= g.shape[d];
        io += i * g.in_stride[d];
        oo += i * g.out_stride[d];
    }
    *in_off = io;
    *out_off = oo;
}

static int64_t geom_numel(const StridedCopyGeom *g) {
    int64_t n = 1;
    for (int d = 0; d < g->ndim; d++) n *= g->shape[d];
    return n;
}

__global__ void strided_copy_forward_kernel(float *out, const float *inp, StridedCopyGeom g,
                                            int64_t n) {
    GRID_LOOP(t, n) {
        int64_t io, oo;
        strided_offsets(g, t, &io, &oo);
        out[oo] = inp[io];
    }
}

void strided_copy_forward_cuda(float *out, const float *inp, const StridedCopyGeom *g) {
    /* out, inp: contiguous buffers addressed through g — assigns the addressed elements of out */
    int64_t n = geom_numel(g);
    LAUNCH(strided_copy_forward_kernel, cuda_blocks(n), CUDA_THREADS, out, inp, *g, n);
}

__global__ void strided_copy_backward_kernel(float *dinp, const float *dout, StridedCopyGeom g,
                                             int64_t n) {
    GRID_LOOP(t, n) {
        int64_t io, oo;
        strided_offsets(g, t, &io, &oo);
        dinp[io] += dout[oo];
    }
}

void strided_copy_backward_cuda(float *dinp, const float *dout, const StridedCopyGeom *g) {
    /* dinp, dout: contiguous buffers addressed through g — accumulates into dinp */
    int64_t n = geom_numel(g);
    LAUNCH(strided_copy_backward_kernel, cuda_blocks(n), CUDA_THREADS, dinp, dout, *g, n);
}
