// Decode mat-vec with 8-bit activations: y[r] = sum_k W[r][k] * x[k] for one
// token, the way ggml's CPU and GPU paths do it. The activation row is first
// quantized to 8-bit blocks of 32 (a scale d and the block's sum d * sum q);
// each weight block is then multiplied with integer dot products of four
// bytes at a time (RF_DP4A), which needs far fewer instructions per weight
// than dequantizing to f32.
// Launch (matvec_*): block = 4 * RF_WAVE, wpr waves per weight row (see rf_matvec_store).
#include "compat.h"
#include "common.h"
#include "quant.h"
#include "norm.h"

// x (n values, n a multiple of 32) -> q (n signed bytes) and, per block of
// 32, ds = (d, d * sum q) with d = max|x| / 127. One thread per value; the
// lanes of a block of 32 reduce with shuffles inside their 32-lane group.
extern "C" __global__ void quantize_q8_f32(const float* __restrict__ x, int n, i8* __restrict__ q,
                                           float2* __restrict__ ds) {
    RF_GRID_SYNC();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    // n and blockDim.x are multiples of 32: a group of 32 is in or out whole.
    if (i >= n) return;
    rf_q8_emit1(x[i], i, true, q, ds);
}

// The 32 bits starting `sh` bits (0..32) into the 64-bit pair hi:lo (a
// funnel shift: unaligned words from two aligned loads).
RF_DEVICE u32 rf_funnel(u32 lo, u32 hi, int sh) {
    return (u32)((((unsigned long long)hi << 32) | lo) >> sh);
}

// Four bytes of a weight block at a 2-byte aligned address.
RF_DEVICE int rf_ld_i32_a2(const u8* p) {
    const u16* h = (const u16*)p;
    return (int)((u32)h[0] | ((u32)h[1] << 16));
}

// Each rf_vdot_* multiplies the 32-value chunk `c` of a weight row with the
// Q8 block of the same 32 activations (`xq`: 8 words, `ds`: its d and sum).

// A block of 2 + 4 * NQ bytes at b (2-byte aligned): its f16 scale and its
// NQ words of quants, from NQ + 1 aligned 32-bit loads (half the load
// instructions of 16-bit pairs). When b is 4-byte aligned the quants start
// at byte 2 of the first word and are joined by funnel shifts; otherwise
// the scale ends the first word and the quants are the next NQ words.
template <int NQ>
RF_DEVICE float rf_ld_block_a2(const u8* b, int* q) {
    const u32* a = (const u32*)((size_t)b & ~(size_t)3);
    const int off2 = (int)((size_t)b & 2);  // 0 or 2
    u32 w[NQ + 1];
#pragma unroll
    for (int i = 0; i < NQ; i++) w[i] = a[i];
    // The block's last two bytes; never past its end (the last block of a
    // weight ends its buffer).
    w[NQ] = off2 ? a[NQ] : (u32) * (const u16*)(a + NQ);
    const int sh = 16 + 8 * off2;  // 16 or 32 bits
#pragma unroll
    for (int i = 0; i < NQ; i++)
        q[i] = (int)rf_funnel(w[i], w[i + 1], sh);
    return rf_h2f((u16)((w[0] >> (8 * off2)) & 0xFFFF));
}

// Q4_0 block (d, 16 bytes of nibbles: low nibbles are values 0..15, high
// nibbles 16..31): d_w * (d_x * sum(nib * q) - 8 * s_x).
RF_DEVICE float rf_vdot_q4_0(const u8* row, int c, const int* xq, float2 ds) {
    int w[4];
    const float d = rf_ld_block_a2<4>(row + c * 18, w);
    int sumi = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        sumi = RF_DP4A(w[i] & 0x0F0F0F0F, xq[i], sumi);
        sumi = RF_DP4A((w[i] >> 4) & 0x0F0F0F0F, xq[i + 4], sumi);
    }
    return d * (ds.x * (float)sumi - 8.0f * ds.y);
}

// Q8_0 block (d, 32 signed bytes).
RF_DEVICE float rf_vdot_q8_0(const u8* row, int c, const int* xq, float2 ds) {
    int w[8];
    const float d = rf_ld_block_a2<8>(row + c * 34, w);
    int sumi = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) sumi = RF_DP4A(w[i], xq[i], sumi);
    return d * ds.x * (float)sumi;
}

// Q4_K: chunk c is sub-block c % 8 of super-block c / 8 (d @0, dmin @2, six-
// bit scales and mins @4, nibbles @16: sub-blocks 2i and 2i+1 share 32
// bytes, low and high nibbles): d*sc*d_x*sum(nib * q) - dmin*m*s_x. Rows
// are whole 144-byte super-blocks, so the nibbles are 4-byte aligned.
RF_DEVICE float rf_vdot_q4_k(const u8* row, int c, const int* xq, float2 ds) {
    const u8* b = row + (c >> 3) * 144;
    const int s = c & 7;
    int sc, mn;
    rf_scale_min_k4(s, b + 4, &sc, &mn);
    const int* q = (const int*)(b + 16 + (s >> 1) * 32);
    const int shift = (s & 1) * 4;
    int sumi = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) sumi = RF_DP4A((q[i] >> shift) & 0x0F0F0F0F, xq[i], sumi);
    return rf_ld_f16(b) * (float)sc * ds.x * (float)sumi - rf_ld_f16(b + 2) * (float)mn * ds.y;
}

// Q6_K: chunk c is values 32*(c%8).. of super-block c / 8 (ql[128] @0,
// qh[64] @128, 16 signed scales @192, d @208; 2-byte aligned). Six-bit
// values (nibble | two high bits << 4) minus 32, one scale per 16 values:
// d*d_x*(sc0*(sum q*x - 32*sum x) over values 0..15 + sc1*(…) over 16..31).
RF_DEVICE float rf_vdot_q6_k(const u8* row, int c, const int* xq, float2 ds) {
    const u8* b = row + (c >> 3) * 210;
    const int s = c & 7, h = s >> 2, k = s & 3;
    const u8* ql = b + h * 64 + (k & 1) * 32;
    const u8* qh = b + 128 + h * 32;
    const i8* sc = (const i8*)(b + 192 + h * 8 + 2 * k);
    const int nshift = (k >> 1) * 4, hshift = 2 * k;
    int dot[2] = {0, 0}, sumx[2] = {0, 0};
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int nib = (rf_ld_i32_a2(ql + 4 * i) >> nshift) & 0x0F0F0F0F;
        const int hi = ((rf_ld_i32_a2(qh + 4 * i) >> hshift) & 0x03030303) << 4;
        dot[i >> 2] = RF_DP4A(nib | hi, xq[i], dot[i >> 2]);
        sumx[i >> 2] = RF_DP4A(0x01010101, xq[i], sumx[i >> 2]);
    }
    const int t = (int)sc[0] * (dot[0] - 32 * sumx[0]) + (int)sc[1] * (dot[1] - 32 * sumx[1]);
    return rf_ld_f16(b + 208) * ds.x * (float)t;
}

// Rows and waves: `wpr` waves (1, 2 or 4) share a row, splitting its chunks;
// a block of 4 waves covers 4 / wpr rows. Long rows get more waves so that
// each lane has few chunks left and more loads are in flight per row.
// The waves of a row add their sums through shared memory.
RF_DEVICE void rf_matvec_store(float acc, int r, int N, int sub, int wpr, float* Y) {
    __shared__ float part[4];
    const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;
    acc = rf_wave_sum(acc);
    if (wpr == 1) {
        if (lane == 0 && r < N) Y[r] = acc;
        return;
    }
    if (lane == 0) part[wave] = acc;
    __syncthreads();
    if (sub == 0 && lane == 0 && r < N) {
        float s = 0.0f;
        for (int i = 0; i < wpr; i++) s += part[wave + i];
        Y[r] = s;
    }
}

// rf_matvec_store for RPW rows per wave group (each its own row r[e] of
// N[e] in Y[e]).
template <int RPW>
RF_DEVICE void rf_matvec_store_n(float* acc, const int* r, const int* N, float* const* Y, int sub,
                                 int wpr) {
    __shared__ float part[RPW][4];
    const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;
#pragma unroll
    for (int e = 0; e < RPW; e++) acc[e] = rf_wave_sum(acc[e]);
    if (wpr == 1) {
        if (lane == 0) {
#pragma unroll
            for (int e = 0; e < RPW; e++)
                if (r[e] < N[e]) Y[e][r[e]] = acc[e];
        }
        return;
    }
    if (lane == 0) {
#pragma unroll
        for (int e = 0; e < RPW; e++) part[e][wave] = acc[e];
    }
    __syncthreads();
    if (sub == 0 && lane == 0) {
#pragma unroll
        for (int e = 0; e < RPW; e++) {
            if (r[e] >= N[e]) continue;
            float s = 0.0f;
            for (int i = 0; i < wpr; i++) s += part[e][wave + i];
            Y[e][r[e]] = s;
        }
    }
}

// Up to three weights with the same format and row length share one launch
// (a layer's q/k/v or gate/up, one quantized input): rows 0..N0 of the grid
// are weight 0's, the next N1 weight 1's, then N2 weight 2's.
#define RF_MV_ARGS                                                                               \
    const u8 *__restrict__ W0, const u8 *__restrict__ W1, const u8 *__restrict__ W2, int N0,      \
        int N1, int N2, float *Y0, float *Y1, float *Y2, int row_bytes, int K,                    \
        const int *__restrict__ xq, const float2 *__restrict__ ds, int wpr,                       \
        const float *__restrict__ XSC, int XSC_N, float XSC_EPS

