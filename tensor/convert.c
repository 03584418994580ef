/* convert.c — dtype conversion: scalar bit-level conversions and the convert_to_f32 kernel. */
#include "tensor/convert.h"

#include <math.h>
#include <string.h>

#include "tensor/device.h"
#include "tensor/kernels_cpu.h"

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); /* inf, NaN */
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in float32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13)); /* rebias 15 -> 127 */
}

uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000;
    uint32_t exp = (u >> 23) & 0xff, man = u & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00); /* overflow to inf */
    if (e <= 0) {
        /* Subnormal half: value = m * 2^-24 with m = round(|f| * 2^24), ties to even. */
        if (e < -10) return (uint16_t)sign;
        uint32_t m = man | 0x800000;             /* 24-bit significand */
        int shift = 14 - e;                       /* so that the result is in units of 2^-24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t q = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++; /* may carry into the exponent: correct */
    return (uint16_t)(sign | q);
}

void convert_to_f32_cpu(float *out, const void *inp, int64_t n, DType dtype) {
    /* out (n), inp (n) of `dtype` — assigns */
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        switch (dtype) {
        case DT_F32: out[i] = ((const float *)inp)[i]; break;
        case DT_F16: out[i] = f16_to_f32(((const uint16_t *)inp)[i]); break;
        case DT_BF16: out[i] = bf16_to_f32(((const uint16_t *)inp)[i]); break;
        case DT_I64: out[i] = (float)((const int64_t *)inp)[i]; break;
        case DT_I32: out[i] = (float)((const int32_t *)inp)[i]; break;
        case DT_U8: out[i] = (float)((const uint8_t *)inp)[i]; break;
        default: out[i] = NAN; break;
        }
    }
}

Tensor *tensor_to_f32(const Tensor *t) {
    CHECK(t && t->dtype >= 0 && t->dtype < DT_COUNT, "to_f32: bad tensor");
    Tensor *out = tensor_empty(DT_F32, t->ndim, t->shape);
    CHECK(out->device == t->device, "to_f32: a %s tensor with the current arena on %s",
          device_name(t->device), device_name(out->device));
    KERNEL_RUN(t->device, convert_to_f32, out->data, t->data, t->numel, t->dtype);
    return out;
}
