/* convert.h — storage dtypes to float32 (and back, for writing checkpoints).
 *
 * Checkpoints store weights as float16 or bfloat16 and indices as int64/int32; compute is
 * float32 (SPEC §0: up-cast at load). Conversions are exact where the target can represent the
 * value; float32 -> float16/bfloat16 rounds to nearest, ties to even, as PyTorch's .half() and
 * .bfloat16() do. None of these is differentiable (they convert storage, not activations). */
#pragma once
#include <stdint.h>

#include "tensor/tensor.h"

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
/* bfloat16 is the top half of a float32: inline, for the bf16 GEMM's packing loops too. */
static inline float bf16_to_f32(uint16_t b) {
    union {
        uint32_t u;
        float f;
    } v = {.u = (uint32_t)b << 16};
    return v.f;
}
static inline uint16_t f32_to_bf16(float f) {
    union {
        float f;
        uint32_t u;
    } v = {.f = f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u); /* quiet NaN */
    v.u += 0x7fffu + ((v.u >> 16) & 1u); /* round to nearest, ties to even */
    return (uint16_t)(v.u >> 16);
}

/* A new float32 tensor (current arena) with the values of `t` (any dtype). */
Tensor *tensor_to_f32(const Tensor *t);