// The optional tail of a one-weight mat-vec (CNT not null): once every block
// has stored its rows of y = Y0 (N0 values), the last block to finish does
// x += y; h = RMS norm of x * NW (eps) with the 8-bit form of h into NQ/NDS,
// which are the launch's own activation buffers xq/ds: every block has read
// its activations before it counts itself done. That is add_rms_norm_f32
// without a launch of its own. CNT (one counter) is 0 before a launch and
// is left 0 by the last block, so a recorded launch replays.
#define RF_MV_TAIL_ARGS                                                                          \
    , float *RX, const float *__restrict__ NW, float eps, float *NH, i8 *NQ, float2 *NDS,        \
        u32 *CNT
#define RF_MV_TAIL() rf_mv_norm_tail(Y0, N0, RX, NW, eps, NH, NQ, NDS, CNT)
#define RF_MV_PASS \
    W0, W1, W2, N0, N1, N2, Y0, Y1, Y2, row_bytes, K, xq, ds, wpr, XSC, XSC_N, XSC_EPS

// The activations' deferred norm scale (XSC not null: the row was written
// by a mat-vec with the residual add and RMS norm in its store,
// rf_mv_store_addnorm, as the 8-bit form of x * w without the factor
// 1 / sqrt(mean(x^2) + eps); XSC holds XSC_N partial sums of x^2, one per
// 32 values): the factor, which multiplies every result (the 8-bit values
// do not depend on it, only their scales would). 1 otherwise. Every lane
// of the wave must call it.
RF_DEVICE float rf_mv_xscale(const float* __restrict__ part, int n_part, float eps) {
    if (!part) return 1.0f;
    float s = 0.0f;
    for (int i = threadIdx.x % RF_WAVE; i < n_part; i += RF_WAVE) s += part[i];
    s = rf_wave_sum(s);
    return 1.0f / sqrtf(s / (float)(32 * n_part) + eps);
}
#define RF_MV_XSCALE() rf_mv_xscale(XSC, XSC_N, XSC_EPS)

// Both entry points of a mat-vec body `body` (a device function taking
// RF_MV_ARGS): matvec_<name>, and matvec_<name>_tail with the norm tail
// (its own kernel, so that the tail's registers do not lower the
// occupancy of the plain one).
#define RF_MV_ENTRIES(name, body)                                                                \
    RF_DEVICE void rf_mv_sync_##name(RF_MV_ARGS) {                                               \
        RF_GRID_SYNC();                                                                          \
        body(RF_MV_PASS);                                                                        \
    }                                                                                            \
    RF_MV_ENTRIES_SYNCED(name, rf_mv_sync_##name)

// RF_MV_ENTRIES for a body that calls RF_GRID_SYNC() itself, after its
// first weight loads: weights are never written by a kernel, so they may be
// requested while the kernel before it in the stream (which produced the
// activations) is still running.
// With RF_MV_LATE_SYNC defined (ROCMFORGE_GPU_KERNEL_DEFINES, for
// comparisons) they wait first, as every other kernel.
#if defined(RF_MV_LATE_SYNC)
#define RF_MV_PRE_SYNC() RF_GRID_SYNC()
#else
#define RF_MV_PRE_SYNC() \
    do {                 \
    } while (0)
#endif
#define RF_MV_ENTRIES_SYNCED(name, body)                                                         \
    extern "C" __global__ void matvec_##name(RF_MV_ARGS) {                                       \
        RF_MV_PRE_SYNC();                                                                        \
        body(RF_MV_PASS);                                                                        \
    }                                                                                            \
    extern "C" __global__ void matvec_##name##_tail(RF_MV_ARGS RF_MV_TAIL_ARGS) {                \
        RF_MV_PRE_SYNC();                                                                        \
        body(RF_MV_PASS);                                                                        \
        RF_MV_TAIL();                                                                            \
    }

// x += y; h = RMS norm of x * w, by one block: every load issued at once
// (RF_TAIL_U float4s of x, y and w per thread, kept in registers across the
// reduction), so the tail costs one memory round trip, not one per loop
// step; rows too long for that, or unaligned, go through rf_rms_norm_group.
#define RF_TAIL_U 8
RF_DEVICE void rf_mv_tail_norm(float* x, const float* y, const float* __restrict__ w, int n,
                               float eps, float* h, i8* hq, float2* hds) {
    const int tid = threadIdx.x, nt = blockDim.x, n4 = n >> 2;
    if ((n & 3) || n4 > RF_TAIL_U * nt ||
        (((size_t)x | (size_t)y | (size_t)w | (size_t)h) & 15)) {
        rf_rms_norm_group<true>(x, y, w, n, eps, h, hq, hds);
        return;
    }
    __shared__ float scratch[32];
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float4 c[RF_TAIL_U], g[RF_TAIL_U];
#pragma unroll
    for (int u = 0; u < RF_TAIL_U; u++) {
        const int i = tid + u * nt;
        c[u] = zero;
        g[u] = zero;
        if (i < n4) {
            const float4 a = ((const float4*)x)[i], d = ((const float4*)y)[i];
            g[u] = ((const float4*)w)[i];
            c[u] = make_float4(a.x + d.x, a.y + d.y, a.z + d.z, a.w + d.w);
        }
    }
    float ss = 0.0f;
#pragma unroll
    for (int u = 0; u < RF_TAIL_U; u++)
        ss += c[u].x * c[u].x + c[u].y * c[u].y + c[u].z * c[u].z + c[u].w * c[u].w;
    ss = rf_block_sum(ss, scratch);
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
#pragma unroll
    for (int u = 0; u < RF_TAIL_U; u++) {
        const int i = tid + u * nt;
        float4 r = zero;
        if (i < n4) {
            ((float4*)x)[i] = c[u];
            r = rf_norm_store4(h, g[u], i, c[u], scale);
        }
        if (hq) rf_q8_emit4(r, i, i < n4, hq, hds);
    }
}

RF_DEVICE void rf_mv_norm_tail(const float* y, int n, float* x, const float* __restrict__ w,
                               float eps, float* h, i8* hq, float2* hds, u32* cnt) {
    if (!cnt) return;
    __shared__ u32 ticket;
    // The block's stores of y happen before the barrier; thread 0's fence
    // then orders all of them (fences are cumulative) before its count, and
    // in the last block, every other block's stores before what its threads
    // read after the second barrier. One fence per block: the first form of
    // this tail, a fence in every thread, measured slower than a separate
    // norm launch (docs/gpu.md); this form is not measured yet.
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        ticket = atomicAdd(cnt, 1u);
        __threadfence();
    }
    __syncthreads();
    if (ticket != gridDim.x - 1) return;
    rf_mv_tail_norm(x, y, w, n, eps, h, hq, hds);
    if (threadIdx.x == 0) *cnt = 0u;
}

// Weight, output, row count and local row of grid row `rg` (past the end:
// weight 0 with r = N, which no kernel reads or writes).
RF_DEVICE void rf_mv_pick(int rg, const u8* W0, const u8* W1, const u8* W2, int N0, int N1, int N2,
                          float* Y0, float* Y1, float* Y2, const u8** W, float** Y, int* N, int* r) {
    if (rg < N0) {
        *W = W0, *Y = Y0, *N = N0, *r = rg;
    } else if (rg < N0 + N1) {
        *W = W1, *Y = Y1, *N = N1, *r = rg - N0;
    } else if (rg < N0 + N1 + N2) {
        *W = W2, *Y = Y2, *N = N2, *r = rg - N0 - N1;
    } else {
        *W = W0, *Y = Y0, *N = N0, *r = N0;
    }
}

#define RF_MV_PICK(rg)                                                                           \
    const u8* W;                                                                                 \
    float* Y;                                                                                    \
    int N, r;                                                                                    \
    rf_mv_pick(rg, W0, W1, W2, N0, N1, N2, Y0, Y1, Y2, &W, &Y, &N, &r)

// The R grid rows rg0 .. rg0 + R - 1 of a wave (group), as rf_mv_pick:
// their weight rows (a row past the end reads row 0 of its weight, never
// stored), outputs, row counts and local rows. True when any row exists.
template <int R>
RF_DEVICE bool rf_mv_pick_rows(int rg0, const u8* W0, const u8* W1, const u8* W2, int N0, int N1,
                               int N2, float* Y0, float* Y1, float* Y2, int row_bytes,
                               const uint4** rows, float** ys, int* ns, int* rs) {
    bool any = false;
#pragma unroll
    for (int e = 0; e < R; e++) {
        const u8* w;
        rf_mv_pick(rg0 + e, W0, W1, W2, N0, N1, N2, Y0, Y1, Y2, &w, &ys[e], &ns[e], &rs[e]);
        rows[e] = (const uint4*)(w + (size_t)(rs[e] < ns[e] ? rs[e] : 0) * row_bytes);
        any |= rs[e] < ns[e];
    }
    return any;
}

// ---- Gate and up projections with the GLU in one launch ------------------
//
// A feed-forward's act(x W_gate^T) * (x W_up^T) for one token, with the 8-bit
// form of the result for the down projection: the glu_f32 launch between the
// two mat-vecs left out. The rows kernels below take a template flag G: with
// it, wave group j's R rows are gate rows j R/2 .. j R/2 + R/2 - 1 (weight 0,
// N0 rows) followed by the same up rows (weight 1, N1 = N0), so each wave
// ends with R/2 finished outputs. A block of 32 / (R/2) waves then holds 32
// consecutive outputs, a whole 8-bit block, which it quantizes itself (no
// other block's values needed). Launch: one wave per row group (wpr = 1),
// block = 16 waves for R = 4, grid = N0 / 32; N0 a multiple of 32.
// What a rows kernel does after its dot products (template mode M): 0
// stores them; 1 (RF_MV_GLU) the GLU above; 2 (RF_MV_ADDNORM) the residual
// add and RMS norm of rf_mv_store_addnorm below.
#define RF_MV_PLAIN 0
#define RF_MV_GLU 1
#define RF_MV_ADDNORM 2
// 3 (RF_MV_GLUC): the GLU of RF_MV_GLU from independent 4-wave blocks; the
// last block to finish each group of 32 outputs writes its 8-bit block
// (rf_mv_store_gluc below).
#define RF_MV_GLUC 3
struct RfEpi {
    int gelu;           // GLU: 0 SiLU, 1 GELU (tanh approximation), as glu_f32
    i8* q;              // the output's 8-bit values (N0)
    float2* ds;         // and its scales (N0 / 32)
    float* x;           // ADDNORM: the residual row (N0), updated
    const float* nw;    // ADDNORM: the norm's weights (N0)
    float* part;        // ADDNORM: partial sums of x^2, one per block (N0 / 32)
    u32* cnt;           // GLUC: finished blocks per group of 32 outputs (N0 / 32), left at 0
    int boff;           // the body's first block of the grid (a launch of two bodies)
};
#define RF_MV_GLU_ARGS , int glu_gelu, i8 *__restrict__ GQ, float2 *__restrict__ GDS
#define RF_MV_GLU_PASS , RfEpi{glu_gelu, GQ, GDS, nullptr, nullptr, nullptr, nullptr}
#define RF_MV_ADDNORM_ARGS                                                                       \
    , float *__restrict__ AX, const float *__restrict__ ANW, i8 *__restrict__ GQ,                \
        float2 *__restrict__ GDS, float *__restrict__ APART
