// Code generation helpers for the CPU kernels: each hot function is compiled twice (AVX2+FMA and the
// x86-64 baseline) and the loader picks the right one at run time, so one binary is fast and portable.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(MECHSCOPE_NO_CLONES)
#define MECHSCOPE_KERNEL_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define MECHSCOPE_KERNEL_CLONES
#endif
