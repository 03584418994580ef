/* conv_types.h — the convolution geometry passed (read-only, by pointer) to the conv kernels. */
#pragma once
#include <stdint.h>

/* conv2d on NCHW: input (N,C,H,W), weight (O,C,KH,KW), output (N,O,OH,OW) with
 * OH = (H + 2*pad_h - KH) / stride_h + 1 and OW likewise. The im2col path works on blocks of
 * `tile_imgs` images times `tile_rows` output rows (tile_imgs > 1 only when tile_rows = OH); the
 * wrapper picks them so that one block's column matrix (C*KH*KW, tile_imgs*tile_rows*OW) fits
 * the scratch budget. */
typedef struct {
    int64_t n, c, h, w;        /* input */
    int64_t o, kh, kw;         /* output channels, kernel size */
    int64_t oh, ow;            /* output spatial size */
    int64_t stride_h, stride_w;
    int64_t pad_h, pad_w;
    int64_t tile_rows;         /* output rows per im2col block, 1..OH */
    int64_t tile_imgs;         /* images per im2col block, 1..N */
    /* Winograd F(m x m, 3x3) forward (CPU only; the wrapper sets it for 3x3 stride-1
     * convolutions on the CPU, docs/ops/conv.md): wino_rows = 0 is the im2col/GEMM forward;
     * otherwise tiles of wino_m x wino_m outputs (wino_m 2 or 4) go in blocks of wino_rows tile
     * rows (across images), for output channels in slices of wino_o. wino_per_thread = 1: each
     * of up to wino_threads threads takes whole blocks; 0: a single block of all tiles, each
     * stage split across the threads. Backward always takes the im2col path. */
    int64_t wino_rows, wino_o, wino_threads, wino_per_thread, wino_m;
    /* 1x1 forward on the CPU at the avx512 level (the wrapper sets it, gemm_f32_available()):
     * gemm_f32_floats > 0 is the scratch, in floats, of the project's own fp32 GEMM
     * (tensor/ops/gemm_f32.h), which the forward then takes with its epilogue fused; passed to
     * the kernel as `col`. 0: the device's GEMM and a separate epilogue pass. */
    int64_t gemm_f32_floats;
} ConvGeom;
