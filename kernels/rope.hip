// Rotary position embedding in place (ggml's rope with optional YaRN).
// x is [rows][n_heads * head_dim]; row t is at position pos[t]. A second
// tensor x2 ([rows][n_heads2 * head_dim], same positions; null with
// n_heads2 = 0) is rotated in the same launch (a layer's queries and keys).
// With kc (all head dims rotated), x2's rotated rows are also written to kc
// (the KV cache's key rows), and nv more threads copy vs to vc (the values):
// the layer's cache write in the same launch. With store_at_pos the cache
// rows start at position pos[0] instead of at kc/vc themselves.
// One thread per (row, group of RF_ROPE_HEADS heads, rotated pair), then one
// per copied value: a pair's (cos, sin) (a chain of multiplies for the
// angle, then cosf and sinf) is computed once for the group's heads, not
// once per head (prompt rows: 20 µs a launch on an 8b model before).
// Launch: 1-D, 256 threads per block.
#include "compat.h"
#include "common.h"

// Heads per thread of rope_f32 (the launcher counts threads with it too).
#define RF_ROPE_HEADS 8

extern "C" __global__ void rope_f32(float* __restrict__ x, const u32* __restrict__ pos, int rows,
                                    int n_heads, float* __restrict__ x2, int n_heads2,
                                    int head_dim, int n_dims, int neox, float theta_scale,
                                    float freq_scale, float ext_factor, float attn_factor,
                                    float corr_low, float corr_high, float* __restrict__ kc,
                                    const float* __restrict__ vs, float* __restrict__ vc,
                                    int nv, int store_at_pos) {
    RF_GRID_SYNC();
    const int half = n_dims / 2;
    // Cache rows from the first row's position (kc, vc then point at the
    // layer's first cache row): the write of a replayed decode step.
    if (store_at_pos && kc) {
        const size_t off = (size_t)pos[0] * ((size_t)n_heads2 * head_dim);
        kc += off;
        vc += off;
    }
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const int heads = n_heads + n_heads2;
    const int groups = (heads + RF_ROPE_HEADS - 1) / RF_ROPE_HEADS;
    const long long n_items = (long long)rows * groups * half;
    if (idx >= n_items) {
        const long long j = idx - n_items;
        if (j < nv) vc[j] = vs[j];
        return;
    }
    const int i = (int)(idx % half);
    const int g = (int)((idx / half) % groups);
    const int t = (int)(idx / ((long long)half * groups));
    const RfRope rr = {neox, theta_scale, freq_scale, ext_factor, attn_factor, corr_low, corr_high};
    const float2 cs = rf_rope_cs((float)pos[t], i, rr);
    const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
#pragma unroll
    for (int u = 0; u < RF_ROPE_HEADS; u++) {
        const int hh = g * RF_ROPE_HEADS + u;
        if (hh >= heads) break;
        // Head hh of the pair: one of x's n_heads, then one of x2's.
        const bool second = hh >= n_heads;
        const int h = second ? hh - n_heads : hh;
        const int nh = second ? n_heads2 : n_heads;
        float* base = second ? x2 : x;
        const size_t at = (size_t)t * nh * head_dim + (size_t)h * head_dim;
        float* head = base + at;
        const float2 rot = rf_rope_rotate(head[a], head[b], cs);
        head[a] = rot.x;
        head[b] = rot.y;
        if (second && kc) {
            kc[at + a] = rot.x;
            kc[at + b] = rot.y;
        }
    }
}
