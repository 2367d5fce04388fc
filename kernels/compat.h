// rocmforge kernel portability header: the ONLY file that knows which GPU
// vendor a kernel is compiled for. Every kernel source is written in the HIP
// dialect against the names defined here and compiles unchanged with hipcc
// or hiprtc (AMD) and with nvcc or NVRTC (NVIDIA).
//
//   RF_WAVE              threads per wave, a compile-time constant
//                        (32 on NVIDIA and RDNA, 64 on CDNA/GCN)
//   RF_SHFL_XOR(v, m)    value of `v` held by lane (lane ^ m) of the wave
//   rf_h2f(bits)         IEEE half (as its 16 bits) to float
//   RF_DP4A(a, b, c)     c + the dot product of the four signed bytes of a
//                        and of b (one instruction where the target has it)
//   RF_WAVE_SYNC()       the lanes of a wave meet here, and their shared-memory
//                        writes before it are visible to each other after it
//   RF_DEVICE            inline device function qualifier
//   rf_ld_weight16<M>(p) 16 bytes of weights read once per pass, with cache
//                        hint M (see below)
//   u8 i8 u16 i16 u32 i32  fixed-width integers (no <stdint.h> under the
//                        runtime compilers)
//   RF_PREFETCH_L2(p)    hint: the line of p into L2 (NVIDIA; elsewhere nothing)
//   RF_MAXNREG(n)        kernel qualifier: at most n registers a thread
//                        (NVIDIA's __maxnreg__; elsewhere nothing)
//   RF_GRID_SYNC()       first statement of every kernel: waits for the
//                        previous kernel of the stream where launches may
//                        overlap it (see the end of this file)
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

#define RF_CUDA 1
#define RF_DP4A(a, b, c) __dp4a((int)(a), (int)(b), (int)(c))
#if defined(__CUDACC_RTC__)
// NVRTC has no <cstddef>; this names the same type as the built-in size_t.
typedef decltype(sizeof(0)) size_t;
#endif
#define RF_WAVE 32
#define RF_SHFL_XOR(v, m) __shfl_xor_sync(0xffffffffu, (v), (m))
#define RF_WAVE_SYNC() __syncwarp()
#define RF_DEVICE __device__ __forceinline__
#define RF_MAXNREG(n) __maxnreg__(n)

RF_DEVICE float rf_h2f(unsigned short h) {
    float f;
    asm("{ .reg .b16 t; mov.b16 t, %1; cvt.f32.f16 %0, t; }" : "=f"(f) : "h"(h));
    return f;
}

#else // HIP: hipcc (offline) or hiprtc (runtime)

#if !defined(__HIPCC_RTC__)
#include <hip/hip_runtime.h>
#endif
#define RF_AMD 1
#if defined(__AMDGCN_WAVEFRONT_SIZE)
#define RF_WAVE __AMDGCN_WAVEFRONT_SIZE
#else
// Host-side parse of device code: any value; never used for code generation.
#define RF_WAVE 64
#endif
#define RF_SHFL_XOR(v, m) __shfl_xor((v), (m))
// A wave runs in lockstep and its LDS accesses complete in order; the
// barrier keeps the compiler from moving them across this point.
#define RF_WAVE_SYNC() __builtin_amdgcn_wave_barrier()
#define RF_DEVICE __device__ __forceinline__
#define RF_MAXNREG(n)
#if defined(__gfx906__) || defined(__gfx908__) || defined(__gfx90a__) || defined(__gfx940__) || \
    defined(__gfx941__) || defined(__gfx942__) || defined(__gfx1030__)
#define RF_DP4A(a, b, c) __builtin_amdgcn_sdot4((int)(a), (int)(b), (int)(c), false)
#else
#define RF_DP4A(a, b, c) rf_dp4a_bytes((int)(a), (int)(b), (int)(c))
#endif

RF_DEVICE float rf_h2f(unsigned short h) {
    return (float)__builtin_bit_cast(_Float16, h);
}

#endif

// Weight words are read once per pass and should not push the activations
// (read by every wave) out of L1. Mode M: 0 plain load, 1 non-coherent
// (read-only) load, 2 that without allocating in L1, 3 evict-first
// (streaming); NVIDIA only, AMD takes a plain load. The define RF_LDW_MODE
// overrides M everywhere (for comparisons).
template <int M>
RF_DEVICE uint4 rf_ld_weight16(const uint4* p) {
#if defined(RF_LDW_MODE)
    constexpr int mode = RF_LDW_MODE;
#else
    constexpr int mode = M;
#endif
#if defined(RF_CUDA)
    if (mode == 1) return __ldg(p);
    if (mode == 2) {
        uint4 v;
        asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
            : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
            : "l"(p));
        return v;
    }
    if (mode == 3) return __ldcs(p);
#endif
    return *p;
}

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef short i16;
typedef unsigned int u32;
typedef int i32;

// RF_DP4A where the target has no such instruction.
RF_DEVICE int rf_dp4a_bytes(int a, int b, int c) {
    return c + (int)(i8)a * (int)(i8)b + (int)(i8)(a >> 8) * (int)(i8)(b >> 8) +
           (int)(i8)(a >> 16) * (int)(i8)(b >> 16) + (int)(i8)(a >> 24) * (int)(i8)(b >> 24);
}

#define RF_NEG_INF __int_as_float(0xff800000)

// First statement of every kernel. On NVIDIA sm_90+ a kernel may be launched
// as a programmatic dependent of the previous kernel in its stream (the
// runtime does so unless ROCMFORGE_GPU_NO_PDL=1): its blocks can then be
// resident before that kernel has finished. This waits until the previous
// kernel has completed and its writes are visible, then lets the next kernel
// in the stream be scheduled early in the same way. Elsewhere nothing.
#if defined(RF_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define RF_GRID_SYNC()                                          \
    do {                                                        \
        asm volatile("griddepcontrol.wait;" ::: "memory");      \
        asm volatile("griddepcontrol.launch_dependents;" ::: ); \
    } while (0)
#else
#define RF_GRID_SYNC() \
    do {               \
    } while (0)
#endif

// A hint that the 128-byte line holding p will be read soon: fetched into
// L2 without a register (RF_PREFETCH_L2). On NVIDIA a `prefetch` to L2;
// elsewhere nothing. The mat-vecs issue these before their grid wait
// (RF_MV_L2PF), while the kernel before them still runs.
#if defined(RF_CUDA)
#define RF_PREFETCH_L2(p) asm volatile("prefetch.global.L2 [%0];" ::"l"(p))
#else
#define RF_PREFETCH_L2(p) \
    do {                  \
    } while (0)
#endif
