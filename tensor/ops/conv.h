/* conv.h — 2-D convolution on NCHW tensors (groups = 1, dilation = 1), PyTorch's F.conv2d.
 *
 * Inputs are float32 tensors on one device; the output comes from the current arena, and a tape
 * node is recorded when x, weight or bias requires a gradient. Bad ranks, mismatched channels,
 * a kernel larger than the padded input, stride < 1 or padding < 0 are CHECK failures that name
 * the shapes. Math, layouts and the backward derivation: docs/ops/conv.md. */
#pragma once
#include "tensor/kernel_types.h"
#include "tensor/tensor.h"

/* out (N,O,OH,OW) = conv2d(x (N,C,H,W), weight (O,C,KH,KW)) + bias (O), bias may be NULL;
 * the same stride and zero padding on both spatial axes. */
Tensor *tensor_conv2d(Tensor *x, Tensor *weight, Tensor *bias, int64_t stride, int64_t padding);
/* As tensor_conv2d with separate vertical (h) and horizontal (w) stride and padding. */
Tensor *tensor_conv2d_ex(Tensor *x, Tensor *weight, Tensor *bias, int64_t stride_h,
                         int64_t stride_w, int64_t pad_h, int64_t pad_w);

/* Fused forms for frozen forward passes (docs/ops/conv.md, "Fused epilogues"): the bias, a
 * residual and the ReLU are applied in one pass over the product instead of one op each.
 *   tensor_conv2d_relu: out = relu(conv2d(x, weight) + bias), a new tensor. When a tape node
 *     would be recorded (grad mode on and an operand requires a gradient) it runs tensor_conv2d
 *     then tensor_relu instead, so that training keeps its pre-activation for backward.
 *   tensor_conv2d_add_relu_: acc = relu((acc + conv2d(x, weight)) + bias) in place, acc of the
 *     output's shape (a ResNet block's residual, which dies here); returns acc. In-place, so
 *     never recorded: grad mode on or acc requiring a gradient is a CHECK failure, as for
 *     tensor_add_. The sum is formed in the order written (the GEMM accumulates onto acc). */
Tensor *tensor_conv2d_relu(Tensor *x, Tensor *weight, Tensor *bias, int64_t stride,
                           int64_t padding);
Tensor *tensor_conv2d_add_relu_(Tensor *acc, Tensor *x, Tensor *weight, Tensor *bias,
                                int64_t stride, int64_t padding);

/* Which CPU forward a 3x3 stride-1 convolution takes (docs/ops/conv.md). CONV_WINOGRAD_AUTO,
 * the default: Winograd where it measured faster than im2col (at least 32 input and output
 * channels and 128 tiles), im2col + GEMM otherwise. OFF: always im2col. ALWAYS: Winograd for
 * every 3x3 stride-1 convolution, whatever its size (tests run small shapes through it). The
 * environment variable TRMML_CONV_WINOGRAD=0 or =always sets OFF or ALWAYS at start.
 * Backward and the CUDA backend always use im2col + GEMM. Returns the previous mode. */
typedef enum { CONV_WINOGRAD_OFF, CONV_WINOGRAD_AUTO, CONV_WINOGRAD_ALWAYS } ConvWinograd;
ConvWinograd conv_set_winograd(ConvWinograd mode);

/* The tile of the fp32 Winograd forward: CONV_WINOGRAD_F4, the default, F(4x4, 3x3) (36
 * products per 16 outputs; where AUTO finds too few 4x4 tiles it falls back to F(2x2, 3x3));
 * CONV_WINOGRAD_F2: F(2x2, 3x3) (16 products per 4 outputs, the smaller rounding error:
 * docs/ops/conv.md). A bf16 weight always takes F(2x2, 3x3). TRMML_CONV_WINOGRAD_TILE=2 sets
 * F2 at start. Returns the previous tile; another value is a CHECK failure. */
typedef enum { CONV_WINOGRAD_F2 = 2, CONV_WINOGRAD_F4 = 4 } ConvWinogradTile;
ConvWinogradTile conv_set_winograd_tile(ConvWinogradTile tile);
