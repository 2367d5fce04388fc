// Row normalisations. Launch: grid = (number of groups), block = 256 threads.
#include "compat.h"
#include "common.h"
#include "norm.h"

// RMS norm of each group of `group` consecutive values (x viewed as
// [n_groups][group]); w (length group) multiplies the result when not null.
// q, ds: see rf_rms_norm_group (one group only; null otherwise).
extern "C" __global__ void rms_norm_f32(const float* x, const float* __restrict__ w, int group,
                                        float eps, float* out, i8* __restrict__ q,
                                        float2* __restrict__ ds) {
    RF_GRID_SYNC();
    const size_t off = (size_t)blockIdx.x * group;
    rf_rms_norm_group<false>((float*)x + off, nullptr, w, group, eps, out + off, q, ds);
}

// x += y, then out = RMS norm of each group of x (times w when not null): the
// residual add and the next layer's norm in one pass. q, ds as rms_norm_f32.
extern "C" __global__ void add_rms_norm_f32(float* x, const float* __restrict__ y,
                                            const float* __restrict__ w, int group, float eps,
                                            float* out, i8* __restrict__ q,
                                            float2* __restrict__ ds) {
    RF_GRID_SYNC();
    const size_t off = (size_t)blockIdx.x * group;
    rf_rms_norm_group<true>(x + off, y + off, w, group, eps, out + off, q, ds);
}

// Layer norm of each row of `cols`; then * w + b where given.
extern "C" __global__ void layer_norm_f32(const float* __restrict__ x, const float* __restrict__ w,
                                          const float* __restrict__ b, int cols, float eps,
                                          float* __restrict__ out) {
    RF_GRID_SYNC();
    __shared__ float scratch[32];
    const float* xr = x + (size_t)blockIdx.x * cols;
    float* o = out + (size_t)blockIdx.x * cols;
    float s = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) s += xr[i];
    const float mean = rf_block_sum(s, scratch) / (float)cols;
    float v = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) v += (xr[i] - mean) * (xr[i] - mean);
    const float var = rf_block_sum(v, scratch) / (float)cols;
    const float inv = 1.0f / sqrtf(var + eps);
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float y = (xr[i] - mean) * inv;
        if (w) y *= w[i];
        if (b) y += b[i];
        o[i] = y;
    }
}
