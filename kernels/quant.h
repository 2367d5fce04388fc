// Dequantization of the weight formats the GPU keeps in VRAM, one 32-element
// chunk at a time. Layouts are ggml's (bit-exact with the CPU `quant` crate):
// `row` is the start of a weight row, `c` the index of a 32-element chunk in
// it, `K` the row length (used by the float formats, whose rows need not be
// whole chunks). Each function writes y[0..32]; entries past K are zero.
#pragma once
#include "compat.h"

RF_DEVICE float rf_ld_f16(const u8* p) { return rf_h2f((u16)(p[0] | (p[1] << 8))); }
RF_DEVICE u32 rf_ld_u32(const u8* p) { return (u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24); }

__constant__ static const i8 RF_KV_IQ4NL[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
__constant__ static const i8 RF_KV_MXFP4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

RF_DEVICE void deq_f32(const u8* row, int c, int K, float* y) {
    const float* r = (const float*)row;
#pragma unroll
    for (int i = 0; i < 32; i++) y[i] = (c * 32 + i < K) ? r[c * 32 + i] : 0.0f;
}

RF_DEVICE void deq_f16(const u8* row, int c, int K, float* y) {
    const u16* r = (const u16*)row;
#pragma unroll
    for (int i = 0; i < 32; i++) y[i] = (c * 32 + i < K) ? rf_h2f(r[c * 32 + i]) : 0.0f;
}

RF_DEVICE void deq_bf16(const u8* row, int c, int K, float* y) {
    const u16* r = (const u16*)row;
#pragma unroll
    for (int i = 0; i < 32; i++) y[i] = (c * 32 + i < K) ? __int_as_float(((int)r[c * 32 + i]) << 16) : 0.0f;
}

RF_DEVICE void deq_q4_0(const u8* row, int c, int, float* y) {
    const u8* b = row + c * 18;
    const float d = rf_ld_f16(b);
#pragma unroll
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b[2 + j] & 0xF) - 8);
        y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
    }
}

RF_DEVICE void deq_q4_1(const u8* row, int c, int, float* y) {
    const u8* b = row + c * 20;
    const float d = rf_ld_f16(b), m = rf_ld_f16(b + 2);
#pragma unroll
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(b[4 + j] & 0xF) + m;
        y[j + 16] = d * (float)(b[4 + j] >> 4) + m;
    }
}

RF_DEVICE void deq_q5_0(const u8* row, int c, int, float* y) {
    const u8* b = row + c * 22;
    const float d = rf_ld_f16(b);
    const u32 qh = rf_ld_u32(b + 2);
#pragma unroll
    for (int j = 0; j < 16; j++) {
        const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        y[j] = d * (float)(((b[6 + j] & 0xF) | h0) - 16);
        y[j + 16] = d * (float)(((b[6 + j] >> 4) | h1) - 16);
    }
}

RF_DEVICE void deq_q5_1(const u8* row, int c, int, float* y) {
    const u8* b = row + c * 24;
    const float d = rf_ld_f16(b), m = rf_ld_f16(b + 2);
    const u32 qh = rf_ld_u32(b + 4);
#pragma unroll
    for (int j = 0; j < 16; j++) {
        const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        y[j] = d * (float)((b[8 + j] & 0xF) | h0) + m;
        y[j + 16] = d * (float)((b[8 + j] >> 4) | h1) + m;
    }
}

RF_DEVICE void deq_q8_0(const u8* row, int c, int, float* y) {
    const u8* b = row + c * 34;
    const float d = rf_ld_f16(b);
#pragma unroll
    for (int j = 0; j < 32; j++) y[j] = d * (float)(i8)b[2 + j];
}

// Q2_K: scales[16] @0, qs[64] @16, d @80, dmin @82; 256 elements.
RF_DEVICE void deq_q2_k(const u8* row, int c, int, float* y) {
    const u8* b = row + (c / 8) * 84;
    const int s = c % 8, h = s / 4, j = s % 4;
    const float d = rf_ld_f16(b + 80), dmin = rf_ld_f16(b + 82);
#pragma unroll
    for (int l = 0; l < 32; l++) {
        const int sc = b[h * 8 + j * 2 + (l >= 16)];
        const int q = (b[16 + h * 32 + l] >> (2 * j)) & 3;
        y[l] = d * (float)(sc & 0xF) * (float)q - dmin * (float)(sc >> 4);
    }
}

// Q3_K: hmask[32] @0, qs[64] @32, scales[12] @96, d @108.
RF_DEVICE void deq_q3_k(const u8* row, int c, int, float* y) {
    const u8* b = row + (c / 8) * 110;
    const int s = c % 8, h = s / 4, j = s % 4;
    const float d = rf_ld_f16(b + 108);
    const u8 m = (u8)(1u << (h * 4 + j));
    const u8* sb = b + 96;
#pragma unroll
    for (int l = 0; l < 32; l++) {
        const int is = h * 8 + j * 2 + (l >= 16);
        const int lo = is < 8 ? (sb[is] & 0xF) : (sb[is - 8] >> 4);
        const int hi = (sb[8 + is % 4] >> (2 * (is / 4))) & 3;
        const int sc = (lo | (hi << 4)) - 32;
        const int q = ((b[32 + h * 32 + l] >> (2 * j)) & 3) - ((b[l] & m) ? 0 : 4);
        y[l] = d * (float)sc * (float)q;
    }
}