#define RF_MV_ADDNORM_PASS , RfEpi{0, GQ, GDS, AX, ANW, APART, nullptr}
#define RF_MV_GLUC_ARGS                                                                          \
    , int glu_gelu, i8 *__restrict__ GQ, float2 *__restrict__ GDS, u32 *__restrict__ GCNT
#define RF_MV_GLUC_PASS , RfEpi{glu_gelu, GQ, GDS, nullptr, nullptr, nullptr, GCNT}

// The R rows of wave group wg: rf_mv_pick_rows's consecutive grid rows, or
// with G the gate/up pairing above.
template <int R, bool G>
RF_DEVICE bool rf_mv_pick_group(int wg, const u8* W0, const u8* W1, const u8* W2, int N0, int N1,
                                int N2, float* Y0, float* Y1, float* Y2, int row_bytes,
                                const uint4** rows, float** ys, int* ns, int* rs) {
    if (!G)
        return rf_mv_pick_rows<R>(wg * R, W0, W1, W2, N0, N1, N2, Y0, Y1, Y2, row_bytes, rows, ys,
                                  ns, rs);
    constexpr int H = R / 2;
    bool any = false;
#pragma unroll
    for (int e = 0; e < R; e++) {
        const int i = wg * H + e % H;
        const u8* w;
        // Past the last gate row, a pick past every weight (never used).
        const int rg = i < N0 ? (e < H ? i : N0 + i) : N0 + N1 + N2;
        rf_mv_pick(rg, W0, W1, W2, N0, N1, N2, Y0, Y1, Y2, &w, &ys[e], &ns[e], &rs[e]);
        rows[e] = (const uint4*)(w + (size_t)(rs[e] < ns[e] ? rs[e] : 0) * row_bytes);
        any |= rs[e] < ns[e];
    }
    return any;
}

// The G store: a = act(gate) * up for the wave's R/2 outputs (first row i0,
// of n) into Y, then the block's 32 * k outputs as 8-bit blocks.
template <int R>
RF_DEVICE void rf_mv_store_glu(float* acc, int i0, int n, float* Y, RfEpi gl) {
    constexpr int H = R / 2;
    // Outputs of a block: at most 1024 threads / 32 lanes * H.
    __shared__ float vals[32 * H];
    const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;
#pragma unroll
    for (int e = 0; e < R; e++) acc[e] = rf_wave_sum(acc[e]);
    if (lane == 0) {
#pragma unroll
        for (int e = 0; e < H; e++) {
            const float a = rf_glu_act(acc[e], gl.gelu) * acc[e + H];
            vals[wave * H + e] = a;
            if (i0 + e < n) Y[i0 + e] = a;
        }
    }
    __syncthreads();
    // Whole groups of 32 threads take a block each (the block's output count
    // is a multiple of 32): all of a group's lanes shuffle together.
    const int nout = (blockDim.x / RF_WAVE) * H, t = threadIdx.x;
    if (t < nout) {
        const int i = blockIdx.x * nout + t;
        rf_q8_emit1(vals[t], i, i < n, gl.q, gl.ds);
    }
}

