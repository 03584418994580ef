/* matmul.h — matrix products: tensor_matmul, tensor_matmul_t and tensor_linear.
 *
 * All take float32 tensors on one device, return a new tensor from the current arena, and record
 * a tape node when an input requires a gradient. Every product goes through the core gemm kernel
 * (tensor/ops/gemm.h); backward never materialises a transposed copy. Shape errors abort
 * through CHECK naming the op and both shapes. */
#pragma once
#include <stdbool.h>

#include "tensor/tensor.h"

/* a (..., M, K) @ b (..., K, N) -> (..., M, N). Either equal leading (batch) dims, or b 2-D
 * (K, N) and shared by every matrix of a. No broadcasting of size-1 batch dims, no 1-D operands. */
Tensor *tensor_matmul(Tensor *a, Tensor *b);
/* op(a) @ op(b) with op(x) = x^T when its flag is set: a is then stored (..., K, M), b (..., N, K).
 * Same batch rules as tensor_matmul. */
Tensor *tensor_matmul_t(Tensor *a, Tensor *b, bool trans_a, bool trans_b);
/* y (..., OUT) = x (..., IN) @ weight^T + bias, weight stored (OUT, IN) as in PyTorch checkpoints,
 * bias (OUT) or NULL. A frozen weight or bias (requires_grad false) costs no gradient work. */
Tensor *tensor_linear(Tensor *x, Tensor *weight, Tensor *bias);
/* The scratch of the linear_forward kernel (matmul.def) on device dev: on the CPU and the guard
 * device at the avx512 level, the own fp32 GEMM's (tensor/ops/gemm_f32.h); 0 otherwise. */
size_t linear_forward_scratch_bytes(DeviceKind dev, int64_t rows, int64_t in, int64_t out);
