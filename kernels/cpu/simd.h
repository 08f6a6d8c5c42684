// Code generation helpers for the CPU kernels: each hot function is compiled twice (AVX2+FMA and the
// x86-64 baseline) and the loader picks the right one at run time, so one binary is fast and portable.
#pragma once

// The AVX2 clone is selected by ISA level (x86-64-v3: AVX2, FMA, BMI1/2, ...), not by CPU model: GCC's
// resolver for "arch=haswell" asks __builtin_cpu_is("haswell"), which is false on every later core (this
// machine's Cooper Lake took the baseline clone, at half the speed). GCC < 12 lacks the ISA levels: "avx2".
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(MECHSCOPE_NO_CLONES) && __GNUC__ >= 12
#define MECHSCOPE_KERNEL_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#elif defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(MECHSCOPE_NO_CLONES)
#define MECHSCOPE_KERNEL_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MECHSCOPE_KERNEL_CLONES
#endif

// Small helpers called from the clones: always inlined, so each clone gets them in its own instructions.
#define MECHSCOPE_INLINE inline __attribute__((always_inline))
