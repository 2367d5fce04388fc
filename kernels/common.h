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

// The GLU's activation of the gate value g: SiLU, or GELU with the tanh
// approximation when gelu (glu_f32, glu4_f32 and the fused gate/up
// mat-vecs: one definition, the same result to the bit).
RF_DEVICE float rf_glu_act(float g, int gelu) {
    if (!gelu) return g / (1.0f + expf(-g));
    const float c = 0.7978845608028654f;  // sqrt(2 / pi)
    return 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g)));
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

// Rotary embedding (ggml's rope with optional YaRN): the parameters that
// are the same for every pair, as the host computes them.
struct RfRope {
    int neox;  // pairs (i, i + n_dims / 2) instead of (2i, 2i + 1)
    float theta_scale, freq_scale, ext_factor, attn_factor, corr_low, corr_high;
};

// (cos, sin) of pair i at position p, both times the YaRN magnitude scale.
// The angle p * theta_scale^i is made by repeated multiplication, as ggml
// does, so that it matches the CPU bit for bit.
RF_DEVICE float2 rf_rope_cs(float p, int i, const RfRope& r) {
    float theta_extrap = p;
    for (int k = 0; k < i; k++) theta_extrap *= r.theta_scale;
    const float theta_interp = r.freq_scale * theta_extrap;
    float theta = theta_interp, mscale = r.attn_factor;
    if (r.ext_factor != 0.0f) {
        const float y = ((float)i - r.corr_low) / fmaxf(0.001f, r.corr_high - r.corr_low);
        const float ramp = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * r.ext_factor;
        theta = theta_interp * (1.0f - ramp) + theta_extrap * ramp;
        mscale *= 1.0f + 0.1f * logf(1.0f / r.freq_scale);
    }
    return make_float2(cosf(theta) * mscale, sinf(theta) * mscale);
}

// The pair (x0, x1) rotated by cs = (cos, sin).
RF_DEVICE float2 rf_rope_rotate(float x0, float x1, float2 cs) {
    return make_float2(x0 * cs.x - x1 * cs.y, x0 * cs.y + x1 * cs.x);
}

// The four values 4 * lane .. 4 * lane + 3 of a head of head_dim values
// (every dim rotated), held as one float4 per lane of a wave, rotated by
// cs[i] (rf_rope_cs of pair i, for every pair of the head). Neox pairs lie
// in lanes lane and lane ^ (head_dim / 8), which must be a power of two
// below RF_WAVE. Every lane of the wave must call it.
RF_DEVICE float4 rf_rope4(float4 v, int lane, int head_dim, int neox, const float2* cs) {
    if (!neox) {
        if (4 * lane >= head_dim) return v;
        const float2 a = rf_rope_rotate(v.x, v.y, cs[2 * lane]);
        const float2 b = rf_rope_rotate(v.z, v.w, cs[2 * lane + 1]);
        return make_float4(a.x, a.y, b.x, b.y);
    }
    const int half = head_dim / 2, m = head_dim / 8;
    const float4 o = make_float4(RF_SHFL_XOR(v.x, m), RF_SHFL_XOR(v.y, m), RF_SHFL_XOR(v.z, m),
                                 RF_SHFL_XOR(v.w, m));
    if (4 * lane >= head_dim) return v;
    const bool first = 4 * lane < half;
    const int i = first ? 4 * lane : 4 * lane - half;
    // First half: (own, partner) gives the pair's first value; second
    // half: (partner, own) its second.
    const float2 rx = first ? rf_rope_rotate(v.x, o.x, cs[i]) : rf_rope_rotate(o.x, v.x, cs[i]);
    const float2 ry =
        first ? rf_rope_rotate(v.y, o.y, cs[i + 1]) : rf_rope_rotate(o.y, v.y, cs[i + 1]);
    const float2 rz =
        first ? rf_rope_rotate(v.z, o.z, cs[i + 2]) : rf_rope_rotate(o.z, v.z, cs[i + 2]);
    const float2 rw =
        first ? rf_rope_rotate(v.w, o.w, cs[i + 3]) : rf_rope_rotate(o.w, v.w, cs[i + 3]);
    return first ? make_float4(rx.x, ry.x, rz.x, rw.x) : make_float4(rx.y, ry.y, rz.y, rw.y);
}
