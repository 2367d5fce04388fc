// RMS norm of one group of values by one block: shared by the norm kernels
// (norm.hip) and the residual-add + norm tail of the decode mat-vec
// (matvec.hip).
#pragma once
#include "common.h"

// w[i] as float4 number i (ones when w is null).
RF_DEVICE float4 rf_norm_weight4(const float* w, int i) {
    return w ? ((const float4*)w)[i] : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
}

// o[i] (as float4 number i) = t * scale * g; returns it.
RF_DEVICE float4 rf_norm_store4(float* o, float4 g, int i, float4 t, float scale) {
    const float4 r =
        make_float4(t.x * scale * g.x, t.y * scale * g.y, t.z * scale * g.z, t.w * scale * g.w);
    ((float4*)o)[i] = r;
    return r;
}

// RMS norm of the group at xr (ADD: xr[i] + yr[i], also written back to xr)
// into o, times w when not null. Groups of a multiple of 4 values on 16-byte
// boundaries go as float4 with the first 8 * blockDim.x values kept in
// registers between the two passes (all of a 4096-value row with 1024
// threads: one load in flight per thread instead of a chain of dependent ones).
// With q not null (group a multiple of 32) the result is also written as
// 8-bit blocks (q, ds) for the decode mat-vec, exactly as quantize_q8_f32
// would from o; loops then run the same trip count on every lane, because
// the block's lanes reduce with shuffles. yr is read with plain loads (no
// read-only cache path): the mat-vec tail (matvec.hip) reads values other
// blocks of its own launch wrote.
template <bool ADD>
RF_DEVICE void rf_rms_norm_group(float* xr, const float* yr,
                                 const float* __restrict__ w, int group, float eps, float* o,
                                 i8* __restrict__ q, float2* __restrict__ ds) {
    __shared__ float scratch[32];
    const int tid = threadIdx.x, nt = blockDim.x;
    const bool vec =
        (group & 3) == 0 && (((size_t)xr | (size_t)o | (size_t)w | (size_t)yr) & 15) == 0;
    const float4 zero4 = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (vec) {
        const int n4 = group >> 2;
        float4* x4 = (float4*)xr;
        const float4* y4 = (const float4*)yr;
        // The weights are loaded with the row, before the reduction (a
        // dependent load after it would add a memory round trip).
        float4 c[2], g[2];
        float ss = 0.0f;
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int i = tid + u * nt;
            c[u] = zero4;
            g[u] = zero4;
            if (i < n4) {
                g[u] = rf_norm_weight4(w, i);
                c[u] = x4[i];
                if (ADD) {
                    const float4 d = y4[i];
                    c[u] = make_float4(c[u].x + d.x, c[u].y + d.y, c[u].z + d.z, c[u].w + d.w);
                    x4[i] = c[u];
                }
            }
            ss += c[u].x * c[u].x + c[u].y * c[u].y + c[u].z * c[u].z + c[u].w * c[u].w;
        }
        for (int i = tid + 2 * nt; i < n4; i += nt) {
            float4 t = x4[i];
            if (ADD) {
                const float4 d = y4[i];
                t = make_float4(t.x + d.x, t.y + d.y, t.z + d.z, t.w + d.w);
                x4[i] = t;
            }
            ss += t.x * t.x + t.y * t.y + t.z * t.z + t.w * t.w;
        }
        ss = rf_block_sum(ss, scratch);
        const float scale = 1.0f / sqrtf(ss / (float)group + eps);
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int i = tid + u * nt;
            float4 r = zero4;
            if (i < n4) r = rf_norm_store4(o, g[u], i, c[u], scale);
            if (q) rf_q8_emit4(r, i, i < n4, q, ds);
        }
        // A thread reads back only what it wrote itself (same i): no barrier needed.
        for (int b = 2 * nt; b < n4; b += nt) {
            const int i = b + tid;
            float4 r = zero4;
            if (i < n4) r = rf_norm_store4(o, rf_norm_weight4(w, i), i, x4[i], scale);
            if (q) rf_q8_emit4(r, i, i < n4, q, ds);
        }
        return;
    }
    float ss = 0.0f;
    for (int i = tid; i < group; i += nt) {
        float v = xr[i];
        if (ADD) {
            v += yr[i];
            xr[i] = v;
        }
        ss += v * v;
    }
    ss = rf_block_sum(ss, scratch);
    const float scale = 1.0f / sqrtf(ss / (float)group + eps);
    for (int b = 0; b < group; b += nt) {
        const int i = b + tid;
        float r = 0.0f;
        if (i < group) {
            r = xr[i] * scale * (w ? w[i] : 1.0f);
            o[i] = r;
        }
        if (q) rf_q8_emit1(r, i, i < group, q, ds);
    }
}
