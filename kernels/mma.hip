// Prompt-processing matmul on the matrix units: Y[t][r] = sum_k W[r][k] * X[t][k]
// for a weight in any GPU format and many tokens at once.
//
// A block computes a tile of RF_MMA_BM tokens x RF_MMA_BN weight rows. For
// every step of RF_MMA_BK values of k it dequantizes its weight rows (each
// thread one 32-value chunk, through the same dequantizers as the other
// matmuls) and converts the tokens' activations, both to f16 in shared
// memory, then its waves multiply the two tiles with f16 x f16 -> f32
// matrix instructions. Each dequantized weight is used by RF_MMA_BM tokens.
//
// Shared-memory rows are RF_MMA_BK + 8 halves long: with the 8 halves of
// padding the 8 rows x 4 words a wave reads for one fragment fall into 32
// different banks.
//
// Launch: block = 256 threads, grid = (ceil(N / RF_MMA_BN), ceil(T / RF_MMA_BM)).
// K must be a multiple of 32 and X 16-byte aligned (the launcher checks).
//
// Matrix instructions per target (the only vendor-specific part, below):
// NVIDIA sm_80 and newer: mma.sync m16n8k16 (f16 inputs, f32 accumulators).
// Targets without one of ours compile the kernels to nothing; the launcher
// never picks them there (Kernels::has_mma).
#include "compat.h"
#include "common.h"
#include "quant.h"

#define RF_MMA_BM 64
#define RF_MMA_BN 128
#define RF_MMA_BK 64
// Words (two halves) per shared-memory row: (RF_MMA_BK + 8) / 2.
#define RF_MMA_LDW 36
#define RF_MMA_THREADS 256

#if defined(RF_CUDA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define RF_HAS_MMA 1

// Two floats as one word of two halves (lo in the low 16 bits), rounded to nearest.
RF_DEVICE u32 rf_pack_h2(float lo, float hi) {
    u32 r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// c (16 x 8, f32) += a (16 x 16, f16, row-major fragment) * b (16 x 8, f16,
// column-major fragment). Fragment layout, g = lane / 4, q = lane % 4:
// a[0] = A[g][2q..2q+1], a[1] = A[g+8][2q..], a[2] = A[g][2q+8..], a[3] = A[g+8][2q+8..];
// b[0] = B[2q..2q+1][g], b[1] = B[2q+8..2q+9][g];
// c[0..1] = C[g][2q..2q+1], c[2..3] = C[g+8][2q..2q+1].
RF_DEVICE void rf_mma_16x8x16(float* c, const u32* a, const u32* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// The tile loop, for the dequantizer DEQ::run(row, chunk, K, y[32]).
// 8 waves of 32: wave w covers tokens (w / 4) * 32 .. +32 and rows
// (w % 4) * 32 .. +32 of the tile: 2 x 4 fragments of 16 x 8.
template <typename DEQ>
RF_DEVICE void rf_mma_tile(const u8* __restrict__ W, int row_bytes, int K, int N,
                           const float* __restrict__ X, int T, float* __restrict__ Y) {
    __shared__ u32 as[RF_MMA_BM][RF_MMA_LDW];
    __shared__ u32 bs[RF_MMA_BN][RF_MMA_LDW];
    const int tid = threadIdx.x, lane = tid & 31, wave = tid >> 5;
    const int wm = wave >> 2, wn = wave & 3;
    const int g = lane >> 2, q = lane & 3;
    const int t0 = blockIdx.y * RF_MMA_BM, r0 = blockIdx.x * RF_MMA_BN;
    // This thread's weight chunk: row tid / 2 of the tile, chunk tid % 2 of the step.
    const int drow = tid >> 1, dhalf = tid & 1;
    const bool row_ok = r0 + drow < N;
    const u8* wrow = W + (size_t)(row_ok ? r0 + drow : 0) * row_bytes;
    const int n_chunks = K / 32;

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

    for (int c0 = 0; c0 < n_chunks; c0 += RF_MMA_BK / 32) {
        {
            const int c = c0 + dhalf;
            float y[32];
            if (row_ok && c < n_chunks) {
                DEQ::run(wrow, c, K, y);
            } else {
#pragma unroll
                for (int i = 0; i < 32; i++) y[i] = 0.0f;
            }
            uint4* dst = (uint4*)&bs[drow][dhalf * 16];
#pragma unroll
            for (int i = 0; i < 4; i++)
                dst[i] = make_uint4(rf_pack_h2(y[8 * i], y[8 * i + 1]),
                                    rf_pack_h2(y[8 * i + 2], y[8 * i + 3]),
                                    rf_pack_h2(y[8 * i + 4], y[8 * i + 5]),
                                    rf_pack_h2(y[8 * i + 6], y[8 * i + 7]));
        }
        // Activations: RF_MMA_BM x RF_MMA_BK floats as float4, 4 per thread.
#pragma unroll
        for (int j = 0; j < RF_MMA_BM * RF_MMA_BK / 4 / RF_MMA_THREADS; j++) {
            const int i = tid + j * RF_MMA_THREADS;
            const int tt = i / (RF_MMA_BK / 4), col = (i % (RF_MMA_BK / 4)) * 4;
            const int kk = c0 * 32 + col;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (t0 + tt < T && kk < K) v = *(const float4*)(X + (size_t)(t0 + tt) * K + kk);
            *(uint2*)&as[tt][col / 2] = make_uint2(rf_pack_h2(v.x, v.y), rf_pack_h2(v.z, v.w));
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < RF_MMA_BK / 16; ks++) {
            const int kw = ks * 8 + q;
            u32 a[2][4], b[4][2];
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int m = wm * 32 + i * 16 + g;
                a[i][0] = as[m][kw];
                a[i][1] = as[m + 8][kw];
                a[i][2] = as[m][kw + 4];
                a[i][3] = as[m + 8][kw + 4];
            }
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int n = wn * 32 + j * 8 + g;
                b[j][0] = bs[n][kw];
                b[j][1] = bs[n][kw + 4];
            }
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) rf_mma_16x8x16(acc[i][j], a[i], b[j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int r = r0 + wn * 32 + j * 8 + 2 * q;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int t = t0 + wm * 32 + i * 16 + g + 8 * h;
                if (t < T) {
                    float* yr = Y + (size_t)t * N;
                    if (r < N) yr[r] = acc[i][j][2 * h];
                    if (r + 1 < N) yr[r + 1] = acc[i][j][2 * h + 1];
                }
            }
        }
    }
}

#define RF_MMA_KERNEL(name, deq)                                                                 \
    struct rf_deq_##name {                                                                       \
        RF_DEVICE static void run(const u8* row, int c, int K, float* y) { deq(row, c, K, y); } \
    };                                                                                           \
    extern "C" __global__ void __launch_bounds__(RF_MMA_THREADS)                                 \
        matmul_mma_##name(const u8* __restrict__ W, int row_bytes, int K, int N,                \
                          const float* __restrict__ X, int T, float* __restrict__ Y) {          \
        rf_mma_tile<rf_deq_##name>(W, row_bytes, K, N, X, T, Y);                                 \
    }

#else

// No matrix instructions of ours for this target: empty kernels, so that
// every target exports the same names (the launcher never runs these).
#define RF_MMA_KERNEL(name, deq)                                                   \
    extern "C" __global__ void matmul_mma_##name(const u8*, int, int, int,        \
                                                 const float*, int, float*) {}

#endif

RF_FOR_EACH_FORMAT(RF_MMA_KERNEL)
