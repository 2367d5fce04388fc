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
