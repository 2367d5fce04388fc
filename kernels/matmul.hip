// Y[t][r] = sum_k W[r][k] * X[t][k] for a weight in any GPU format.
//
// One wave per weight row; each lane dequantizes 32-element chunks of the row
// into registers and applies them to up to RF_MM_TOKENS activation rows, so
// the same kernel serves decode (one token: a mat-vec) and prompt processing
// (weights read once per RF_MM_TOKENS tokens).
// Launch: block = (n_waves * RF_WAVE), grid = (ceil(N / n_waves), ceil(T / RF_MM_TOKENS)).
#include "compat.h"
#include "common.h"
#include "quant.h"

#define RF_MM_TOKENS 8

#define RF_MATMUL(name, deq)                                                                    \
    extern "C" __global__ void matmul_##name(const u8* __restrict__ W, int row_bytes, int K,   \
                                             int N, const float* __restrict__ X, int T,        \
                                             float* __restrict__ Y) {                          \
        const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE;                  \
        const int r = blockIdx.x * (blockDim.x / RF_WAVE) + wave;                              \
        const int t0 = blockIdx.y * RF_MM_TOKENS;                                              \
        if (r >= N) return;                                                                    \
        const u8* row = W + (size_t)r * row_bytes;                                             \
        float acc[RF_MM_TOKENS];                                                               \
        _Pragma("unroll") for (int t = 0; t < RF_MM_TOKENS; t++) acc[t] = 0.0f;                \
        const int n_chunks = (K + 31) / 32;                                                    \
        for (int c = lane; c < n_chunks; c += RF_WAVE) {                                       \
            float y[32];                                                                       \
            deq(row, c, K, y);                                                                 \
            const int kn = min(32, K - c * 32);                                                \
            _Pragma("unroll") for (int t = 0; t < RF_MM_TOKENS; t++) {                         \
                if (t0 + t < T) {                                                              \
                    const float* x = X + (size_t)(t0 + t) * K + c * 32;                        \
                    float s = 0.0f;                                                            \
                    /* Unrolled with constant indices so that y stays in registers. */         \
                    if (kn == 32 && (K & 3) == 0) { /* 16-byte aligned: vector loads */    \
                        const float4* x4 = (const float4*)x;                                   \
                        _Pragma("unroll") for (int i = 0; i < 8; i++) {                        \
                            const float4 v4 = x4[i];                                           \
                            s += y[4 * i] * v4.x + y[4 * i + 1] * v4.y + y[4 * i + 2] * v4.z + \
                                 y[4 * i + 3] * v4.w;                                          \
                        }                                                                      \
                    } else if (kn == 32) {                                                     \
                        _Pragma("unroll") for (int i = 0; i < 32; i++) s += y[i] * x[i];       \
                    } else {                                                                   \
                        _Pragma("unroll") for (int i = 0; i < 32; i++) if (i < kn) s += y[i] * x[i]; \
                    }                                                                          \
                    acc[t] += s;                                                               \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        _Pragma("unroll") for (int t = 0; t < RF_MM_TOKENS; t++) {                             \
            const float s = rf_wave_sum(acc[t]);                                               \
            if (lane == 0 && t0 + t < T) Y[(size_t)(t0 + t) * N + r] = s;                      \
        }                                                                                      \
    }

RF_FOR_EACH_FORMAT(RF_MATMUL)