// The GLUC store: as the G store, the wave's R/2 outputs a = act(gate) * up
// (first row i0, of n) into Y; then the block counts itself done in its
// group of 32 outputs (a fence first, so that its outputs are visible to
// every block), and the group's last block reads the 32 values back
// (bypassing L1) and writes their 8-bit block, then sets the count back to
// 0 for the next launch. Blocks of independent waves: none waits for
// another block. Blocks of B waves hold B * R / 2 outputs, a divisor of 32.
template <int R>
RF_DEVICE void rf_mv_store_gluc(float* acc, int i0, int n, float* Y, RfEpi gl) {
    constexpr int H = R / 2;
    __shared__ int last;
    const int lane = threadIdx.x % RF_WAVE;
#pragma unroll
    for (int e = 0; e < R; e++) acc[e] = rf_wave_sum(acc[e]);
    if (lane == 0) {
#pragma unroll
        for (int e = 0; e < H; e++)
            if (i0 + e < n) Y[i0 + e] = rf_glu_act(acc[e], gl.gelu) * acc[e + H];
    }
    __syncthreads();
    const int per_block = (int)(blockDim.x / RF_WAVE) * H;
    const int g = blockIdx.x * per_block / 32;
    if (threadIdx.x == 0) {
        __threadfence();
        last = atomicAdd(&gl.cnt[g], 1u) == (u32)(32 / per_block - 1);
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (threadIdx.x < 32) {
        const int i = g * 32 + threadIdx.x;
        const float v = i < n ? *(volatile const float*)(Y + i) : 0.0f;
        rf_q8_emit1(v, i, i < n, gl.q, gl.ds);
        if (threadIdx.x == 0) gl.cnt[g] = 0u;
    }
}

// The ADDNORM store: the decode step's output (or down) projection, the
// residual add and the next RMS norm without a launch of their own. A
// block holds 32 consecutive rows (32 / R row groups of wpr waves; rows a
// multiple of 32): their sums y go to Y as the plain store would, then
// x += y, the 8-bit block of x * w (the norm's weights) *without* the
// norm's factor 1 / sqrt(mean(x^2) + eps), which needs every block's rows,
// and this block's sum of x^2 into part[block]. The mat-vecs that read the
// row apply the factor to their results (rf_mv_xscale). The normalized f32
// row itself is not written.
template <int R>
RF_DEVICE void rf_mv_store_addnorm(float* acc, int sub, int wpr, float* Y, RfEpi ep) {
    __shared__ float part[32][4];
    const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;
    const int wl = wave / wpr;
#pragma unroll
    for (int e = 0; e < R; e++) acc[e] = rf_wave_sum(acc[e]);
    if (lane == 0) {
#pragma unroll
        for (int e = 0; e < R; e++) part[wl * R + e][sub] = acc[e];
    }
    __syncthreads();
    if (threadIdx.x < 32) {
        const int i = threadIdx.x, r = blockIdx.x * 32 + i;
        // The waves of a row in the order rf_matvec_store_n adds them.
        float y = 0.0f;
        for (int k = 0; k < wpr; k++) y += part[i][k];
        Y[r] = y;
        const float v = ep.x[r] + y;
        ep.x[r] = v;
        rf_q8_emit1(v * ep.nw[r], r, true, ep.q, ep.ds);
        float ss = v * v;
        for (int m = 16; m > 0; m >>= 1) ss += RF_SHFL_XOR(ss, m);
        if (i == 0) ep.part[blockIdx.x] = ss;
    }
}

// The results of a rows kernel in mode M, each scaled by xs first
// (rf_mv_xscale): stored (plain), through the GLU or through the residual
// add and norm.
template <int R, int M>
RF_DEVICE void rf_mv_store_mode(float* acc, const int* rs, const int* ns, float* const* ys,
                                int sub, int wpr, float xs, float* Y0, RfEpi ep) {
#pragma unroll
    for (int e = 0; e < R; e++) acc[e] *= xs;
    if constexpr (M == RF_MV_GLU)
        rf_mv_store_glu<R>(acc, rs[0], ns[0], Y0, ep);
    else if constexpr (M == RF_MV_GLUC)
        rf_mv_store_gluc<R>(acc, rs[0], ns[0], Y0, ep);
    else if constexpr (M == RF_MV_ADDNORM)
        rf_mv_store_addnorm<R>(acc, sub, wpr, Y0, ep);
    else
        rf_matvec_store_n<R>(acc, rs, ns, ys, sub, wpr);
}

// Staged tiles: words first .. first + tw - 1 of R rows into the lanes'
// registers (word i in slot i / RF_WAVE of lane i % RF_WAVE), with cache
// hint M…
template <int R, int LW, int M>
RF_DEVICE void rf_tile_load(const uint4* const* rows, size_t first, int tw, int lane,
                            uint4 (*pre)[LW]) {
#pragma unroll
    for (int e = 0; e < R; e++)
#pragma unroll
        for (int u = 0; u < LW; u++) {
            const int i = lane + u * RF_WAVE;
            if (i < tw) pre[e][u] = rf_ld_weight16<M>(rows[e] + first + i);
        }
}

// …and from there into the wave's shared tiles (row e's into st[e]).
template <int R, int LW, int SW>
RF_DEVICE void rf_tile_store(uint4 (*st)[SW], int tw, int lane, uint4 (*pre)[LW]) {
#pragma unroll
    for (int e = 0; e < R; e++)
#pragma unroll
        for (int u = 0; u < LW; u++) {
            const int i = lane + u * RF_WAVE;
            if (i < tw) st[e][i] = pre[e][u];
        }
}

#define RF_MATVEC(name, vdot)                                                             \
    RF_DEVICE void rf_mv_##name(RF_MV_ARGS) {                                       \
        const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;                    \
        const int sub = wave % wpr;                                                              \
        RF_MV_PICK(blockIdx.x * (blockDim.x / RF_WAVE / wpr) + wave / wpr);                      \
        const u8* row = W + (size_t)(r < N ? r : 0) * row_bytes;                                 \
        const int nb = r < N ? K / 32 : 0;                                                       \
        float acc = 0.0f;                                                                        \
        _Pragma("unroll 4") for (int c = sub * RF_WAVE + lane; c < nb; c += wpr * RF_WAVE)      \
            acc += vdot(row, c, xq + c * 8, ds[c]);                                              \
        rf_matvec_store(acc * RF_MV_XSCALE(), r, N, sub, wpr, Y);                                \
    }                                                                                            \
    RF_MV_ENTRIES(name, rf_mv_##name)

RF_MATVEC(q4_0, rf_vdot_q4_0)
RF_MATVEC(q8_0, rf_vdot_q8_0)
RF_MATVEC(q4_k, rf_vdot_q4_k)
RF_MATVEC(q6_k, rf_vdot_q6_k)

// Byte `i` (0..3, run-time) of `w`.
RF_DEVICE int rf_byte(u32 w, int i) { return (int)((w >> (8 * i)) & 0xFF); }

// Q4_K with 16-byte loads: the eight lanes of a wave that share a super-block
// each read one 16-byte piece of its 128 nibble bytes (piece = lane % 8:
// sub-block pair piece / 2, values 16 * (piece % 2) .. +16 of both sub-blocks
// of the pair) and the matching 16 activation bytes of each sub-block, so one
// wave load instruction covers RF_WAVE / 8 super-blocks of the row. Scales
// and minima come from the block's first 16 bytes (one more 16-byte load)
// and are unpacked with shifts (no byte arrays, which would live in local
// memory). Rows must be 16-byte aligned (row bytes are a multiple of 144 and
// the launcher checks the base).
// RPW rows per wave (or per wpr waves): the rows' loads of an iteration are
// issued together and share the activation loads, for more bytes in flight.
template <int RPW>
RF_DEVICE void rf_q4_k_wide(RF_MV_ARGS) {
    const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;
    const int sub = wave % wpr;
    const int rg0 = (blockIdx.x * (blockDim.x / RF_WAVE / wpr) + wave / wpr) * RPW;
    const uint4* rows[RPW];
    float* ys[RPW];
    int ns[RPW], rs[RPW];
    const bool any = rf_mv_pick_rows<RPW>(rg0, W0, W1, W2, N0, N1, N2, Y0, Y1, Y2, row_bytes,
                                          rows, ys, ns, rs);
    const int nsb = any ? K / 256 : 0;
    const int piece = lane & 7, p = piece >> 1, h = piece & 1;
    float acc[RPW];
#pragma unroll
    for (int e = 0; e < RPW; e++) acc[e] = 0.0f;
#pragma unroll 4
    for (int sb = (sub * RF_WAVE + lane) >> 3; sb < nsb; sb += wpr * RF_WAVE / 8) {
        uint4 hdr[RPW], w[RPW];
#pragma unroll
        for (int e = 0; e < RPW; e++) {
            const u8* b = (const u8*)rows[e] + (size_t)sb * 144;
            hdr[e] = *(const uint4*)b;
            w[e] = *(const uint4*)(b + 16 + p * 32 + h * 16);
        }
        const int c_lo = sb * 8 + 2 * p;
        const int4 xl = *(const int4*)(xq + c_lo * 8 + h * 4);
        const int4 xh = *(const int4*)(xq + (c_lo + 1) * 8 + h * 4);
        const float2 dl = ds[c_lo], dh = ds[c_lo + 1];
#pragma unroll
        for (int e = 0; e < RPW; e++) {
            int sl = 0, sh = 0;
            sl = RF_DP4A(w[e].x & 0x0F0F0F0F, xl.x, sl);
            sl = RF_DP4A(w[e].y & 0x0F0F0F0F, xl.y, sl);
            sl = RF_DP4A(w[e].z & 0x0F0F0F0F, xl.z, sl);
            sl = RF_DP4A(w[e].w & 0x0F0F0F0F, xl.w, sl);
            sh = RF_DP4A((w[e].x >> 4) & 0x0F0F0F0F, xh.x, sh);
            sh = RF_DP4A((w[e].y >> 4) & 0x0F0F0F0F, xh.y, sh);
            sh = RF_DP4A((w[e].z >> 4) & 0x0F0F0F0F, xh.z, sh);
            sh = RF_DP4A((w[e].w >> 4) & 0x0F0F0F0F, xh.w, sh);
            // Six-bit scale and minimum of sub-blocks j = 2p and 2p + 1
            // (bytes 4..15 of the block: hdr.y, hdr.z, hdr.w), as
            // rf_scale_min_k4.
            int sc[2], mn[2];
#pragma unroll
            for (int f = 0; f < 2; f++) {
                const int j = 2 * p + f;
                if (j < 4) {
                    sc[f] = rf_byte(hdr[e].y, j) & 63;
                    mn[f] = rf_byte(hdr[e].z, j) & 63;
                } else {
                    const int hi = rf_byte(hdr[e].w, j - 4);
                    sc[f] = (hi & 0xF) | ((rf_byte(hdr[e].y, j - 4) >> 6) << 4);
                    mn[f] = (hi >> 4) | ((rf_byte(hdr[e].z, j - 4) >> 6) << 4);
                }
            }
            const float d = rf_h2f((u16)(hdr[e].x & 0xFFFF));
            const float dmin = rf_h2f((u16)(hdr[e].x >> 16));
            acc[e] += d * ((float)sc[0] * dl.x * (float)sl + (float)sc[1] * dh.x * (float)sh);
            // The minima apply once per sub-block: on the first half's lane.
            if (h == 0) acc[e] -= dmin * ((float)mn[0] * dl.y + (float)mn[1] * dh.y);
        }
    }
    const float xs = RF_MV_XSCALE();
#pragma unroll
    for (int e = 0; e < RPW; e++) acc[e] *= xs;
    rf_matvec_store_n<RPW>(acc, rs, ns, ys, sub, wpr);
}

RF_MV_ENTRIES(q4_k_wide, rf_q4_k_wide<1>)

// Q6_K rows staged through shared memory. Q6_K blocks (210 bytes) are only
// 2-byte aligned, but eight of them (1680 bytes, 2048 values) are a whole
// number of 16-byte words, so a row of K = 2048 * n values (16-byte aligned,
// the launcher checks) is read as tiles of 105 words with fully used 16-byte
// loads. The next tile's words are loaded into registers while the lanes
// multiply the current one from shared memory. Waves of a row take every
// wpr-th tile.
//
// In a tile, RF_WAVE / 8 lanes share a super-block: lane slice s takes the
// value columns l0 .. l0 + CPL of one half h (CPL = 64 / lanes per block)
// for all four 32-value chunks of that half, so each byte it reads (ql of
// both nibbles, qh of all four 2-bit pairs) is used once. Bytes come from
// shared memory as aligned 32-bit words joined by a funnel shift (blocks
// start at even addresses only), the six-bit values become signed (q - 32)
// bytes in registers, and one dp4a takes four of them.
#define RF_Q6_TILE_WORDS 105
#define RF_Q6_LP (RF_WAVE / 8)
#define RF_Q6_CPL (64 / RF_Q6_LP)
#define RF_Q6_NW (RF_Q6_CPL / 4)

// N 32-bit words from byte offset `off` (even) of the 4-byte aligned `t`.
template <int N>
RF_DEVICE void rf_lds_words(const u32* t, int off, u32* out) {
    const u32* a = t + (off >> 2);
    const int sh = (off & 2) * 8;
    u32 w[N + 1];
#pragma unroll
    for (int i = 0; i <= N; i++) w[i] = a[i];
#pragma unroll
    for (int i = 0; i < N; i++)
        out[i] = rf_funnel(w[i], w[i + 1], sh);
}

// N activation words at p (16-byte aligned for N = 4, 8-byte for N = 2).
template <int N>
RF_DEVICE void rf_ld_words(const int* __restrict__ p, int* out) {
#pragma unroll
    for (int i = 0; i < N; i++) out[i] = p[i];
}
template <>
RF_DEVICE void rf_ld_words<4>(const int* __restrict__ p, int* out) {
    const int4 v = *(const int4*)p;
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
}
template <>
RF_DEVICE void rf_ld_words<2>(const int* __restrict__ p, int* out) {
    const int2 v = *(const int2*)p;
    out[0] = v.x, out[1] = v.y;
}

// Four six-bit values (0..63) per word to signed bytes q - 32.
RF_DEVICE int rf_q6_signed(u32 v) {
    return (int)(((v | 0x80808080u) - 0x20202020u) ^ 0x80808080u);
}

// The activations of lane slice `slice` of global super-block `sbg` (four
// 32-value chunks of one half, the slice's columns) and their scales.
struct RfQ6X {
    int x[4][RF_Q6_NW];
    float d[4];
};

RF_DEVICE RfQ6X rf_q6_x(int slice, int sbg, const int* __restrict__ xq,
                        const float2* __restrict__ ds) {
    const int col = slice * RF_Q6_CPL, h = col >> 5, l0 = col & 31;
    const int c0 = sbg * 8 + h * 4;
    RfQ6X x;
    // 16-byte loads when the slice is 16 values (wave32).
#pragma unroll
    for (int k = 0; k < 4; k++) {
        rf_ld_words<RF_Q6_NW>(xq + (c0 + k) * 8 + l0 / 4, x.x[k]);
        x.d[k] = ds[c0 + k].x;
    }
    return x;
}

// The slice of super-block j of the staged tile `st` taken by lane slice
// `slice`, against its activations `x` (rf_q6_x).
RF_DEVICE float rf_q6_slice(const u32* st, int j, int slice, const RfQ6X& x) {
    const int col = slice * RF_Q6_CPL, h = col >> 5, l0 = col & 31;
    const int base = j * 210;
    u32 lo[RF_Q6_NW], hi[RF_Q6_NW], qh[RF_Q6_NW], sw[2], dw[1];
    rf_lds_words<RF_Q6_NW>(st, base + h * 64 + l0, lo);
    rf_lds_words<RF_Q6_NW>(st, base + h * 64 + 32 + l0, hi);
    rf_lds_words<RF_Q6_NW>(st, base + 128 + h * 32 + l0, qh);
    rf_lds_words<2>(st, base + 192 + h * 8, sw);
    rf_lds_words<1>(st, base + 208, dw);
    int dot[4] = {0, 0, 0, 0};
#pragma unroll
    for (int i = 0; i < RF_Q6_NW; i++) {
        const u32 q4 = qh[i];
        dot[0] = RF_DP4A(rf_q6_signed((lo[i] & 0x0F0F0F0Fu) | ((q4 << 4) & 0x30303030u)),
                         x.x[0][i], dot[0]);
        dot[1] = RF_DP4A(rf_q6_signed((hi[i] & 0x0F0F0F0Fu) | ((q4 << 2) & 0x30303030u)),
                         x.x[1][i], dot[1]);
        dot[2] = RF_DP4A(rf_q6_signed(((lo[i] >> 4) & 0x0F0F0F0Fu) | (q4 & 0x30303030u)),
                         x.x[2][i], dot[2]);
        dot[3] = RF_DP4A(rf_q6_signed(((hi[i] >> 4) & 0x0F0F0F0Fu) | ((q4 >> 2) & 0x30303030u)),
                         x.x[3][i], dot[3]);
    }
    // Scale of chunk k for these columns: byte 2k + l0 / 16 of the eight.
    const int sb = (l0 >> 4) * 8;
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const int sc = (int)(i8)((sw[k >> 1] >> ((k & 1) * 16 + sb)) & 0xFF);
        s += x.d[k] * (float)(sc * dot[k]);
    }
    return rf_h2f((u16)(dw[0] & 0xFFFF)) * s;
}