// The 6-bit scale and min of sub-block j of Q4_K / Q5_K.
RF_DEVICE void rf_scale_min_k4(int j, const u8* q, int* sc, int* mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Q4_K: d @0, dmin @2, scales[12] @4, qs[128] @16.
RF_DEVICE void deq_q4_k(const u8* row, int c, int, float* y) {
    const u8* b = row + (c / 8) * 144;
    const int s = c % 8;
    int sc, mn;
    rf_scale_min_k4(s, b + 4, &sc, &mn);
    const float d = rf_ld_f16(b) * (float)sc, m = rf_ld_f16(b + 2) * (float)mn;
    const u8* q = b + 16 + (s / 2) * 32;
    const int shift = (s % 2) * 4;
#pragma unroll
    for (int l = 0; l < 32; l++) y[l] = d * (float)((q[l] >> shift) & 0xF) - m;
}

// Q5_K: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48.
RF_DEVICE void deq_q5_k(const u8* row, int c, int, float* y) {
    const u8* b = row + (c / 8) * 176;
    const int s = c % 8;
    int sc, mn;
    rf_scale_min_k4(s, b + 4, &sc, &mn);
    const float d = rf_ld_f16(b) * (float)sc, m = rf_ld_f16(b + 2) * (float)mn;
    const u8* q = b + 48 + (s / 2) * 32;
    const int shift = (s % 2) * 4;
    const u8 bit = (u8)(1u << s);
#pragma unroll
    for (int l = 0; l < 32; l++) y[l] = d * (float)(((q[l] >> shift) & 0xF) + ((b[16 + l] & bit) ? 16 : 0)) - m;
}

// Q6_K: ql[128] @0, qh[64] @128, scales[16] (int8) @192, d @208.
RF_DEVICE void deq_q6_k(const u8* row, int c, int, float* y) {
    const u8* b = row + (c / 8) * 210;
    const int s = c % 8, h = s / 4, k = s % 4;
    const float d = rf_ld_f16(b + 208);
    const u8* ql = b + h * 64 + (k & 1) * 32;
    const u8* qh = b + 128 + h * 32;
    const i8* sc = (const i8*)(b + 192 + h * 8);
#pragma unroll
    for (int l = 0; l < 32; l++) {
        const int nib = k >= 2 ? (ql[l] >> 4) : (ql[l] & 0xF);
        const int q = (nib | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
        y[l] = d * (float)sc[l / 16 + 2 * k] * (float)q;
    }
}

RF_DEVICE void deq_iq4_nl(const u8* row, int c, int, float* y) {
    const u8* b = row + c * 18;
    const float d = rf_ld_f16(b);
#pragma unroll
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)RF_KV_IQ4NL[b[2 + j] & 0xF];
        y[j + 16] = d * (float)RF_KV_IQ4NL[b[2 + j] >> 4];
    }
}

// IQ4_XS: d @0, scales_h (u16) @2, scales_l[4] @4, qs[128] @8.
RF_DEVICE void deq_iq4_xs(const u8* row, int c, int, float* y) {
    const u8* b = row + (c / 8) * 136;
    const int ib = c % 8;
    const int sh = b[2] | (b[3] << 8);
    const int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4);
    const float dl = rf_ld_f16(b) * (float)(ls - 32);
    const u8* q = b + 8 + 16 * ib;
#pragma unroll
    for (int j = 0; j < 16; j++) {
        y[j] = dl * (float)RF_KV_IQ4NL[q[j] & 0xF];
        y[j + 16] = dl * (float)RF_KV_IQ4NL[q[j] >> 4];
    }
}

// MXFP4: E8M0 scale byte @0 (applied halved, as ggml), qs[16] @1.
RF_DEVICE void deq_mxfp4(const u8* row, int c, int, float* y) {
    const u8* b = row + c * 17;
    const u32 e = b[0];
    const float d = __int_as_float(e < 2 ? (int)(0x00200000u << e) : (int)((e - 1) << 23));
#pragma unroll
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)RF_KV_MXFP4[b[1 + j] & 0xF];
        y[j + 16] = d * (float)RF_KV_MXFP4[b[1 + j] >> 4];
    }
}

// X(name, dequantize function) for every format with GPU kernels.
#define RF_FOR_EACH_FORMAT(X) \
    X(f32, deq_f32)           \
    X(f16, deq_f16)           \
    X(bf16, deq_bf16)         \
    X(q4_0, deq_q4_0)         \
    X(q4_1, deq_q4_1)         \
    X(q5_0, deq_q5_0)         \
    X(q5_1, deq_q5_1)         \
    X(q8_0, deq_q8_0)         \
    X(q2_k, deq_q2_k)         \
    X(q3_k, deq_q3_k)         \
    X(q4_k, deq_q4_k)         \
    X(q5_k, deq_q5_k)         \
    X(q6_k, deq_q6_k)         \
    X(iq4_nl, deq_iq4_nl)     \
    X(iq4_xs, deq_iq4_xs)     \
    X(mxfp4, deq_mxfp4)
