// Element-wise and row-wise ops on f32 activations.
// 1-D kernels: one thread per element, 256 threads per block.
// Row kernels (softmax, argmax): one block of 256 threads per row.
#include "compat.h"
#include "common.h"

// out = act(gate) * up; kind 0 = SiLU, 1 = GELU (tanh approximation).
extern "C" __global__ void glu_f32(const float* __restrict__ gate, const float* __restrict__ up,
                                   float* __restrict__ out, int n, int kind, i8* __restrict__ q,
                                   float2* __restrict__ ds) {
    RF_GRID_SYNC();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    // With q (n a multiple of 32, the 8-bit form for the decode mat-vec, as
    // quantize_q8_f32 would write it): whole groups of 32 lanes return here.
    if (i >= n) return;
    const float r = rf_glu_act(gate[i], kind) * up[i];
    out[i] = r;
    if (q) rf_q8_emit1(r, i, true, q, ds);
}

// glu_f32 without the 8-bit form, four values per thread (prompt rows:
// 16-byte loads and stores; n4 = n / 4 float4s, every pointer 16-byte
// aligned, the launcher checks). The same values as glu_f32.
extern "C" __global__ void glu4_f32(const float4* __restrict__ gate, const float4* __restrict__ up,
                                    float4* __restrict__ out, int n4, int kind) {
    RF_GRID_SYNC();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    const float4 g = gate[i], u = up[i];
    out[i] = make_float4(rf_glu_act(g.x, kind) * u.x, rf_glu_act(g.y, kind) * u.y,
                         rf_glu_act(g.z, kind) * u.z, rf_glu_act(g.w, kind) * u.w);
}

// dst0[i] = src0[i] and dst1[i] = src1[i] for i < n: a layer's new K and V
// rows into the KV cache in one launch.
extern "C" __global__ void copy2_f32(float* __restrict__ dst0, const float* __restrict__ src0,
                                     float* __restrict__ dst1, const float* __restrict__ src1,
                                     int n) {
    RF_GRID_SYNC();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    dst0[i] = src0[i];
    dst1[i] = src1[i];
}

// a[i] += b[i % nb] (nb == n: plain add; nb == cols: a bias or a row broadcast).
extern "C" __global__ void add_f32(float* __restrict__ a, const float* __restrict__ b, int n, int nb) {
    RF_GRID_SYNC();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) a[i] += b[i % nb];
}

// a[i] *= b[i % nb].
extern "C" __global__ void mul_f32(float* __restrict__ a, const float* __restrict__ b, int n, int nb) {
    RF_GRID_SYNC();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) a[i] *= b[i % nb];
}

// a[i] *= s.
extern "C" __global__ void scale_f32(float* __restrict__ a, float s, int n) {
    RF_GRID_SYNC();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) a[i] *= s;
}

// Softmax of each row of `cols`, in place.
extern "C" __global__ void softmax_f32(float* __restrict__ a, int cols) {
    RF_GRID_SYNC();
    __shared__ float scratch[32];
    float* r = a + (size_t)blockIdx.x * cols;
    float m = RF_NEG_INF;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, r[i]);
    m = rf_block_max(m, scratch);
    float s = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        const float e = expf(r[i] - m);
        r[i] = e;
        s += e;
    }
    const float inv = 1.0f / rf_block_sum(s, scratch);
    for (int i = threadIdx.x; i < cols; i += blockDim.x) r[i] *= inv;
}

// Index of the largest value of each row (ties to the lowest index; NaN never wins).
extern "C" __global__ void argmax_f32(const float* __restrict__ a, int cols, u32* __restrict__ out) {
    RF_GRID_SYNC();
    __shared__ float sv[32];
    __shared__ int si[32];
    const float* r = a + (size_t)blockIdx.x * cols;
    float best = RF_NEG_INF;
    int bi = 0x7fffffff;
    // Four loads in flight per thread, compared in increasing index order:
    // 16-byte loads where the row is 16-byte aligned and whole (a logits row
    // of a vocabulary that is a multiple of 4: a quarter of the round trips).
    const int bd = blockDim.x;
    int i = threadIdx.x;
    if ((cols & 3) == 0 && ((size_t)r & 15) == 0) {
        const float4* r4 = (const float4*)r;
        const int n4 = cols / 4;
        int j = threadIdx.x;
        for (; j + 3 * bd < n4; j += 4 * bd) {
            const float4 v[4] = {r4[j], r4[j + bd], r4[j + 2 * bd], r4[j + 3 * bd]};
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int b = 4 * (j + u * bd);
                if (v[u].x > best) { best = v[u].x; bi = b; }
                if (v[u].y > best) { best = v[u].y; bi = b + 1; }
                if (v[u].z > best) { best = v[u].z; bi = b + 2; }
                if (v[u].w > best) { best = v[u].w; bi = b + 3; }
            }
        }
        for (; j < n4; j += bd) {
            const float4 v = r4[j];
            if (v.x > best) { best = v.x; bi = 4 * j; }
            if (v.y > best) { best = v.y; bi = 4 * j + 1; }
            if (v.z > best) { best = v.z; bi = 4 * j + 2; }
            if (v.w > best) { best = v.w; bi = 4 * j + 3; }
        }
        i = cols; // nothing left for the scalar loops
    }
    for (; i + 3 * bd < cols; i += 4 * bd) {
        const float v0 = r[i], v1 = r[i + bd], v2 = r[i + 2 * bd], v3 = r[i + 3 * bd];
        if (v0 > best) { best = v0; bi = i; }
        if (v1 > best) { best = v1; bi = i + bd; }
        if (v2 > best) { best = v2; bi = i + 2 * bd; }
        if (v3 > best) { best = v3; bi = i + 3 * bd; }
    }
    for (; i < cols; i += bd) {
        if (r[i] > best) {
            best = r[i];
            bi = i;
        }
    }
    for (int m = RF_WAVE / 2; m > 0; m >>= 1) {
        const float ov = RF_SHFL_XOR(best, m);
        const int oi = RF_SHFL_XOR(bi, m);
        if (ov > best || (ov == best && oi < bi)) {
            best = ov;
            bi = oi;
        }
    }
    const int lane = threadIdx.x % RF_WAVE, w = threadIdx.x / RF_WAVE, nw = blockDim.x / RF_WAVE;
    if (lane == 0) {
        sv[w] = best;
        si[w] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < nw; k++) {
            if (sv[k] > best || (sv[k] == best && si[k] < bi)) {
                best = sv[k];
                bi = si[k];
            }
        }
        out[blockIdx.x] = bi == 0x7fffffff ? 0u : (u32)bi;
    }
}

// The [position, token] of a recorded decode step launched ahead: the
// position from the host, the token picked on the device (id[0]). One
// thread.
extern "C" __global__ void step_next_u32(const u32* __restrict__ id, u32* __restrict__ step,
                                         u32 pos) {
    RF_GRID_SYNC();
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        step[0] = pos;
        step[1] = id[0];
    }
}
