/* isa.c — detection of the CPU's instruction-set level and the start-up choice (tensor/isa.h).
 *
 * GCC's __builtin_cpu_supports("x86-64-v3"/"x86-64-v4") asks CPUID and, for AVX and AVX-512,
 * XGETBV: a level counts only if the OS also saves the wider registers. The choice is made in a
 * constructor, before main, so that every kernel call of a run sees one level and a bad
 * $TRMML_ISA stops the program before any work. */
#include "tensor/isa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

IsaLevel isa_active = ISA_BASELINE;

static const char *const level_names[ISA_COUNT] = {"baseline", "avx2", "avx512"};
static const char *const level_arch[ISA_COUNT] = {"x86-64-v2", "x86-64-v3: AVX2+FMA",
                                                  "x86-64-v4: AVX-512, 512-bit vectors"};

const char *isa_level_name(IsaLevel level) {
    CHECK(level >= 0 && level < ISA_COUNT, "isa level %d", (int)level);
    return level_names[level];
}

bool isa_supported(IsaLevel level) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    switch (level) {
    case ISA_BASELINE: return true;
    case ISA_AVX2: return __builtin_cpu_supports("x86-64-v3");
    case ISA_AVX512: return __builtin_cpu_supports("x86-64-v4");
    default: return false;
    }
#else
    return level == ISA_BASELINE;
#endif
}

IsaLevel isa_best(void) {
    for (int l = ISA_COUNT - 1; l > 0; l--)
        if (isa_supported((IsaLevel)l)) return (IsaLevel)l;
    return ISA_BASELINE;
}

bool isa_has_avx512_bf16(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return isa_supported(ISA_AVX512) && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

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
