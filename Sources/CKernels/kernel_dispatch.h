// How a C kernel picks its body for the kernel level in force (kernel_level.c). Internal to CKernels.
// - NC_DISPATCH / NC_DISPATCH_VOID: one plain-C body (<name>_body, NC_BODY) compiled three times, at the baseline,
//   with AVX2 + FMA and with AVX-512 at 512-bit width, the compiler vectorizing its loops for each.
// - NC_DISPATCH_WIDTHS: bodies written by hand per width (<name>_avx512, <name>_avx2, <name>_portable).
#pragma once
#include "ckernels.h"
#include "x86_simd.h"

#define NC_BODY static inline __attribute__((always_inline))
#ifdef __clang__
#define NC_REASSOCIATE _Pragma("clang fp reassociate(on)")
#else
#define NC_REASSOCIATE
#endif

// sqrt without errno: libm's sqrtf may set errno (on a negative input), a side effect that keeps a loop around it
// from being vectorized
#if defined(__has_builtin) && __has_builtin(__builtin_elementwise_sqrt)
#define NC_SQRT(x) __builtin_elementwise_sqrt(x)
#else
#define NC_SQRT(x) sqrtf(x)
#endif

#ifdef NC_X86
#define NC_AVX2_FN __attribute__((target("avx2,fma")))
#define NC_AVX512_FN __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma"), min_vector_width(512)))
// nc_<name>(params) calls <name>_body(args) compiled for the kernel level in force
#define NC_DISPATCH(ret, name, params, args)                                                                          \
    NC_AVX2_FN static ret name##_avx2 params { return name##_body args; }                                              \
    NC_AVX512_FN static ret name##_avx512 params { return name##_body args; }                                          \
    ret nc_##name params {                                                                                            \
        int level = nc_kernel_level();                                                                                \
        return level >= 2 ? name##_avx512 args : level >= 1 ? name##_avx2 args : name##_body args;                    \
    }
#define NC_DISPATCH_VOID(name, params, args)                                                                          \
    NC_AVX2_FN static void name##_avx2 params { name##_body args; }                                                   \
    NC_AVX512_FN static void name##_avx512 params { name##_body args; }                                               \
    void nc_##name params {                                                                                           \
        int level = nc_kernel_level();                                                                                \
        if (level >= 2) name##_avx512 args;                                                                           \
        else if (level >= 1) name##_avx2 args;                                                                        \
        else name##_body args;                                                                                        \
    }
// nc_<name>(params) calls the hand-written <name>_avx512, <name>_avx2 or <name>_portable for the kernel level in force
#define NC_DISPATCH_WIDTHS(ret, name, params, args)                                                                   \
    ret nc_##name params {                                                                                            \
        int level = nc_kernel_level();                                                                                \
        return level >= 2 ? name##_avx512 args : level >= 1 ? name##_avx2 args : name##_portable args;                \
    }
#define NC_DISPATCH_WIDTHS_VOID(name, params, args)                                                                   \
    void nc_##name params {                                                                                           \
        int level = nc_kernel_level();                                                                                \
        if (level >= 2) name##_avx512 args;                                                                           \
        else if (level >= 1) name##_avx2 args;                                                                        \
        else name##_portable args;                                                                                    \
    }
#else
#define NC_DISPATCH(ret, name, params, args) ret nc_##name params { return name##_body args; }
#define NC_DISPATCH_VOID(name, params, args) void nc_##name params { name##_body args; }
#define NC_DISPATCH_WIDTHS(ret, name, params, args) ret nc_##name params { return name##_portable args; }
#define NC_DISPATCH_WIDTHS_VOID(name, params, args) void nc_##name params { name##_portable args; }
#endif
