// Rotary position embedding in place (ggml's rope with optional YaRN).
// x is [rows][n_heads * head_dim]; row t is at position pos[t]. A second
// tensor x2 ([rows][n_heads2 * head_dim], same positions; null with
// n_heads2 = 0) is rotated in the same launch (a layer's queries and keys).
// With kc (all head dims rotated), x2's rotated rows are also written to kc
// (the KV cache's key rows), and nv more threads copy vs to vc (the values):
// the layer's cache write in the same launch. With store_at_pos the cache
// rows start at position pos[0] instead of at kc/vc themselves.
// One thread per (row, head, rotated pair), then one per copied value.
// Launch: 1-D, 256 threads per block.
#include "compat.h"

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
    const long long n_pairs = (long long)rows * heads * half;
    if (idx >= n_pairs) {
        const long long j = idx - n_pairs;
        if (j < nv) vc[j] = vs[j];
        return;
    }
    const int i = (int)(idx % half);
    const int hh = (int)((idx / half) % heads);
    const int t = (int)(idx / ((long long)half * heads));
    // Head hh of the pair: one of x's n_heads, then one of x2's.
    const bool second = hh >= n_heads;
    const int h = second ? hh - n_heads : hh;
    const int nh = second ? n_heads2 : n_heads;
    float* base = second ? x2 : x;
    const int i0 = 2 * i;
    // Repeated multiplication by theta_scale = base^(-2/n_dims) (computed on
    // the host), as ggml does, so the angles match the CPU bit for bit.
    float theta_extrap = (float)pos[t];
    for (int k = 0; k < i; k++) theta_extrap *= theta_scale;
    const float theta_interp = freq_scale * theta_extrap;
    float theta = theta_interp, mscale = attn_factor;
    if (ext_factor != 0.0f) {
        const float y = ((float)i - corr_low) / fmaxf(0.001f, corr_high - corr_low);
        const float ramp = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * ext_factor;
        theta = theta_interp * (1.0f - ramp) + theta_extrap * ramp;
        mscale *= 1.0f + 0.1f * logf(1.0f / freq_scale);
    }
    const float c = cosf(theta) * mscale, s = sinf(theta) * mscale;
    const size_t at = (size_t)t * nh * head_dim + (size_t)h * head_dim;
    float* head = base + at;
    const int a = neox ? i : i0, b = neox ? i + half : i0 + 1;
    const float x0 = head[a], x1 = head[b];
    const float r0 = x0 * c - x1 * s, r1 = x0 * s + x1 * c;
    head[a] = r0;
    head[b] = r1;
    if (second && kc) {
        kc[at + a] = r0;
        kc[at + b] = r1;
    }
}
