// Y[t][r] = sum_k W[r][k] * X[t][k] for a weight in any GPU format.
//
// One wave per weight row; each lane dequantizes 32-element chunks of the row
// (staged through shared memory, see below) into registers and applies them
// to up to RF_MM_TOKENS activation rows, so
// the same kernel serves decode (one token: a mat-vec) and prompt processing
// (weights read once per RF_MM_TOKENS tokens).
// Launch: block = (n_waves * RF_WAVE), grid = (ceil(N / n_waves), ceil(T / RF_MM_TOKENS)).
#include "compat.h"
#include "common.h"
#include "quant.h"

#define RF_MM_TOKENS 8
// Waves per block (the launcher's block size is RF_MM_WAVES * RF_WAVE).
#define RF_MM_WAVES 4

// Largest number of bytes one 32-element chunk of each format occupies
// (rounded up for the 256-element super-block formats): the size of the
// shared-memory staging area per lane.
#define RF_CB_f32 128
#define RF_CB_f16 64
#define RF_CB_bf16 64
#define RF_CB_q4_0 18
#define RF_CB_q4_1 20
#define RF_CB_q5_0 22
#define RF_CB_q5_1 24
#define RF_CB_q8_0 34
#define RF_CB_q2_k 11
#define RF_CB_q3_k 14
#define RF_CB_q4_k 18
#define RF_CB_q5_k 22
#define RF_CB_q6_k 27
#define RF_CB_iq4_nl 18
#define RF_CB_iq4_xs 17
#define RF_CB_mxfp4 17

// Copy `n` bytes from global `src` to shared `dst` (16-byte aligned) with
// the widest loads the alignment allows, the wave's lanes side by side so
// that each load instruction of the wave reads contiguous memory.
RF_DEVICE void rf_stage_bytes(u8* dst, const u8* src, int n, int lane) {
    const size_t a = (size_t)src;
    if (((a | (size_t)n) & 15) == 0) {
        for (int i = lane; i < n / 16; i += RF_WAVE) ((uint4*)dst)[i] = ((const uint4*)src)[i];
    } else if (((a | (size_t)n) & 3) == 0) {
        for (int i = lane; i < n / 4; i += RF_WAVE) ((u32*)dst)[i] = ((const u32*)src)[i];
    } else if (((a | (size_t)n) & 1) == 0) {
        for (int i = lane; i < n / 2; i += RF_WAVE) ((u16*)dst)[i] = ((const u16*)src)[i];
    } else {
        for (int i = lane; i < n; i += RF_WAVE) dst[i] = src[i];
    }
}

// Each wave walks its row in tiles of RF_WAVE chunks: the tile's bytes are
// first copied to shared memory with wide, contiguous loads, then every lane
// dequantizes its chunk from there. Chunk c starts at byte c*32*row_bytes/K
// of the row for every format (exact for whole blocks and, since tiles start
// at multiples of 8 chunks, for the 256-element super-blocks), so the
// dequantizers run unchanged on the staged copy with chunk and length
// indices taken relative to the tile. The block then stages each token's
// activations for the tile once (coalesced), shared by its waves.
#define RF_MATMUL(name, deq)                                                                    \
    extern "C" __global__ void matmul_##name(const u8* __restrict__ W, int row_bytes, int K,   \
                                             int N, const float* __restrict__ X, int T,        \
                                             float* __restrict__ Y) {                          \
        RF_GRID_SYNC();                                                                        \
        __shared__ uint4 stage[RF_MM_WAVES][(RF_WAVE * RF_CB_##name + 15) / 16];               \
        /* One token's activations for the tile, chunk-major with a stride of */               \
        /* 33 floats so that lane l reading value i of its chunk hits bank l + i. */          \
        __shared__ float xs[RF_WAVE * 33];                                                     \
        const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;                  \
        const int r = blockIdx.x * (blockDim.x / RF_WAVE) + wave;                              \
        const int t0 = blockIdx.y * RF_MM_TOKENS;                                              \
        /* Waves past the last row keep going (without loading) so that the */                 \
        /* block's barriers are reached by every thread. */                                    \
        const bool active = r < N;                                                             \
        const u8* row = W + (size_t)(active ? r : 0) * row_bytes;                              \
        u8* st = (u8*)stage[wave];                                                             \
        float acc[RF_MM_TOKENS];                                                               \
        _Pragma("unroll") for (int t = 0; t < RF_MM_TOKENS; t++) acc[t] = 0.0f;                \
        const int n_chunks = (K + 31) / 32;                                                    \
        for (int c0 = 0; c0 < n_chunks; c0 += RF_WAVE) {                                       \
            const int e1 = min((c0 + RF_WAVE) * 32, K);                                        \
            const size_t b0 = (size_t)c0 * 32 * row_bytes / K;                                 \
            const size_t b1 = (size_t)e1 * row_bytes / K;                                      \
            if (active) rf_stage_bytes(st, row + b0, (int)(b1 - b0), lane);                    \
            __syncthreads();                                                                   \
            const int c = c0 + lane;                                                           \
            const bool have = active && c < n_chunks;                                          \
            const int kn = min(32, K - c * 32);                                                \
            float y[32];                                                                       \
            if (have) deq(st, lane, K - c0 * 32, y);                                           \
            const int ne = e1 - c0 * 32;                                                       \
            _Pragma("unroll") for (int t = 0; t < RF_MM_TOKENS; t++) {                         \
                if (t0 + t < T) { /* the same for every thread of the block */                 \
                    const float* xr = X + (size_t)(t0 + t) * K + c0 * 32;                      \
                    for (int i = threadIdx.x; i < ne; i += blockDim.x)                         \
                        xs[(i >> 5) * 33 + (i & 31)] = xr[i];                                  \
                    __syncthreads();                                                           \
                    if (have) {                                                                \
                        const float* xl = xs + lane * 33;                                      \
                        float s = 0.0f;                                                        \
                        /* Constant indices keep y in registers. */                            \
                        if (kn == 32) {                                                        \
                            _Pragma("unroll") for (int i = 0; i < 32; i++) s += y[i] * xl[i];  \
                        } else {                                                               \
                            _Pragma("unroll") for (int i = 0; i < 32; i++) if (i < kn) s += y[i] * xl[i]; \
                        }                                                                      \
                        acc[t] += s;                                                           \
                    }                                                                          \
                    __syncthreads();                                                           \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        _Pragma("unroll") for (int t = 0; t < RF_MM_TOKENS; t++) {                             \
            const float s = rf_wave_sum(acc[t]);                                               \
            if (active && lane == 0 && t0 + t < T) Y[(size_t)(t0 + t) * N + r] = s;            \
        }                                                                                      \
    }

RF_FOR_EACH_FORMAT(RF_MATMUL)
