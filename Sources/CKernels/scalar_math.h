// exp and tanh of one float for the portable kernels (logits.c, attention_rows.c): the same steps and constants as
// the vector bodies in x86_simd.h (Cephes' polynomial for exp; for tanh sign(x) (1 - 2 / (exp(2|x|) + 1)), or
// x - x^3/3 + 2x^5/15 for |x| <= 0.02), written without branches or libm calls so that a loop over them vectorizes
// at whatever width the compiler targets (SSE2 on x86-64 without AVX2). With libm's expf and tanhf the LM head's
// loss row took 15x as long as with AVX-512. Internal to CKernels.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float nc_exp_scalar(float x) {
    x = x < -87.3f ? -87.3f : x > 88.3f ? 88.3f : x;
    const float magic = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
    float t = x * 1.44269504f + magic;
    float n = t - magic;
    float r = (x - n * 0.693359375f) + n * 2.1219444e-4f;
    float p = 1.98756915e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * (r * r) + r + 1.f;
    int32_t bits;  // the integer n sits in the low mantissa bits of t; move it into the exponent field
    memcpy(&bits, &t, 4);
    bits = (bits - 0x4B400000 + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return e * scale;
}

static inline float nc_tanh_scalar(float x) {
    float ax = fabsf(x);
    float e = nc_exp_scalar(2.f * (ax < 44.f ? ax : 44.f));
    float big = copysignf(1.f - 2.f / (e + 1.f), x);
    float x2 = x * x;
    float small = x * (1.f + x2 * (-1.f / 3.f + x2 * (2.f / 15.f)));
    return ax > 0.02f ? big : small;
}
