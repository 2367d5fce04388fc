// Vendor-neutral helpers shared by the kernels: wave and block reductions.
// Block reductions need blockDim.x to be a multiple of RF_WAVE (the launch
// wrappers use 128 or 256 threads) and a __shared__ float scratch[32].
#pragma once
#include "compat.h"

RF_DEVICE float rf_wave_sum(float v) {
    for (int m = RF_WAVE / 2; m > 0; m >>= 1) v += RF_SHFL_XOR(v, m);
    return v;
}

RF_DEVICE float rf_wave_max(float v) {
    for (int m = RF_WAVE / 2; m > 0; m >>= 1) v = fmaxf(v, RF_SHFL_XOR(v, m));
    return v;
}

// Sum over the block; every thread gets the result.
RF_DEVICE float rf_block_sum(float v, float* scratch) {
    const int lane = threadIdx.x % RF_WAVE, w = threadIdx.x / RF_WAVE, nw = blockDim.x / RF_WAVE;
    v = rf_wave_sum(v);
    __syncthreads();
    if (lane == 0) scratch[w] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : 0.0f;
    return rf_wave_sum(v);
}

// Maximum over the block; every thread gets the result.
RF_DEVICE float rf_block_max(float v, float* scratch) {
    const int lane = threadIdx.x % RF_WAVE, w = threadIdx.x / RF_WAVE, nw = blockDim.x / RF_WAVE;
    v = rf_wave_max(v);
    __syncthreads();
    if (lane == 0) scratch[w] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : RF_NEG_INF;
    return rf_wave_max(v);
}

// 8-bit activation blocks for the decode mat-vecs (see matvec.hip): 32
// values -> 32 signed bytes q = rint(v / d) with d = max|v| / 127, and per
// block ds = (d, d * sum q). The helpers below quantize values held in
// registers by the lanes of one wave, so a kernel that produces a row can
// also write its 8-bit form; every variant computes exactly what
// quantize_q8_f32 computes from the stored row.

// The block scale and its reciprocal (0 for an all-zero block).
RF_DEVICE float2 rf_q8_scale(float amax) {
    const float d = amax / 127.0f;
    return make_float2(d, d != 0.0f ? 1.0f / d : 0.0f);
}

// One value per lane: the 32 lanes 32k..32k+31 of a wave hold values
// 32b..32b+31 (i = value index). All 32 lanes must call it; `valid` says
// whether this lane's value exists (whole blocks are in or out).
RF_DEVICE void rf_q8_emit1(float v, int i, bool valid, i8* __restrict__ q,
                           float2* __restrict__ ds) {
    float a = fabsf(v);
    for (int m = 16; m > 0; m >>= 1) a = fmaxf(a, RF_SHFL_XOR(a, m));
    const float2 d = rf_q8_scale(a);
    const int qi = (int)rintf(v * d.y);
    int s = qi;
    for (int m = 16; m > 0; m >>= 1) s += RF_SHFL_XOR(s, m);
    if (!valid) return;
    q[i] = (i8)qi;
    if ((i & 31) == 0) ds[i >> 5] = make_float2(d.x, d.x * (float)s);
}

// Four values per lane: 8 lanes 8k..8k+7 hold the float4s i4 = 8b..8b+7
// (values 32b..32b+31). All lanes of the wave must call it; whole blocks
// are valid or not.
RF_DEVICE void rf_q8_emit4(float4 v, int i4, bool valid, i8* __restrict__ q,
                           float2* __restrict__ ds) {
    float a = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
    for (int m = 4; m > 0; m >>= 1) a = fmaxf(a, RF_SHFL_XOR(a, m));
    const float2 d = rf_q8_scale(a);
    const int q0 = (int)rintf(v.x * d.y), q1 = (int)rintf(v.y * d.y);
    const int q2 = (int)rintf(v.z * d.y), q3 = (int)rintf(v.w * d.y);
    int s = q0 + q1 + q2 + q3;
    for (int m = 4; m > 0; m >>= 1) s += RF_SHFL_XOR(s, m);
    if (!valid) return;
    ((u32*)q)[i4] = (u32)(u8)q0 | ((u32)(u8)q1 << 8) | ((u32)(u8)q2 << 16) | ((u32)(u8)q3 << 24);
    if ((i4 & 7) == 0) ds[i4 >> 3] = make_float2(d.x, d.x * (float)s);
}
