/* isa.c — detection of the CPU's instruction-set level and the start-up choice (tensor/isa.h).
 *
 * CPUID says what the CPU implements and XGETBV which register states the OS saves on a context
 * switch: a level counts only if both hold (AVX-512 on a kernel that does not save the zmm
 * registers would corrupt them). Read directly rather than through __builtin_cpu_supports,
 * whose "x86-64-v3"/"x86-64-v4" names GCC 12 knows but clang 14 (the fuzz build) does not. The
 * choice is made in a constructor, before main, so that every kernel call of a run sees one
 * level and a bad $TRMML_ISA stops the program before any work. */
#include "tensor/isa.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

IsaLevel isa_active = ISA_BASELINE;

static const char *const level_names[ISA_COUNT] = {"baseline", "avx2", "avx512"};
static const char *const level_arch[ISA_COUNT] = {"x86-64-v2", "x86-64-v3: AVX2+FMA",
                                                  "x86-64-v4: AVX-512, 512-bit vectors"};

const char *isa_level_name(IsaLevel level) {
    CHECK(level >= 0 && level < ISA_COUNT, "isa level %d", (int)level);
    return level_names[level];
}

/* The features this file needs, from CPUID and XGETBV, read once. */
typedef struct {
    bool v3, v4, avx512_bf16, amx_bf16;
} CpuFeatures;

static CpuFeatures cpu_features(void) {
    static CpuFeatures f;
    static bool done;
    if (done) return f;
    done = true;
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const unsigned c1 = c;
    /* bit 27 OSXSAVE: XGETBV is usable */
    uint64_t xcr0 = 0;
    if (c1 & (1u << 27)) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = (uint64_t)hi << 32 | lo;
    }
    unsigned b7 = 0, d7 = 0, a71 = 0, c_ext = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        b7 = b;
        d7 = d;
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) a71 = a;
    if (__get_cpuid(0x80000001, &a, &b, &c, &d)) c_ext = c;
    const bool os_avx = (xcr0 & 0x6) == 0x6;       /* XMM and YMM state */
    const bool os_avx512 = (xcr0 & 0xe6) == 0xe6;  /* and opmask, ZMM_Hi256, Hi16_ZMM */
    /* x86-64-v3: AVX, AVX2, BMI1, BMI2, F16C, FMA, LZCNT, MOVBE (and XSAVE, implied above) */
    f.v3 = os_avx && (c1 & (1u << 28)) && (c1 & (1u << 12)) && (c1 & (1u << 22)) &&
           (c1 & (1u << 29)) && (b7 & (1u << 5)) && (b7 & (1u << 3)) && (b7 & (1u << 8)) &&
           (c_ext & (1u << 5));
    /* x86-64-v4: v3 and AVX-512 F (16), DQ (17), CD (28), BW (30), VL (31) */
    f.v4 = f.v3 && os_avx512 && (b7 & (1u << 16)) && (b7 & (1u << 17)) && (b7 & (1u << 28)) &&
           (b7 & (1u << 30)) && (b7 & (1u << 31));
    f.avx512_bf16 = f.v4 && (a71 & (1u << 5));
    /* AMX-BF16 (EDX bit 22) and AMX-TILE (bit 24); the OS grants the tile state per process,
     * on request (gemm_bf16.c) */
    f.amx_bf16 = f.v4 && (d7 & (1u << 22)) && (d7 & (1u << 24));
#endif
    return f;
}

bool isa_supported(IsaLevel level) {
    switch (level) {
    case ISA_BASELINE: return true;
    case ISA_AVX2: return cpu_features().v3;
    case ISA_AVX512: return cpu_features().v4;
    default: return false;
    }
}

bool isa_has_amx_bf16(void) { return cpu_features().amx_bf16; }

IsaLevel isa_best(void) {
    for (int l = ISA_COUNT - 1; l > 0; l--)
        if (isa_supported((IsaLevel)l)) return (IsaLevel)l;
    return ISA_BASELINE;
}

bool isa_has_avx512_bf16(void) { return cpu_features().avx512_bf16; }

const char *isa_name(void) {
    static char buf[160];
    snprintf(buf, sizeof buf, "%s (%s; best on this CPU: %s; avx512_bf16: %s)",
             level_names[isa_active], level_arch[isa_active], level_names[isa_best()],
             isa_has_avx512_bf16() ? "yes" : "no");
    return buf;
}

Status isa_parse(const char *word, IsaLevel *out) {
    for (int l = 0; l < ISA_COUNT; l++) {
        if (strcmp(word, level_names[l]) != 0) continue;
        if (!isa_supported((IsaLevel)l))
            return error_set(STATUS_ERR_DEVICE,
                             "TRMML_ISA=%s: this CPU (or its OS) lacks %s; it runs up to %s",
                             word, level_arch[l], level_names[isa_best()]);
        *out = (IsaLevel)l;
        return STATUS_OK;
    }
    return error_set(STATUS_ERR_USAGE, "TRMML_ISA=%s: expected baseline, avx2 or avx512", word);
}

IsaLevel isa_set_level(IsaLevel level) {
    CHECK(level >= 0 && level < ISA_COUNT && isa_supported(level),
          "isa level %d (%s) is not supported by this CPU", (int)level,
          level >= 0 && level < ISA_COUNT ? level_names[level] : "?");
    IsaLevel prev = isa_active;
    isa_active = level;
    return prev;
}

/* Before main, at priority 101, ahead of the constructors that read the level (gemm_bf16.c's
 * $TRMML_PRECISION): the best level, or $TRMML_ISA's. An unknown word or a level the CPU lacks
 * is a usage error of the whole program (exit 2), reported before any work is done. */
__attribute__((constructor(101))) static void isa_choose(void) {
    isa_active = isa_best();
    const char *env = getenv("TRMML_ISA");
    if (!env || !*env) return;
    IsaLevel l;
    if (isa_parse(env, &l) != STATUS_OK) {
        fprintf(stderr, "trmml: %s\n", error_last());
        exit(2);
    }
    isa_active = l;
}