// RF_MV_L2PF = P > 0 (opt-in, through ROCMFORGE_GPU_KERNEL_DEFINES): before
// its grid wait a rows kernel asks L2 for the lines of its next P passes
// (the first one is already loaded into registers there), so that while
// the launch before it still runs (attention before the output projection,
// the GLU before the down one) more of its weights stream in, and the
// passes after the wait find them in L2. `span` bytes a row per pass from
// byte `first` of each row, whose rows are `row_len` bytes; lanes take one
// 128-byte line each. No registers held; never past a row's end.
#ifndef RF_MV_L2PF
#define RF_MV_L2PF 0
#endif
template <int R>
RF_DEVICE void rf_mv_prefetch_pass(const uint4* const* rows, size_t first, int span, size_t row_len,
                                   int lane) {
    const size_t off = first + (size_t)lane * 128;
    if (lane * 128 >= span + 128 || off >= row_len) return;
#pragma unroll
    for (int e = 0; e < R; e++) RF_PREFETCH_L2((const u8*)rows[e] + off);
}

// R rows per wave (group): the lanes take the same slices of every row's
// tile, so each activation load serves R rows. Mode M as the rows kernels'
// (rf_mv_store_mode). The plain kernels (blocks of four waves) stage their
// tiles in static shared memory; the residual-add + norm twin's blocks of
// 32 rows (32 / R row groups of wpr waves) need more than the 48 KiB a
// block may hold statically (16 waves of two 1,696-byte tiles: 54 KiB), so
// it stages them in dynamic shared memory, R tiles a wave.
template <int R, int M>
RF_DEVICE void rf_q6_k_staged(RF_MV_ARGS, RfEpi ep) {
    constexpr int LW = (RF_Q6_TILE_WORDS + RF_WAVE - 1) / RF_WAVE;
    constexpr int SW = RF_Q6_TILE_WORDS + 1;
    const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;
    uint4 (*st)[SW];  // this wave's R tiles
    if constexpr (M == RF_MV_ADDNORM) {
        extern __shared__ uint4 rf_q6_dyn[];
        st = (uint4 (*)[SW])(rf_q6_dyn + (size_t)wave * R * SW);
    } else {
        __shared__ uint4 stage[4][R][SW];
        st = stage[wave];
    }
    const int sub = wave % wpr;
    const int rg0 = (((int)blockIdx.x - ep.boff) * (blockDim.x / RF_WAVE / wpr) + wave / wpr) * R;
    const uint4* rows[R];
    float* ys[R];
    int ns[R], rs[R];
    const bool any = rf_mv_pick_rows<R>(rg0, W0, W1, W2, N0, N1, N2, Y0, Y1, Y2, row_bytes, rows,
                                        ys, ns, rs);
    const int n_tiles = any ? K / 2048 : 0;
    uint4 pre[R][LW];
    float acc[R];
#pragma unroll
    for (int e = 0; e < R; e++) acc[e] = 0.0f;
    constexpr int TW = RF_Q6_TILE_WORDS;
    int t = sub;
    if (t < n_tiles) rf_tile_load<R, LW, 3>(rows, (size_t)t * TW, TW, lane, pre);
#if RF_MV_L2PF > 0
#pragma unroll
    for (int a = 1; a <= RF_MV_L2PF; a++)
        rf_mv_prefetch_pass<R>(rows, (size_t)(sub + a * wpr) * TW * 16, TW * 16,
                               (size_t)n_tiles * TW * 16, lane);
#endif
    RF_GRID_SYNC();  // the activations come from the kernel before
    const float xs = RF_MV_XSCALE();
    for (; t < n_tiles; t += wpr) {
        RF_WAVE_SYNC();
        rf_tile_store<R, LW, SW>(st, TW, lane, pre);
        RF_WAVE_SYNC();
        if (t + wpr < n_tiles) rf_tile_load<R, LW, 3>(rows, (size_t)(t + wpr) * TW, TW, lane, pre);
        const int j = lane / RF_Q6_LP, slice = lane % RF_Q6_LP;
        const RfQ6X x = rf_q6_x(slice, t * 8 + j, xq, ds);
#pragma unroll
        for (int e = 0; e < R; e++)
            acc[e] += rf_q6_slice((const u32*)st[e], j, slice, x);
    }
    rf_mv_store_mode<R, M>(acc, rs, ns, ys, sub, wpr, xs, Y0, ep);
}

