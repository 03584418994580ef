/* conv_wino_avx512.h — the F(4x4, 3x3) Winograd transforms of the CPU convolution
 * (tensor/ops/conv.c) written for AVX-512 with intrinsics, for the avx512 level (tensor/isa.h):
 * the input and output transforms, and the weight transform written into the own fp32 GEMM's
 * packed panels.
 *
 * conv.c's portable form of the transform, compiled for every level, runs its loops over the
 * columns of a tile row and over the tiles of a chunk; on narrow images (28x28: tile rows of 28
 * columns and 7 tiles) GCC's vector loops end in scalar remainders, and the last tile of each
 * row is recomputed in scalar code, so that AVX-512 gained nothing there over SSE (measured:
 * 53 against 50 TSC cycles per tile and channel). This form takes every remainder as one masked
 * vector and fixes the rows' last tiles inside the vector loop with a masked expand-load, for
 * the same arithmetic in the same order: its output equals the portable form's bit for bit
 * (tested in test_conv.c at every level the CPU has). docs/ops/conv.md, "Inner loops". */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "tensor/ops/conv_types.h"

/* Tiles per F(4x4, 3x3) transform chunk (conv.c): whole tile rows of up to this many tiles. */
#define WINO4_CHUNK 128

/* conv.c's wino4_input_chunk, for the avx512 level only (a CHECK failure elsewhere): V rows of
 * the 36 matrices cstride apart, columns col0 + rr nt + t for the tiles tx0 .. tx0 + nt - 1 of
 * the nr tile rows rf .. rf + nr - 1 (flattened (n, ty)) of input channel c of inp (N, C, H, W),
 * nr nt <= WINO4_CHUNK, nr > 1 only with whole rows (tx0 = 0, nt = tiles per row) — assigns. */
void wino4_input_chunk_avx512(float *V, int64_t cstride, int64_t col0, const float *inp,
                              const ConvGeom *g, int64_t c, int64_t rf, int64_t nr, int64_t tx0,
                              int64_t nt);

/* conv.c's wino4_output_chunk, for the avx512 level only: output rows 4 ty .. 4 ty + 3 (those
 * below OH) of output channel oc of out (N, O, OH, OW) for the same tiles, from columns
 * col0 + rr nt + t of the 36 rows of M ostride apart, plus `bias`, then the residual (out's
 * previous value) and the ReLU as asked — assigns, or accumulates with `residual`. */
void wino4_output_chunk_avx512(float *out, const float *M, int64_t ostride, int64_t col0,
                               float bias, bool residual, bool relu, const ConvGeom *g,
                               int64_t oc, int64_t rf, int64_t nr, int64_t tx0, int64_t nt);

/* Under the own fp32 GEMM (tensor/ops/gemm_f32.h): U[xi] = G g G^T of output channels
 * o0 + q mr + o, o < rows (mr = 12, the GEMM's panel height), written straight into panel q of
 * the packed U[xi] (the 36 matrices pa floats apart; gemm_f32.h's layout: for the slice
 * [k0, k0 + kcs) of the C input channels, panel q at k0 mpad + q kcs mr, channel c's mr values
 * contiguous at (c - k0) mr, zeros for o >= rows; mpad = ob rounded up to mr) — assigns.
 * wt: 9 C mr floats of scratch. The arithmetic of conv.c's wino4_weights_row_body, the same U
 * bit for bit. */
void wino4_weights_panel_avx512(float *up, int64_t pa, float *wt, const float *weight, int64_t o0,
                                int64_t q, int64_t rows, int64_t ob, int64_t C);
