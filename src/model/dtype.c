/* dtype.c - safetensors dtype names and sizes, f16 decoding, arch names. */
#include "model/model.h"

#include <math.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[LOOM_DTYPE_COUNT] = {
    [LOOM_DTYPE_BF16]    = {"BF16", 2},
    [LOOM_DTYPE_F16]     = {"F16", 2},
    [LOOM_DTYPE_F32]     = {"F32", 4},
    [LOOM_DTYPE_F64]     = {"F64", 8},
    [LOOM_DTYPE_I8]      = {"I8", 1},
    [LOOM_DTYPE_U8]      = {"U8", 1},
    [LOOM_DTYPE_I16]     = {"I16", 2},
    [LOOM_DTYPE_U16]     = {"U16", 2},
    [LOOM_DTYPE_I32]     = {"I32", 4},
    [LOOM_DTYPE_U32]     = {"U32", 4},
    [LOOM_DTYPE_I64]     = {"I64", 8},
    [LOOM_DTYPE_U64]     = {"U64", 8},
    [LOOM_DTYPE_BOOL]    = {"BOOL", 1},
    [LOOM_DTYPE_F8_E4M3] = {"F8_E4M3", 1},
    [LOOM_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
};

/* 0 for an out-of-range value, so callers' size checks fail closed. */
size_t loom_dtype_size(loom_dtype dt)
{
    if ((unsigned)dt >= LOOM_DTYPE_COUNT)
        return 0;
    return dtype_info[dt].size;
}

const char *loom_dtype_name(loom_dtype dt)
{
    if ((unsigned)dt >= LOOM_DTYPE_COUNT)
        return "?";
    return dtype_info[dt].name;
}

bool loom_dtype_parse(const char *s, loom_dtype *out)
{
    if (!s)
        return false;
    for (int i = 0; i < LOOM_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (loom_dtype)i;
            return true;
        }
    }
    return false;
}

/* IEEE half -> float, exact: subnormals are rescaled by 2^-24, inf and NaN
 * keep their sign (and NaN its payload in the top mantissa bits). */
float loom_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    float f;

    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in float */
        f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    if (exp == 0x1f)
        u = sign | 0x7f800000u | (man << 13);
    else
        u = sign | ((exp + 112u) << 23) | (man << 13);
    memcpy(&f, &u, 4);
    return f;
}

const char *loom_arch_name(loom_arch a)
{
    switch (a) {
    case LOOM_ARCH_QWEN3: return "Qwen3ForCausalLM";
    case LOOM_ARCH_QWEN2: return "Qwen2ForCausalLM";
    case LOOM_ARCH_LLAMA: return "LlamaForCausalLM";
    case LOOM_ARCH_COUNT: break;
    }
    return "?";
}