#define RF_Q6_STAGED(name, R)                                                                    \
    RF_DEVICE void rf_mv_##name(RF_MV_ARGS) {                                                    \
        rf_q6_k_staged<R, RF_MV_PLAIN>(RF_MV_PASS, RfEpi{});                                     \
    }                                                                                            \
    RF_MV_ENTRIES_SYNCED(name, rf_mv_##name)
RF_Q6_STAGED(q6_k_staged, 1)
RF_Q6_STAGED(q6_k_staged2, 2)
RF_Q6_STAGED(q6_k_staged4, 4)
// The residual-add + norm twin of the two-row kernel (dynamic shared memory:
// waves per block * 2 * (RF_Q6_TILE_WORDS + 1) * 16 bytes).
extern "C" __global__ void matvec_q6_k_staged2_addnorm(RF_MV_ARGS RF_MV_ADDNORM_ARGS) {
    RF_MV_PRE_SYNC();
    rf_q6_k_staged<2, RF_MV_ADDNORM>(RF_MV_PASS RF_MV_ADDNORM_PASS);
}

// Q4_K, one sub-block pair per lane: the four lanes of a super-block each
// take pair p = lane % 4 (the 32 nibble bytes at 16 + 32p: low nibbles are
// sub-block 2p, high nibbles 2p + 1) with two 16-byte loads, so a lane
// decodes one scale/minimum pair per 32 weight bytes (the `wide` kernel
// above: per 16). Scales and minima of all eight sub-blocks are unpacked
// four at a time with word masks (bytes 4..15 of the block: hdr.y, hdr.z,
// hdr.w). A wave covers RF_WAVE / 4 super-blocks per pass; the weight loads
// of NP passes are issued before any of them is used. Rows must be 16-byte
// aligned, ds too (the launcher checks).
// The activations of sub-blocks c and c + 1 (c even) for rf_q4_k_pair_dot.
struct RfQ4kX {
    int4 a, b, c, d;  // values 0..15, 16..31 of sub-block c, then of c + 1
    float4 dd;        // (d, s) of sub-block c, then of c + 1
};

RF_DEVICE RfQ4kX rf_q4_k_pair_x(const int* __restrict__ xq, const float2* __restrict__ ds, int c) {
    const int4* x4 = (const int4*)(xq + c * 8);
    RfQ4kX x;
    x.a = x4[0], x.b = x4[1], x.c = x4[2], x.d = x4[3];
    x.dd = *(const float4*)(ds + c);
    return x;
}

RF_DEVICE float rf_q4_k_pair_dot(uint4 hdr, uint4 w0, uint4 w1, int p, const RfQ4kX& x) {
    const u32 m = 0x0F0F0F0Fu;
    int sl = 0, sh = 0;
    sl = RF_DP4A(w0.x & m, x.a.x, sl);
    sl = RF_DP4A(w0.y & m, x.a.y, sl);
    sl = RF_DP4A(w0.z & m, x.a.z, sl);
    sl = RF_DP4A(w0.w & m, x.a.w, sl);
    sl = RF_DP4A(w1.x & m, x.b.x, sl);
    sl = RF_DP4A(w1.y & m, x.b.y, sl);
    sl = RF_DP4A(w1.z & m, x.b.z, sl);
    sl = RF_DP4A(w1.w & m, x.b.w, sl);
    sh = RF_DP4A((w0.x >> 4) & m, x.c.x, sh);
    sh = RF_DP4A((w0.y >> 4) & m, x.c.y, sh);
    sh = RF_DP4A((w0.z >> 4) & m, x.c.z, sh);
    sh = RF_DP4A((w0.w >> 4) & m, x.c.w, sh);
    sh = RF_DP4A((w1.x >> 4) & m, x.d.x, sh);
    sh = RF_DP4A((w1.y >> 4) & m, x.d.y, sh);
    sh = RF_DP4A((w1.z >> 4) & m, x.d.z, sh);
    sh = RF_DP4A((w1.w >> 4) & m, x.d.w, sh);
    // Sub-blocks 0..3: six low bits of bytes 0..3 (scales) and 4..7
    // (minima); 4..7: the nibbles of bytes 8..11 with bits 6..7 of bytes
    // 0..3 (scales) or 4..7 (minima) above them.
    const bool lo = p < 2;
    const u32 scw = lo ? hdr.y & 0x3F3F3F3Fu : (hdr.w & m) | ((hdr.y >> 2) & 0x30303030u);
    const u32 mnw = lo ? hdr.z & 0x3F3F3F3Fu : ((hdr.w >> 4) & m) | ((hdr.z >> 2) & 0x30303030u);
    const int at = (p & 1) * 16;
    const float sc0 = (float)((scw >> at) & 0xFF), sc1 = (float)((scw >> (at + 8)) & 0xFF);
    const float mn0 = (float)((mnw >> at) & 0xFF), mn1 = (float)((mnw >> (at + 8)) & 0xFF);
    const float d = rf_h2f((u16)(hdr.x & 0xFFFF)), dmin = rf_h2f((u16)(hdr.x >> 16));
    return d * (sc0 * x.dd.x * (float)sl + sc1 * x.dd.z * (float)sh) -
           dmin * (mn0 * x.dd.y + mn1 * x.dd.w);
}

template <int NP>
RF_DEVICE void rf_q4_k_pair(RF_MV_ARGS) {
    const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;
    const int sub = wave % wpr;
    RF_MV_PICK(blockIdx.x * (blockDim.x / RF_WAVE / wpr) + wave / wpr);
    const uint4* row = (const uint4*)(W + (size_t)(r < N ? r : 0) * row_bytes);
    const int nsb = r < N ? K / 256 : 0;
    const int p = lane & 3, step = wpr * (RF_WAVE / 4);
    float acc = 0.0f;
    for (int sb0 = sub * (RF_WAVE / 4) + (lane >> 2); sb0 < nsb; sb0 += NP * step) {
        uint4 hdr[NP], w0[NP], w1[NP];
#pragma unroll
        for (int i = 0; i < NP; i++) {
            const int sb = sb0 + i * step;
            if (sb < nsb) {
                const uint4* b = row + (size_t)sb * 9;  // 144 bytes = 9 words
                hdr[i] = b[0];
                w0[i] = b[1 + 2 * p];
                w1[i] = b[2 + 2 * p];
            }
        }
#pragma unroll
        for (int i = 0; i < NP; i++) {
            const int sb = sb0 + i * step;
            if (sb < nsb)
                acc += rf_q4_k_pair_dot(hdr[i], w0[i], w1[i], p,
                                        rf_q4_k_pair_x(xq, ds, sb * 8 + 2 * p));
        }
    }
    rf_matvec_store(acc * RF_MV_XSCALE(), r, N, sub, wpr, Y);
}

RF_MV_ENTRIES(q4_k_pair2, rf_q4_k_pair<2>)
RF_MV_ENTRIES(q4_k_pair4, rf_q4_k_pair<4>)

// rf_q4_k_pair for R rows per wave (group): per pass the activations are
// loaded once and used for all R rows. Activation bytes outnumber weight
// bytes (one per value against a half), so with one row per wave the L1
// traffic of the activations, not DRAM, bounds the kernel.
#ifndef RF_MV_PF
#define RF_MV_PF 0
#endif

// Super-block sb's header and this lane's pair of nibble words, of R rows.
template <int R>
RF_DEVICE void rf_q4_k_rows_load(const uint4* const* rows, int sb, int p, uint4* hdr, uint4* w0,
                                 uint4* w1) {
#pragma unroll
    for (int e = 0; e < R; e++) {
        const uint4* b = rows[e] + (size_t)sb * 9;  // 144 bytes = 9 words
        hdr[e] = rf_ld_weight16<3>(b);
        w0[e] = rf_ld_weight16<3>(b + 1 + 2 * p);
        w1[e] = rf_ld_weight16<3>(b + 2 + 2 * p);
    }
}

template <int R, int M>
RF_DEVICE void rf_q4_k_rows(RF_MV_ARGS, RfEpi gl) {
    const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;
    const int sub = wave % wpr;
    const int wg = ((int)blockIdx.x - gl.boff) * (blockDim.x / RF_WAVE / wpr) + wave / wpr;
    const uint4* rows[R];
    float* ys[R];
    int ns[R], rs[R];
    constexpr bool G = M == RF_MV_GLU || M == RF_MV_GLUC;
    const bool any = rf_mv_pick_group<R, G>(wg, W0, W1, W2, N0, N1, N2, Y0, Y1, Y2, row_bytes,
                                            rows, ys, ns, rs);
    const int nsb = any ? K / 256 : 0;
    const int p = lane & 3, step = wpr * (RF_WAVE / 4);
    float acc[R];
#pragma unroll
    for (int e = 0; e < R; e++) acc[e] = 0.0f;
    uint4 hdr[R], w0[R], w1[R];
    const int sb_first = sub * (RF_WAVE / 4) + (lane >> 2);
    if (sb_first < nsb) rf_q4_k_rows_load<R>(rows, sb_first, p, hdr, w0, w1);
#if RF_MV_L2PF > 0
#pragma unroll
    for (int a = 1; a <= RF_MV_L2PF; a++)
        rf_mv_prefetch_pass<R>(rows, (size_t)(sub * (RF_WAVE / 4) + a * step) * 144,
                               (RF_WAVE / 4) * 144, (size_t)nsb * 144, lane);
#endif
    RF_GRID_SYNC();  // the activations come from the kernel before
    const float xs = RF_MV_XSCALE();
    for (int sb = sb_first; sb < nsb; sb += step) {
#if RF_MV_PF
        // The next pass's weights are requested before this pass's math.
        uint4 nh[R], n0[R], n1[R];
        if (sb + step < nsb) rf_q4_k_rows_load<R>(rows, sb + step, p, nh, n0, n1);
#endif
        const RfQ4kX x = rf_q4_k_pair_x(xq, ds, sb * 8 + 2 * p);
#pragma unroll
        for (int e = 0; e < R; e++) acc[e] += rf_q4_k_pair_dot(hdr[e], w0[e], w1[e], p, x);
#if RF_MV_PF
#pragma unroll
        for (int e = 0; e < R; e++) hdr[e] = nh[e], w0[e] = n0[e], w1[e] = n1[e];
#else
        if (sb + step < nsb) rf_q4_k_rows_load<R>(rows, sb + step, p, hdr, w0, w1);
#endif
    }
    rf_mv_store_mode<R, M>(acc, rs, ns, ys, sub, wpr, xs, Y0, gl);
}

// The entry points of a rows body (a template on the mode M): plain and
// tail (as RF_MV_ENTRIES_SYNCED), matvec_<name>_glu and
// matvec_<name>_addnorm.
// RF_ADDNORM_MAXNREG=n (through ROCMFORGE_GPU_KERNEL_DEFINES, for
// measurements): the `_addnorm` kernels capped at n registers a thread
// (NVIDIA), so that their 16-wave blocks leave room on a compute unit for
// the next launch's first blocks (q+k+v or gate+up, which load their
// first weights before their grid wait) instead of taking all of it.
#ifdef RF_ADDNORM_MAXNREG
#define RF_ADDNORM_BOUNDS RF_MAXNREG(RF_ADDNORM_MAXNREG)
#else
#define RF_ADDNORM_BOUNDS
#endif
#define RF_MV_ROWS_ENTRIES(name, body)                                                           \
    RF_DEVICE void rf_mv_##name(RF_MV_ARGS) { body<RF_MV_PLAIN>(RF_MV_PASS, RfEpi{}); }          \
    RF_MV_ENTRIES_SYNCED(name, rf_mv_##name)                                                     \
    extern "C" __global__ void matvec_##name##_glu(RF_MV_ARGS RF_MV_GLU_ARGS) {                  \
        RF_MV_PRE_SYNC();                                                                        \
        body<RF_MV_GLU>(RF_MV_PASS RF_MV_GLU_PASS);                                              \
    }                                                                                            \
    extern "C" __global__ void RF_ADDNORM_BOUNDS matvec_##name##_addnorm(RF_MV_ARGS              \
                                                                         RF_MV_ADDNORM_ARGS) {   \
        RF_MV_PRE_SYNC();                                                                        \
        body<RF_MV_ADDNORM>(RF_MV_PASS RF_MV_ADDNORM_PASS);                                      \
    }                                                                                            \
    extern "C" __global__ void matvec_##name##_gluc(RF_MV_ARGS RF_MV_GLUC_ARGS) {                \
        RF_MV_PRE_SYNC();                                                                        \
        body<RF_MV_GLUC>(RF_MV_PASS RF_MV_GLUC_PASS);                                            \
    }
RF_DEVICE void rf_mv_q4_k_rows2_plain(RF_MV_ARGS) {
    rf_q4_k_rows<2, RF_MV_PLAIN>(RF_MV_PASS, RfEpi{});
}
template <int M>
RF_DEVICE void rf_q4_k_rows4(RF_MV_ARGS, RfEpi gl) {
    rf_q4_k_rows<4, M>(RF_MV_PASS, gl);
}
RF_MV_ENTRIES_SYNCED(q4_k_rows2, rf_mv_q4_k_rows2_plain)
RF_MV_ROWS_ENTRIES(q4_k_rows4, rf_q4_k_rows4)

