// Row normalisations. Launch: grid = (number of groups), block = 256 threads.
#include "compat.h"
#include "common.h"

// RMS norm of each group of `group` consecutive values (x viewed as
// [n_groups][group]); w (length group) multiplies the result when not null.
extern "C" __global__ void rms_norm_f32(const float* __restrict__ x, const float* __restrict__ w,
                                        int group, float eps, float* __restrict__ out) {
    __shared__ float scratch[32];
    const float* xr = x + (size_t)blockIdx.x * group;
    float* o = out + (size_t)blockIdx.x * group;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < group; i += blockDim.x) ss += xr[i] * xr[i];
    ss = rf_block_sum(ss, scratch);
    const float scale = 1.0f / sqrtf(ss / (float)group + eps);
    for (int i = threadIdx.x; i < group; i += blockDim.x) o[i] = xr[i] * scale * (w ? w[i] : 1.0f);
}

// Layer norm of each row of `cols`; then * w + b where given.
extern "C" __global__ void layer_norm_f32(const float* __restrict__ x, const float* __restrict__ w,
                                          const float* __restrict__ b, int cols, float eps,
                                          float* __restrict__ out) {
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
