/* tensor.c - element access for mapped and generated tensors, and the preset
 * weight generator.
 *
 * The generator (must stay bit-identical to the CUDA copy):
 *
 *     mix64(z):  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
 *                z = (z ^ (z >> 27)) * 0x94D049BB133111EB
 *                return z ^ (z >> 31)                        (splitmix64)
 *     base   = mix64(seed ^ mix64(uid))                      (per tensor)
 *     h      = mix64(base + (idx + 1) * 0x9E3779B97F4A7C15)  (all uint64)
 *     s      = (h & 0xffff) + ((h >> 16) & 0xffff)
 *            + ((h >> 32) & 0xffff) + (h >> 48)              (0 .. 262140)
 *     n      = (float)((int32_t)s - 131070) * K              (ONE fp32 multiply)
 *     K      = 0x1.1bc77ap-21f  (= 0.02f / (65536.0f * sqrtf(1.0f / 3.0f)),
 *                                 5.2857996e-07f)
 *     NORMAL   -> bf16_rne(n)
 *     NEAR_ONE -> bf16_rne(1.0f + n)                         (ONE fp32 add)
 *
 * s is a sum of four uniform 16-bit lanes: mean 131070, variance 65536^2 / 3,
 * so n has mean 0 and std 0.02 and is close to normal (range +-0.069).
 * (int32_t)s - 131070 is exact in fp32 (|x| < 2^24). On the GPU write the
 * multiply and the add as __fmul_rn / __fadd_rn so that they are never
 * contracted into an FMA; bf16_rne is loom_f32_to_bf16 (model.h). */
#include "model/model.h"

#include <math.h>

#define GEN_K 0x1.1bc77ap-21f
#define GEN_GAMMA 0x9E3779B97F4A7C15ull

int64_t loom_tensor_numel(const loom_tensor *t)
{
    int64_t n = 1;

    if (t->ndim <= 0)
        return 0;
    for (int i = 0; i < t->ndim && i < 2; i++)
        n *= t->shape[i];
    return n;
}

uint64_t loom_fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t gen_base(uint64_t seed, uint64_t uid)
{
    return mix64(seed ^ mix64(uid));
}

/* The approximately N(0, 0.02) value of element idx, in fp32. */
static inline float gen_normal(uint64_t base, uint64_t idx)
{
    uint64_t h = mix64(base + (idx + 1) * GEN_GAMMA);
    uint32_t s = (uint32_t)(h & 0xffff) + (uint32_t)((h >> 16) & 0xffff) +
                 (uint32_t)((h >> 32) & 0xffff) + (uint32_t)(h >> 48);
    return (float)((int32_t)s - 131070) * GEN_K;
}

static inline uint16_t gen_bf16(loom_gen_kind kind, uint64_t base, uint64_t idx)
{
    float n = gen_normal(base, idx);

    if (kind == LOOM_GEN_NEAR_ONE) {
        float one_n = 1.0f + n;
        return loom_f32_to_bf16(one_n);
    }
    return loom_f32_to_bf16(n);
}

/* One loop per kind, so the hot loop has no branch but the rounding's. On
 * x86-64 a second copy is built for AVX-512 (vectorised 64-bit multiplies,
 * ~4x faster) and picked at load time; integer-only hashing and IEEE fp32
 * ops (never contracted to FMA) make both copies give the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define GEN_CLONES                                                            \
    __attribute__((target_clones("arch=x86-64-v4", "default"),                \
                   optimize("O3", "fp-contract=off")))
#else
#define GEN_CLONES
#endif

GEN_CLONES
static void gen_fill_bf16(const loom_tensor *t, int64_t begin, int64_t count, uint16_t *dst)
{
    uint64_t base = gen_base(t->gen_seed, t->gen_uid);

    if (t->gen_kind == LOOM_GEN_NEAR_ONE) {
        for (int64_t i = 0; i < count; i++)
            dst[i] = gen_bf16(LOOM_GEN_NEAR_ONE, base, (uint64_t)(begin + i));
    } else {
        for (int64_t i = 0; i < count; i++)
            dst[i] = gen_bf16(LOOM_GEN_NORMAL, base, (uint64_t)(begin + i));
    }
}

uint16_t loom_gen_value_bf16(loom_gen_kind kind, uint64_t seed, uint64_t uid, uint64_t idx)
{
    return gen_bf16(kind, gen_base(seed, uid), idx);
}

/* Loads element i of a mapped tensor, unaligned-safe. */
static inline uint16_t load_u16(const uint8_t *p, int64_t i)
{
    uint16_t v;
    memcpy(&v, p + 2 * i, 2);
    return v;
}

static inline float load_f32(const uint8_t *p, int64_t i)
{
    float v;
    memcpy(&v, p + 4 * i, 4);
    return v;
}

void loom_tensor_read_bf16(const loom_tensor *t, int64_t begin, int64_t count, uint16_t *dst)
{
    const uint8_t *p = t->data;

    if (t->gen_kind != LOOM_GEN_NONE) {
        gen_fill_bf16(t, begin, count, dst);
        return;
    }
    switch (t->dtype) {
    case LOOM_DTYPE_BF16:
        memcpy(dst, p + 2 * begin, (size_t)count * 2);
        break;
    case LOOM_DTYPE_F16:
        for (int64_t i = 0; i < count; i++)
            dst[i] = loom_f32_to_bf16(loom_f16_to_f32(load_u16(p, begin + i)));
        break;
    case LOOM_DTYPE_F32:
        for (int64_t i = 0; i < count; i++)
            dst[i] = loom_f32_to_bf16(load_f32(p, begin + i));
        break;
    default:
        /* The loader admits no other dtype; make misuse loud (NaN). */
        for (int64_t i = 0; i < count; i++)
            dst[i] = 0x7fc0;
        break;
    }
}

void loom_tensor_read_f32(const loom_tensor *t, int64_t begin, int64_t count, float *dst)
{
    const uint8_t *p = t->data;

    if (t->gen_kind != LOOM_GEN_NONE) {
        /* through the fast bf16 generator, a stack chunk at a time */
        uint16_t buf[4096];
        for (int64_t i = 0; i < count; i += 4096) {
            int64_t k = count - i < 4096 ? count - i : 4096;
            gen_fill_bf16(t, begin + i, k, buf);
            for (int64_t j = 0; j < k; j++)
                dst[i + j] = loom_bf16_to_f32(buf[j]);
        }
        return;
    }
    switch (t->dtype) {
    case LOOM_DTYPE_BF16:
        for (int64_t i = 0; i < count; i++)
            dst[i] = loom_bf16_to_f32(load_u16(p, begin + i));
        break;
    case LOOM_DTYPE_F16:
        for (int64_t i = 0; i < count; i++)
            dst[i] = loom_f16_to_f32(load_u16(p, begin + i));
        break;
    case LOOM_DTYPE_F32:
        memcpy(dst, p + 4 * begin, (size_t)count * 4);
        break;
    default:
        for (int64_t i = 0; i < count; i++)
            dst[i] = NAN;
        break;
    }
}