// Two formats in one launch (a decode step's q and k in Q4_K with a Q6_K v,
// as in Q4_K_M files): blocks below B0 run the four-row Q4_K body over W0
// and W1 (N0, N1 rows of row_bytes, wpr waves a row), the others the
// two-row staged Q6_K body over W2 (N2 rows of row_bytes2, wpr2 waves a
// row), both against the same activations. One launch instead of two.
extern "C" __global__ void matvec_q4_k_rows4_q6_k_staged2(RF_MV_ARGS, int row_bytes2, int wpr2,
                                                          int B0) {
    RF_MV_PRE_SYNC();
    if ((int)blockIdx.x < B0) {
        rf_q4_k_rows<4, RF_MV_PLAIN>(W0, W1, W1, N0, N1, 0, Y0, Y1, Y1, row_bytes, K, xq, ds, wpr,
                                     XSC, XSC_N, XSC_EPS, RfEpi{});
    } else {
        RfEpi ep{};
        ep.boff = B0;
        rf_q6_k_staged<2, RF_MV_PLAIN>(W2, W2, W2, N2, 0, 0, Y2, Y2, Y2, row_bytes2, K, xq, ds, wpr2,
                                       XSC, XSC_N, XSC_EPS, ep);
    }
}

// Q4_0 and Q8_0 rows staged through shared memory. Their blocks (18 and 34
// bytes) are only 2-byte aligned, and loading them in place takes a 32-bit
// load per four bytes, each touching many cache sectors across the wave
// (the kernels above are bound by L1 there, not by DRAM). Eight blocks are
// a whole number of 16-byte words, so a row of K = 256 * n values (16-byte
// aligned, the launcher checks) is read as tiles of TB blocks (Q4_0: 128
// blocks = 144 words, Q8_0: 64 = 136 words) with 16-byte loads, every byte
// once; the lanes then take whole blocks from shared memory. The next
// tile's words are loaded while the current one is multiplied. Waves of a
// row take every wpr-th tile; the last tile of a row may be partial.
#define RF_LS_LW 5  // 16-byte words per lane and tile (both formats)

RF_DEVICE float rf_lds_q4_0(const u32* st, int b, int4 xa, int4 xb, float2 ds) {
    u32 w[4];
    rf_lds_words<4>(st, b * 18 + 2, w);
    const float d = rf_h2f(((const u16*)st)[b * 9]);
    int s = 0;
    s = RF_DP4A(w[0] & 0x0F0F0F0F, xa.x, s);
    s = RF_DP4A(w[1] & 0x0F0F0F0F, xa.y, s);
    s = RF_DP4A(w[2] & 0x0F0F0F0F, xa.z, s);
    s = RF_DP4A(w[3] & 0x0F0F0F0F, xa.w, s);
    s = RF_DP4A((w[0] >> 4) & 0x0F0F0F0F, xb.x, s);
    s = RF_DP4A((w[1] >> 4) & 0x0F0F0F0F, xb.y, s);
    s = RF_DP4A((w[2] >> 4) & 0x0F0F0F0F, xb.z, s);
    s = RF_DP4A((w[3] >> 4) & 0x0F0F0F0F, xb.w, s);
    return d * (ds.x * (float)s - 8.0f * ds.y);
}

RF_DEVICE float rf_lds_q8_0(const u32* st, int b, int4 xa, int4 xb, float2 ds) {
    u32 w[8];
    rf_lds_words<8>(st, b * 34 + 2, w);
    const float d = rf_h2f(((const u16*)st)[b * 17]);
    int s = 0;
    s = RF_DP4A(w[0], xa.x, s);
    s = RF_DP4A(w[1], xa.y, s);
    s = RF_DP4A(w[2], xa.z, s);
    s = RF_DP4A(w[3], xa.w, s);
    s = RF_DP4A(w[4], xb.x, s);
    s = RF_DP4A(w[5], xb.y, s);
    s = RF_DP4A(w[6], xb.z, s);
    s = RF_DP4A(w[7], xb.w, s);
    return d * ds.x * (float)s;
}

// BB bytes per block, TB blocks per tile (TB * BB a multiple of 16, at
// most RF_LS_LW * RF_WAVE * 16 bytes), R rows per wave (group): the lanes
// take the same blocks of every row, so each activation load serves R rows.
template <int BB, int TB, int R>
RF_DEVICE void rf_legacy_staged(RF_MV_ARGS) {
    constexpr int TW = TB * BB / 16;
    // + 1: the funnel reads a word past a tile's last block.
    __shared__ uint4 stage[4][R][TW + 1];
    const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;
    const int sub = wave % wpr;
    const int rg0 = (blockIdx.x * (blockDim.x / RF_WAVE / wpr) + wave / wpr) * R;
    const uint4* rows[R];
    float* ys[R];
    int ns[R], rs[R];
    const bool any = rf_mv_pick_rows<R>(rg0, W0, W1, W2, N0, N1, N2, Y0, Y1, Y2, row_bytes, rows,
                                        ys, ns, rs);
    const int row_words = any ? row_bytes / 16 : 0;
    const int n_tiles = (row_words + TW - 1) / TW;
    uint4 pre[R][RF_LS_LW];
    float acc[R];
#pragma unroll
    for (int e = 0; e < R; e++) acc[e] = 0.0f;
    int t = sub;
    if (t < n_tiles)
        rf_tile_load<R, RF_LS_LW, 2>(rows, (size_t)t * TW, min(TW, row_words - t * TW), lane, pre);
    RF_GRID_SYNC();  // the activations come from the kernel before
    const float xs = RF_MV_XSCALE();
    for (; t < n_tiles; t += wpr) {
        const int tw = min(TW, row_words - t * TW);
        RF_WAVE_SYNC();
        rf_tile_store<R, RF_LS_LW, TW + 1>(stage[wave], tw, lane, pre);
        RF_WAVE_SYNC();
        const int tn = t + wpr;
        if (tn < n_tiles)
            rf_tile_load<R, RF_LS_LW, 2>(rows, (size_t)tn * TW, min(TW, row_words - tn * TW), lane,
                                         pre);
        const int nb = tw * 16 / BB;
        for (int b = lane; b < nb; b += RF_WAVE) {
            const int c = t * TB + b;
            const int4 xa = *(const int4*)(xq + c * 8), xb = *(const int4*)(xq + c * 8 + 4);
            const float2 dx = ds[c];
#pragma unroll
            for (int e = 0; e < R; e++) {
                const u32* st = (const u32*)stage[wave][e];
                acc[e] += BB == 18 ? rf_lds_q4_0(st, b, xa, xb, dx) : rf_lds_q8_0(st, b, xa, xb, dx);
            }
        }
    }
#pragma unroll
    for (int e = 0; e < R; e++) acc[e] *= xs;
    rf_matvec_store_n<R>(acc, rs, ns, ys, sub, wpr);
}

