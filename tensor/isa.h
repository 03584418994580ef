/* isa.h — the instruction-set level of the CPU kernels' hot loops, chosen once at start-up.
 *
 * The library is compiled for x86-64-v2 (SSE4.2) so that one binary runs on any x86-64 CPU of
 * the last fifteen years. The loops where the time goes (Winograd transforms, QuickGELU, ReLU,
 * layer norm, ...) are compiled three times more from one source: for the baseline, for AVX2+FMA
 * (x86-64-v3) and for AVX-512 (x86-64-v4, 512-bit vectors), and a call picks the variant of the
 * level chosen at start-up: the best the CPU has, or the one $TRMML_ISA names
 * (baseline|avx2|avx512; a level the CPU lacks is refused with a message, exit status 2).
 * docs/ops/isa.md explains the choice of per-function target attributes over target_clones and
 * per-ISA translation units, and why the three variants give bit-identical results.
 *
 * How a kernel file uses it:
 *     static inline ISA_BODY void relu_range_body(float *out, const float *inp, int64_t n) {...}
 *     ISA_VARIANTS(relu_range, (float *out, const float *inp, int64_t n), (out, inp, n))
 * defines relu_range_baseline/_avx2/_avx512 and a dispatcher `static void relu_range(...)`.
 * The body holds no OpenMP pragma: GCC outlines a parallel region before it inlines, so the
 * outlined loop would keep the body's (baseline) target. The caller's `omp parallel for` splits
 * the work and calls the dispatcher once per row or range. */
#pragma once
#include <stdbool.h>

#include "tensor/error.h"

typedef enum { ISA_BASELINE = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_COUNT = 3 } IsaLevel;

/* The level in use. Set before main runs (from the CPU and $TRMML_ISA). */
extern IsaLevel isa_active;
static inline IsaLevel isa_level(void) { return isa_active; }

const char *isa_level_name(IsaLevel level); /* "baseline", "avx2", "avx512" */
/* Whether this CPU (and its OS, which must save the wider registers) runs `level`. */
bool isa_supported(IsaLevel level);
/* The best level this CPU runs. */
IsaLevel isa_best(void);
/* The chosen level and what it means, for `trmml version`: e.g.
 * "avx512 (x86-64-v4, 512-bit vectors; best on this CPU: avx512; avx512_bf16: yes)". */
const char *isa_name(void);
/* Parse "baseline"/"avx2"/"avx512" into *out; STATUS_ERR_USAGE (message via error_last) for
 * another word, STATUS_ERR_DEVICE for a level the CPU lacks. */
Status isa_parse(const char *word, IsaLevel *out);
/* Switch level (tests, benchmarks); returns the previous one. A level the CPU lacks is a
 * contract violation (CHECK): ask isa_supported first. Not to be called while kernels run. */
IsaLevel isa_set_level(IsaLevel level);
/* Whether the CPU has AVX512-BF16 (vdpbf16ps) with AVX-512 usable (tensor/ops/gemm_bf16.h). */
bool isa_has_avx512_bf16(void);
/* Whether the CPU has AMX-TILE and AMX-BF16 (the OS must still grant the tile state). */
bool isa_has_amx_bf16(void);

/* Targets of the variants. x86-64-v3: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE. x86-64-v4 adds
 * AVX-512 F/BW/CD/DQ/VL; GCC's generic tuning would still prefer 256-bit vectors there, so the
 * AVX-512 variant asks for 512. */
#if defined(__x86_64__) && defined(__clang__)
/* clang 14 has no prefer-vector-width in target attributes */
#define ISA_TARGET_AVX2 __attribute__((target("arch=x86-64-v3")))
#define ISA_TARGET_AVX512 __attribute__((target("arch=x86-64-v4")))
#elif defined(__x86_64__) && defined(__GNUC__)
#define ISA_TARGET_AVX2 __attribute__((target("arch=x86-64-v3")))
#define ISA_TARGET_AVX512 __attribute__((target("arch=x86-64-v4,prefer-vector-width=512")))
#else /* another architecture: the three variants are the same code, only baseline is offered */
#define ISA_TARGET_AVX2
#define ISA_TARGET_AVX512
#endif
/* A body compiled into each variant, for that variant's target. */
#define ISA_BODY __attribute__((always_inline))

#define ISA_VARIANTS(name, params, args)                                                   \
    static void name##_baseline params { name##_body args; }                              \
    ISA_TARGET_AVX2 static void name##_avx2 params { name##_body args; }                   \
    ISA_TARGET_AVX512 static void name##_avx512 params { name##_body args; }               \
    static void name params {                                                              \
        switch (isa_level()) {                                                             \
        case ISA_AVX512: name##_avx512 args; return;                                       \
        case ISA_AVX2: name##_avx2 args; return;                                           \
        default: name##_baseline args; return;                                            \
        }                                                                                  \
    }