#define RF_LEGACY_STAGED(name, BB, TB, R)                                                    \
    RF_DEVICE void rf_mv_##name(RF_MV_ARGS) { rf_legacy_staged<BB, TB, R>(RF_MV_PASS); }     \
    RF_MV_ENTRIES_SYNCED(name, rf_mv_##name)
RF_LEGACY_STAGED(q4_0_staged, 18, 128, 1)
RF_LEGACY_STAGED(q4_0_staged2, 18, 128, 2)
RF_LEGACY_STAGED(q8_0_staged, 34, 64, 1)
RF_LEGACY_STAGED(q8_0_staged2, 34, 64, 2)

// Q4_0 and Q8_0 rows read in place with 16-byte loads, without staging.
// Eight blocks (144 or 272 bytes) are a whole number of 16-byte words, so
// in a row of K = 256 * n values (16-byte aligned, the launcher checks)
// every group of eight blocks starts on a 16-byte boundary. Eight lanes
// share a group, lane p block p: block p starts BB * p bytes into the group,
// 2p bytes into its first 16-byte word (BB = 18 or 34 is 2 mod 16), so the
// lane loads the NU / 4 words that hold it (never past the group) and
// picks the scale and quants out of them with word rotations by run-time
// amounts made of compile-time steps (no arrays indexed at run time, which
// would live in local memory). R rows per wave share each activation load;
// the first group's weights are requested before the grid-dependency wait.
//
// BB = 36 is a pair of Q4_0 blocks (64 values) per lane: a group of eight
// lanes takes sixteen blocks (288 bytes, 18 words), lane p the pair at byte
// 36p, which starts 4 * (p & 3) bytes into its first word and ends within
// its third, so a lane loads three words as for Q8_0 and gets twice the
// bytes of the single Q4_0 block per pass (half the passes; rows of K =
// 512 * n values).
template <int BB>
struct RfLegacyDirect {
    static constexpr int NU = BB == 18 ? 8 : 12;  // 32-bit words a lane loads
    static constexpr int NQ = BB == 36 ? 4 : (BB - 2) / 4;  // quant words of a block
    static constexpr int GW = BB / 2;             // 16-byte words of a group
    static constexpr int U = BB == 36 ? 2 : 1;    // 32-value blocks per lane
};

// The two Q4_0 blocks of lane p (0..7) of a pair group from the words
// u[0..12) that start at the 16-byte word holding the pair's first byte:
// the pair starts at word p & 3 (rotated down to word 0 here by
// compile-time steps), block 0 as d0 = bytes 0-1 and its quants at bytes
// 2-17 (16 bits into word 0), block 1 as d1 = bytes 18-19 (the upper half
// of word 4) and its quants in words 5-8.
RF_DEVICE void rf_legacy_pair_blocks(u32* u, int p, int* q0, int* q1, float* d0, float* d1) {
    const int o = p & 3;
#pragma unroll
    for (int b = 2; b >= 1; b >>= 1) {
        if (o & b) {
#pragma unroll
            for (int i = 0; i < 12; i++) u[i] = i + b < 12 ? u[i + b] : 0u;
        }
    }
    *d0 = rf_h2f((u16)(u[0] & 0xFFFF));
    *d1 = rf_h2f((u16)(u[4] >> 16));
#pragma unroll
    for (int j = 0; j < 4; j++) {
        q0[j] = (int)rf_funnel(u[j], u[j + 1], 16);
        q1[j] = (int)u[5 + j];
    }
}

// The scale and quant words of block p (0..7) from the words u[0..NU) that
// start at the 16-byte word holding its first byte (u[NU] must be 0).
template <int BB>
RF_DEVICE float rf_legacy_direct_block(u32* u, int p, int* q) {
    constexpr int NU = RfLegacyDirect<BB>::NU, NQ = RfLegacyDirect<BB>::NQ;
    // The scale: bytes 2p, 2p + 1, in word p / 2 (its upper half for odd p).
    const int dwi = p >> 1;
    u32 dw = u[0];
    dw = dwi == 1 ? u[1] : dw;
    dw = dwi == 2 ? u[2] : dw;
    dw = dwi == 3 ? u[3] : dw;
    const float d = rf_h2f((u16)((dw >> ((p & 1) * 16)) & 0xFFFF));
    // The quants from byte 2p + 2: word (p + 1) / 2, 16 bits in for even p.
    const int r = (p + 1) >> 1;  // 0..4
#pragma unroll
    for (int b = 4; b >= 1; b >>= 1) {
        if (r & b) {
#pragma unroll
            for (int i = 0; i <= NU; i++) u[i] = i + b <= NU ? u[i + b] : 0u;
        }
    }
    const int sh = (p & 1) ? 0 : 16;
#pragma unroll
    for (int j = 0; j < NQ; j++) q[j] = (int)rf_funnel(u[j], u[j + 1], sh);
    return d;
}

// d_w * (sum of the block's quants times the activations), as rf_vdot_q4_0
// and rf_vdot_q8_0 (Q4_0: low nibbles are values 0..15, high ones 16..31).
template <int BB>
RF_DEVICE float rf_legacy_direct_dot(const int* q, float d, int4 xa, int4 xb, float2 dx);

template <>
RF_DEVICE float rf_legacy_direct_dot<18>(const int* q, float d, int4 xa, int4 xb, float2 dx) {
    const u32 m = 0x0F0F0F0Fu;
    int s = 0;
    s = RF_DP4A(q[0] & m, xa.x, s);
    s = RF_DP4A(q[1] & m, xa.y, s);
    s = RF_DP4A(q[2] & m, xa.z, s);
    s = RF_DP4A(q[3] & m, xa.w, s);
    s = RF_DP4A((q[0] >> 4) & m, xb.x, s);
    s = RF_DP4A((q[1] >> 4) & m, xb.y, s);
    s = RF_DP4A((q[2] >> 4) & m, xb.z, s);
    s = RF_DP4A((q[3] >> 4) & m, xb.w, s);
    return d * (dx.x * (float)s - 8.0f * dx.y);
}

template <>
RF_DEVICE float rf_legacy_direct_dot<34>(const int* q, float d, int4 xa, int4 xb, float2 dx) {
    int s = 0;
    s = RF_DP4A(q[0], xa.x, s);
    s = RF_DP4A(q[1], xa.y, s);
    s = RF_DP4A(q[2], xa.z, s);
    s = RF_DP4A(q[3], xa.w, s);
    s = RF_DP4A(q[4], xb.x, s);
    s = RF_DP4A(q[5], xb.y, s);
    s = RF_DP4A(q[6], xb.z, s);
    s = RF_DP4A(q[7], xb.w, s);
    return d * dx.x * (float)s;
}

// The 32-bit words of N 16-byte words, in order.
template <int N>
RF_DEVICE void rf_words_of(const uint4* w, u32* u) {
#pragma unroll
    for (int i = 0; i < N; i++) {
        u[4 * i] = w[i].x;
        u[4 * i + 1] = w[i].y;
        u[4 * i + 2] = w[i].z;
        u[4 * i + 3] = w[i].w;
    }
}

template <int BB, int R>
RF_DEVICE void rf_legacy_direct_load(const uint4* const* rows, int grp, int s16,
                                     uint4 (*w)[BB == 18 ? 2 : 3]) {
    constexpr int N16 = BB == 18 ? 2 : 3;
#pragma unroll
    for (int e = 0; e < R; e++) {
        const uint4* g = rows[e] + (size_t)grp * RfLegacyDirect<BB>::GW + s16;
#pragma unroll
        for (int i = 0; i < N16; i++) w[e][i] = rf_ld_weight16<3>(g + i);
    }
}

template <int BB, int R, int M>
RF_DEVICE void rf_legacy_direct(RF_MV_ARGS, RfEpi gl) {
    constexpr int N16 = BB == 18 ? 2 : 3, NU = RfLegacyDirect<BB>::NU;
    const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;
    const int sub = wave % wpr;
    const int wg = blockIdx.x * (blockDim.x / RF_WAVE / wpr) + wave / wpr;
    const uint4* rows[R];
    float* ys[R];
    int ns[R], rs[R];
    constexpr bool G = M == RF_MV_GLU || M == RF_MV_GLUC;
    const bool any = rf_mv_pick_group<R, G>(wg, W0, W1, W2, N0, N1, N2, Y0, Y1, Y2, row_bytes,
                                            rows, ys, ns, rs);
    const int ngrp = any ? K / (256 * RfLegacyDirect<BB>::U) : 0;
    const int p = lane & 7, step = wpr * (RF_WAVE / 8);
    const int s16 = (BB * p) >> 4;
    float acc[R];
#pragma unroll
    for (int e = 0; e < R; e++) acc[e] = 0.0f;
    uint4 w[R][N16];
    const int g_first = sub * (RF_WAVE / 8) + (lane >> 3);
    if (g_first < ngrp) rf_legacy_direct_load<BB, R>(rows, g_first, s16, w);
#if RF_MV_L2PF > 0
    constexpr int GB = RfLegacyDirect<BB>::GW * 16;  // bytes of a group of 8 blocks
#pragma unroll
    for (int a = 1; a <= RF_MV_L2PF; a++)
        rf_mv_prefetch_pass<R>(rows, (size_t)(sub * (RF_WAVE / 8) + a * step) * GB,
                               (RF_WAVE / 8) * GB, (size_t)ngrp * GB, lane);
#endif
    RF_GRID_SYNC();  // the activations come from the kernel before
    const float xs = RF_MV_XSCALE();
    for (int grp = g_first; grp < ngrp; grp += step) {
#if RF_MV_PF
        // The next pass's weights are requested before this pass's math
        // (RF_MV_PF=1 through ROCMFORGE_GPU_KERNEL_DEFINES, for measurements).
        uint4 nw[R][N16];
        if (grp + step < ngrp) rf_legacy_direct_load<BB, R>(rows, grp + step, s16, nw);
#endif
        if constexpr (BB == 36) {
            const int c = (grp * 8 + p) * 2;
            const int4 xa = *(const int4*)(xq + c * 8), xb = *(const int4*)(xq + c * 8 + 4);
            const int4 ya = *(const int4*)(xq + c * 8 + 8), yb = *(const int4*)(xq + c * 8 + 12);
            const float2 dx = ds[c], dy = ds[c + 1];
#pragma unroll
            for (int e = 0; e < R; e++) {
                u32 u[NU];
                rf_words_of<N16>(w[e], u);
                int q0[4], q1[4];
                float d0, d1;
                rf_legacy_pair_blocks(u, p, q0, q1, &d0, &d1);
                acc[e] += rf_legacy_direct_dot<18>(q0, d0, xa, xb, dx) +
                          rf_legacy_direct_dot<18>(q1, d1, ya, yb, dy);
            }
        } else {
            const int c = grp * 8 + p;
            const int4 xa = *(const int4*)(xq + c * 8), xb = *(const int4*)(xq + c * 8 + 4);
            const float2 dx = ds[c];
#pragma unroll
            for (int e = 0; e < R; e++) {
                u32 u[NU + 1];
                rf_words_of<N16>(w[e], u);
                u[NU] = 0u;
                int q[RfLegacyDirect<BB>::NQ];
                const float d = rf_legacy_direct_block<BB>(u, p, q);
                acc[e] += rf_legacy_direct_dot<BB>(q, d, xa, xb, dx);
            }
        }
#if RF_MV_PF
#pragma unroll
        for (int e = 0; e < R; e++)
#pragma unroll
            for (int i = 0; i < N16; i++) w[e][i] = nw[e][i];
#else
        if (grp + step < ngrp) rf_legacy_direct_load<BB, R>(rows, grp + step, s16, w);
#endif
    }
    rf_mv_store_mode<R, M>(acc, rs, ns, ys, sub, wpr, xs, Y0, gl);
}

#define RF_LEGACY_DIRECT(name, BB, R)                                                        \
    RF_DEVICE void rf_mv_##name(RF_MV_ARGS) {                                                \
        rf_legacy_direct<BB, R, RF_MV_PLAIN>(RF_MV_PASS, RfEpi{});                           \
    }                                                                                        \
    RF_MV_ENTRIES_SYNCED(name, rf_mv_##name)
// With the GLU twin (four rows per wave only).
#define RF_LEGACY_DIRECT_GLU(name, BB)                                                       \
    template <int M>                                                                         \
    RF_DEVICE void rf_##name(RF_MV_ARGS, RfEpi gl) {                                         \
        rf_legacy_direct<BB, 4, M>(RF_MV_PASS, gl);                                          \
    }                                                                                        \
    RF_MV_ROWS_ENTRIES(name, rf_##name)
RF_LEGACY_DIRECT(q4_0_direct2, 18, 2)
RF_LEGACY_DIRECT_GLU(q4_0_direct4, 18)
RF_LEGACY_DIRECT_GLU(q4_0_pair4, 36)
RF_LEGACY_DIRECT(q8_0_direct2, 34, 2)
RF_LEGACY_DIRECT_GLU(q8_0_direct4, 34)
