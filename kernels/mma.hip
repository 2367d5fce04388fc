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

// ---- Large prompts: dequantize once, then an f16 GEMM --------------------
//
// For many tokens the weights are first dequantized to an f16 matrix
// (dequant_f16_<fmt>, one thread per 32-value chunk) and the activations
// converted to f16 (f32_to_f16), then gemm_f16_tn multiplies the two
// K-contiguous matrices: C[m][n] = sum_k A[m][k] * B[n][k] (A: tokens,
// B: weight rows, C: f32). Block tile RF_GM x RF_GN x RF_GK (or 64 tokens,
// gemm_f16_tn_m64, when 128 would leave the GPU part idle); 8 waves as
// 2 (m) x 4 (n), each 64 (32) x 32; tiles copied global -> shared with cp.async
// (16 bytes per copy, two stages: the copy of the next k-step overlaps the
// matrix instructions of this one) and read with ldmatrix.
#define RF_GM 128
#define RF_GN 128
#define RF_GK 32
// Halves per shared-memory row: RF_GK + 8 (80 bytes: the eight 16-byte rows
// an ldmatrix reads fall into different banks).
#define RF_GLD 40

RF_DEVICE u32 rf_smem_addr(const void* p) {
    u32 a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// 16 bytes global -> shared, asynchronous; `bytes` = 0 fills zeros instead.
RF_DEVICE void rf_cp_async16(u32 dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(bytes));
}

RF_DEVICE void rf_ldmatrix_x4(u32* r, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

extern "C" __global__ void f32_to_f16(const float* __restrict__ x, int n, u32* __restrict__ out) {
    RF_GRID_SYNC();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (4 * i >= n) return;
    const float4 v = ((const float4*)x)[i];
    ((uint2*)out)[i] = make_uint2(rf_pack_h2(v.x, v.y), rf_pack_h2(v.z, v.w));
}

// One stage of the A tile (32 * MT rows) and the B tile (32 * NT rows) for
// k-step kt of BK values (32 or 64), in copies of 16 bytes, BK / 8 per row:
// MT * BK / 64 copies of A and NT * BK / 64 of B per thread, into rows of
// BK + 8 halves. Rows past M or N read row 0 with a source size of 0, which
// fills zeros. No group is committed here.
template <int MT, int NT, int BK = RF_GK>
RF_DEVICE void rf_gemm_stage(u32 as, u32 bs, const u16* __restrict__ A,
                             const u16* __restrict__ B, int M, int N, int K, int m0, int n0,
                             int kt, int tid) {
    static_assert(MT % 2 == 0 && NT % 2 == 0 && MT <= NT, "whole copies per thread, A's fewer");
    static_assert(BK == 32 || BK == 64, "k-steps of 32 or 64");
    // log2 of the 16-byte chunks per row, and the row length in halves.
    constexpr int CS = BK == 64 ? 3 : 2, LD = BK + 8;
#pragma unroll
    for (int u = 0; u < NT * BK / 64; u++) {
        // Copy i: row i / (BK / 8), chunk i % (BK / 8) (consecutive threads,
        // consecutive 16-byte chunks of a row); the A and B copies of one u
        // issued together.
        const int i = tid + u * 256;
        const int r = i >> CS, c = (i & ((1 << CS) - 1)) * 8;
        const int k = kt * BK + c;
        if (r < 32 * MT) {  // u < MT * BK / 64
            const bool am = m0 + r < M;
            rf_cp_async16(as + (r * LD + c) * 2, A + (size_t)(am ? m0 + r : 0) * K + k,
                          am ? 16 : 0);
        }
        const bool bn = n0 + r < N;
        rf_cp_async16(bs + (r * LD + c) * 2, B + (size_t)(bn ? n0 + r : 0) * K + k, bn ? 16 : 0);
    }
}

// A wave's MT x NT accumulator fragments into C (t x n floats), rows and
// columns past M and N left out. The wave's tile starts at token
// wm * 16 * MT and row wn * 8 * NT of the block's.
template <int MT, int NT>
RF_DEVICE void rf_gemm_store(float (*acc)[NT][4], int M, int N, int m0, int n0, int wm, int wn,
                             int lane, float* __restrict__ C) {
    const int g = lane >> 2, q = lane & 3;
#pragma unroll
    for (int i = 0; i < MT; i++) {
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const int n = n0 + wn * (8 * NT) + j * 8 + 2 * q;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int m = m0 + wm * (16 * MT) + i * 16 + g + 8 * h;
                if (m < M) {
                    float* cr = C + (size_t)m * N;
                    if (n + 1 < N && (N & 1) == 0) {
                        *(float2*)(cr + n) = make_float2(acc[i][j][2 * h], acc[i][j][2 * h + 1]);
                    } else {
                        if (n < N) cr[n] = acc[i][j][2 * h];
                        if (n + 1 < N) cr[n + 1] = acc[i][j][2 * h + 1];
                    }
                }
            }
        }
    }
}

// MT: 16-row fragments per wave along m; the block covers 32 * MT tokens
// (MT = 4: 128, the default; MT = 2: 64, for grids too small to fill the GPU).
template <int MT>
RF_DEVICE void rf_gemm_f16_tn(const u16* __restrict__ A, const u16* __restrict__ B, int M, int N,
                              int K, float* __restrict__ C) {
    __shared__ __align__(16) u16 sa[2][RF_GM * RF_GLD];
    __shared__ __align__(16) u16 sb[2][RF_GN * RF_GLD];
    const int tid = threadIdx.x, lane = tid & 31, wave = tid >> 5;
    const int wm = wave >> 2, wn = wave & 3;
    const int m0 = blockIdx.y * (32 * MT), n0 = blockIdx.x * RF_GN;
    const u32 sa0 = rf_smem_addr(sa[0]), sa1 = rf_smem_addr(sa[1]);
    const u32 sb0 = rf_smem_addr(sb[0]), sb1 = rf_smem_addr(sb[1]);
    float acc[MT][4][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
    const int nk = K / RF_GK;
    rf_gemm_stage<MT, 4>(sa0, sb0, A, B, M, N, K, m0, n0, 0, tid);
    asm volatile("cp.async.commit_group;");
    // ldmatrix row addresses of this lane (relative to a stage), see rf_ldmatrix_x4:
    // A: matrix l/8 = (rows +8 if odd, k +8 if >= 2); B: (n +8 if >= 2, k +8 if odd).
    const int a_row = wm * (16 * MT) + ((lane >> 3) & 1) * 8 + (lane & 7), a_col = (lane >> 4) * 8;
    const int b_row = wn * 32 + (lane >> 4) * 8 + (lane & 7), b_col = ((lane >> 3) & 1) * 8;
    for (int kt = 0; kt < nk; kt++) {
        const int st = kt & 1;
        if (kt + 1 < nk) {
            rf_gemm_stage<MT, 4>(st ? sa0 : sa1, st ? sb0 : sb1, A, B, M, N, K, m0, n0, kt + 1,
                                 tid);
            asm volatile("cp.async.commit_group;");
            asm volatile("cp.async.wait_group 1;");
        } else {
            asm volatile("cp.async.wait_group 0;");
        }
        __syncthreads();
        const u32 as = st ? sa1 : sa0, bs = st ? sb1 : sb0;
#pragma unroll
        for (int ks = 0; ks < RF_GK / 16; ks++) {
            u32 a[MT][4], b[4][2];
#pragma unroll
            for (int i = 0; i < MT; i++)
                rf_ldmatrix_x4(a[i], as + ((a_row + i * 16) * RF_GLD + ks * 16 + a_col) * 2);
#pragma unroll
            for (int j = 0; j < 2; j++) {
                u32 r[4];
                rf_ldmatrix_x4(r, bs + ((b_row + j * 16) * RF_GLD + ks * 16 + b_col) * 2);
                b[2 * j][0] = r[0];
                b[2 * j][1] = r[1];
                b[2 * j + 1][0] = r[2];
                b[2 * j + 1][1] = r[3];
            }
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) rf_mma_16x8x16(acc[i][j], a[i], b[j]);
        }
        __syncthreads();  // this stage is overwritten by the copy two steps on
    }
    rf_gemm_store<MT, 4>(acc, M, N, m0, n0, wm, wn, lane, C);
}

extern "C" __global__ void __launch_bounds__(256)
    gemm_f16_tn(const u16* __restrict__ A, const u16* __restrict__ B, int M, int N, int K,
                float* __restrict__ C) {
    RF_GRID_SYNC();
    rf_gemm_f16_tn<4>(A, B, M, N, K, C);
}

extern "C" __global__ void __launch_bounds__(256)
    gemm_f16_tn_m64(const u16* __restrict__ A, const u16* __restrict__ B, int M, int N, int K,
                    float* __restrict__ C) {
    RF_GRID_SYNC();
    rf_gemm_f16_tn<2>(A, B, M, N, K, C);
}

// The A and B fragments of k16 sub-step ks of a stage (A tile at `as`, B
// tile at `bs`, rows of LD halves) for this lane's ldmatrix rows: MT
// ldmatrix.x4 of A (a[i]: m16 x k16) and NT / 2 of B (each two n8 x k16
// fragments, b[2j] and b[2j + 1]).
template <int MT, int NT, int LD>
RF_DEVICE void rf_gemm_frags(u32 (*a)[4], u32 (*b)[2], u32 as, u32 bs, int a_row, int a_col,
                             int b_row, int b_col, int ks) {
#pragma unroll
    for (int i = 0; i < MT; i++)
        rf_ldmatrix_x4(a[i], as + ((a_row + i * 16) * LD + ks * 16 + a_col) * 2);
#pragma unroll
    for (int j = 0; j < NT / 2; j++) {
        u32 r[4];
        rf_ldmatrix_x4(r, bs + ((b_row + j * 16) * LD + ks * 16 + b_col) * 2);
        b[2 * j][0] = r[0];
        b[2 * j][1] = r[1];
        b[2 * j + 1][0] = r[2];
        b[2 * j + 1][1] = r[3];
    }
}

// ---- The same GEMM with a deeper pipeline ---------------------------------
//
// ST stages of the A and B tiles in dynamic shared memory (ST * 20 KiB for
// 128 x 128 tiles: more than the 48 KiB of static shared memory, so the
// launcher raises the kernel's limit first): the copies of k-steps kt + 1 ..
// kt + ST - 1 are in flight while k-step kt is multiplied, and there is one
// barrier per k-step instead of two. Fragments, ldmatrix addresses and the
// epilogue are those of rf_gemm_f16_tn.
//
// Block tile 32 * MT tokens x 32 * NT rows: 8 waves as 2 (m) x 4 (n), each
// 16 * MT x 8 * NT (MT x NT fragments of m16n8). NT = 4 (128 rows) for the
// usual kernels; NT = 8 (gemm_f16_tn_n256_s3, 128 x 256) copies a quarter
// fewer bytes from L2 per mma (24 KiB per k-step for twice the products of
// 128 x 128's 16 KiB) and reads a third fewer from shared memory (per k16 a
// wave issues MT + NT / 2 ldmatrix.x4 for MT * NT mma: 8 for 32 instead of
// 6 for 16), for 128 accumulators per thread and one block per multiprocessor.
//
// BK: values of k per stage, 32 (RF_GK) or 64 (gemm_f16_tn_k64_s3 and
// gemm_f16_tn_m64_k64_s3: half the barriers and cp.async waits per mma, for
// a latency-bound kernel; K a multiple of 64). Rows of BK + 8 halves: 80 or
// 144 bytes, 20 or 36 words, so the eight 16-byte rows of an ldmatrix matrix
// start at banks 20 r % 32 = 0, 20, 8, 28, 16, 4, 24, 12 or 36 r % 32 =
// 0, 4, ..., 28: eight distinct groups of four banks, no conflict.
//
// PF (gemm_f16_tn_k64_s3_pf, gemm_f16_tn_m64_k64_s3_pf; ROCMFORGE_GPU_GEMM_PF=1):
// the fragments are double-buffered in registers so that no mma waits for
// the ldmatrix that feeds it. Without PF every k-step starts with the
// barrier and then its first ldmatrix, with no mma to issue meanwhile. With
// PF sub-step ks loads the fragments of sub-step ks + 1 into the other
// buffer before its mma; the last sub-step of k-step kt first waits for the
// stage of kt + 1 and passes the barrier, then loads kt + 1's first
// fragments, so its mma (operands already in registers) covers those loads.
// That barrier follows every wave's last ldmatrix of kt's stage (issued one
// sub-step earlier), so kt's stage is refilled after it, with k-step
// kt + ST: the prologue fills all ST stages, and the copies of
// kt + 2 .. kt + ST - 1 stay in flight across the barrier as those of
// kt + 1 .. kt + ST - 1 do without PF. The copies are issued after the last
// mma rather than before it: there the fragments of one buffer are dead,
// and the copy addresses fit in 128 registers without spilling (issued
// before the mma, 8 bytes spilled at 128).
template <int MT, int NT, int ST, int BK = RF_GK, bool PF = false>
RF_DEVICE void rf_gemm_f16_tn_deep(const u16* __restrict__ A, const u16* __restrict__ B, int M,
                                   int N, int K, float* __restrict__ C) {
    extern __shared__ __align__(16) u16 rf_gemm_smem[];
    constexpr int LD = BK + 8;  // halves per shared-memory row (RF_GLD for BK = 32)
    constexpr int A_BYTES = 32 * MT * LD * 2, STAGE_BYTES = A_BYTES + 32 * NT * LD * 2;
    const u32 base = rf_smem_addr(rf_gemm_smem);
    const int tid = threadIdx.x, lane = tid & 31, wave = tid >> 5;
    const int wm = wave >> 2, wn = wave & 3;
    // Tiles in launch order with the token tiles fastest: the blocks that
    // share a weight tile (one per token tile) run at the same time, so
    // each weight tile is read from DRAM once instead of once per token
    // tile when the grid is larger than what is resident (the weight
    // matrix does not fit in L2; the tokens' tiles do). The grid keeps its
    // (weight tiles, token tiles) shape. RF_GEMM_N_FAST: the launch order
    // (for comparisons).
#if defined(RF_GEMM_N_FAST)
    const int mt = blockIdx.y, nt = blockIdx.x;
#else
    const int lin = blockIdx.y * gridDim.x + blockIdx.x;
    const int mt = lin % gridDim.y, nt = lin / gridDim.y;
#endif
    const int m0 = mt * (32 * MT), n0 = nt * (32 * NT);
    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
    // Split k (gridDim.z = 2, K / BK even): block z takes k-steps
    // kb .. kb + nk - 1 and adds its sums to C, which the launcher zeroed;
    // with two adds to zero the result does not depend on their order.
    const int nk = K / BK / gridDim.z, kb = blockIdx.z * nk;
    // Stages filled before the first k-step: all but the one refilled at
    // the first barrier, all of them with PF (refilled after their reads).
    constexpr int PRO = PF ? ST : ST - 1;
#pragma unroll
    for (int s = 0; s < PRO; s++) {
        const u32 st = base + (u32)(s * STAGE_BYTES);
        if (s < nk)
            rf_gemm_stage<MT, NT, BK>(st, st + A_BYTES, A, B, M, N, K, m0, n0, kb + s, tid);
        asm volatile("cp.async.commit_group;");
    }
    // ldmatrix row addresses of this lane (relative to a stage), as in rf_gemm_f16_tn.
    const int a_row = wm * (16 * MT) + ((lane >> 3) & 1) * 8 + (lane & 7), a_col = (lane >> 4) * 8;
    const int b_row = wn * (8 * NT) + (lane >> 4) * 8 + (lane & 7), b_col = ((lane >> 3) & 1) * 8;
    if (PF) {
        constexpr int S = BK / 16;  // k16 sub-steps per k-step
        static_assert(S % 2 == 0, "sub-step 0 of every k-step in buffer 0");
        // Fragment buffers: sub-step ks in buffer ks % 2 (indices known at
        // compile time once the sub-step loop is unrolled: registers).
        u32 a[2][MT][4], b[2][NT][2];
        // Group 0 (k-step 0) complete: all but the ST - 1 younger ones; the
        // barrier makes every thread's copies of it visible.
        asm volatile("cp.async.wait_group %0;" ::"n"(ST - 1));
        __syncthreads();
        rf_gemm_frags<MT, NT, LD>(a[0], b[0], base, base + A_BYTES, a_row, a_col, b_row, b_col,
                                  0);
        for (int kt = 0; kt < nk; kt++) {
            const u32 as = base + (u32)((kt % ST) * STAGE_BYTES);
#pragma unroll
            for (int ks = 0; ks < S; ks++) {
                if (ks + 1 < S) {
                    rf_gemm_frags<MT, NT, LD>(a[(ks + 1) & 1], b[(ks + 1) & 1], as, as + A_BYTES,
                                              a_row, a_col, b_row, b_col, ks + 1);
                } else {
                    // Groups 0..kt + 1 complete (ST + kt committed, ST - 2
                    // younger ones may be in flight), and every thread's
                    // copies of kt + 1 visible past the barrier.
                    asm volatile("cp.async.wait_group %0;" ::"n"(ST - 2));
                    __syncthreads();
                    if (kt + 1 < nk) {
                        const u32 an = base + (u32)(((kt + 1) % ST) * STAGE_BYTES);
                        rf_gemm_frags<MT, NT, LD>(a[0], b[0], an, an + A_BYTES, a_row, a_col,
                                                  b_row, b_col, 0);
                    }
                }
#pragma unroll
                for (int i = 0; i < MT; i++)
#pragma unroll
                    for (int j = 0; j < NT; j++)
                        rf_mma_16x8x16(acc[i][j], a[ks & 1][i], b[ks & 1][j]);
            }
            {
                // Every wave issued all its ldmatrix of kt's stage before
                // the barrier above (the last one a sub-step before it), so
                // that stage takes k-step kt + ST. The group is committed
                // even when empty, to keep the count of the waits.
                const int kn = kt + ST;
                if (kn < nk)
                    rf_gemm_stage<MT, NT, BK>(as, as + A_BYTES, A, B, M, N, K, m0, n0, kb + kn,
                                              tid);
                asm volatile("cp.async.commit_group;");
            }
        }
    } else {
        for (int kt = 0; kt < nk; kt++) {
            // Groups 0..kt complete (ST - 2 younger ones may still be in flight),
            // and every thread is past k-step kt - 1, whose stage is refilled.
            asm volatile("cp.async.wait_group %0;" ::"n"(ST - 2));
            __syncthreads();
            const int kn = kt + ST - 1;
            if (kn < nk) {
                const u32 st = base + (u32)((kn % ST) * STAGE_BYTES);
                rf_gemm_stage<MT, NT, BK>(st, st + A_BYTES, A, B, M, N, K, m0, n0, kb + kn, tid);
            }
            asm volatile("cp.async.commit_group;");
            const u32 as = base + (u32)((kt % ST) * STAGE_BYTES), bs = as + A_BYTES;
#pragma unroll
            for (int ks = 0; ks < BK / 16; ks++) {
                u32 a[MT][4], b[NT][2];
                rf_gemm_frags<MT, NT, LD>(a, b, as, bs, a_row, a_col, b_row, b_col, ks);
#pragma unroll
                for (int i = 0; i < MT; i++)
#pragma unroll
                    for (int j = 0; j < NT; j++) rf_mma_16x8x16(acc[i][j], a[i], b[j]);
            }
        }
    }
    asm volatile("cp.async.wait_group 0;");
    if (gridDim.z == 1) {
        rf_gemm_store<MT, NT>(acc, M, N, m0, n0, wm, wn, lane, C);
        return;
    }
    const int g = lane >> 2, q = lane & 3;
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int m = m0 + wm * (16 * MT) + i * 16 + g + 8 * (e >> 1);
                const int n = n0 + wn * (8 * NT) + j * 8 + 2 * q + (e & 1);
                if (m < M && n < N) atomicAdd(C + (size_t)m * N + n, acc[i][j][e]);
            }
}

#define RF_GEMM_DEEP_KERNEL_BK(name, bounds, MT, NT, ST, BK)                                     \
    extern "C" __global__ void bounds name(const u16* __restrict__ A, const u16* __restrict__ B, \
                                           int M, int N, int K, float* __restrict__ C) {         \
        RF_GRID_SYNC();                                                                          \
        rf_gemm_f16_tn_deep<MT, NT, ST, BK>(A, B, M, N, K, C);                                   \
    }
#define RF_GEMM_DEEP_KERNEL(name, bounds, MT, NT, ST) \
    RF_GEMM_DEEP_KERNEL_BK(name, bounds, MT, NT, ST, RF_GK)
#define RF_GEMM_DEEP(name, MT, ST) RF_GEMM_DEEP_KERNEL(name, __launch_bounds__(256), MT, 4, ST)
RF_GEMM_DEEP(gemm_f16_tn_s3, 4, 3)
RF_GEMM_DEEP(gemm_f16_tn_s4, 4, 4)
RF_GEMM_DEEP(gemm_f16_tn_m64_s3, 2, 3)
RF_GEMM_DEEP(gemm_f16_tn_m64_s4, 2, 4)
// 128 x 256 tiles, three stages (92,160 bytes): one block per multiprocessor
// whatever the registers, so the compiler may give each thread up to 255.
RF_GEMM_DEEP_KERNEL(gemm_f16_tn_n256_s3, __launch_bounds__(256, 1), 4, 8, 3)
// k-steps of 64, three stages of rows of 72 halves: 110,592 bytes (128
// tokens) and 82,944 (64), two blocks per multiprocessor still fit in 228 KiB
// (ROCMFORGE_GPU_GEMM_K64=1, K a multiple of 64).
RF_GEMM_DEEP_KERNEL_BK(gemm_f16_tn_k64_s3, __launch_bounds__(256), 4, 4, 3, 64)
RF_GEMM_DEEP_KERNEL_BK(gemm_f16_tn_m64_k64_s3, __launch_bounds__(256), 2, 4, 3, 64)
// The same with double-buffered fragments (PF above; ROCMFORGE_GPU_GEMM_PF=1),
// the same shared memory. 128-token tiles at most 128 registers (2 blocks
// of 256 threads per multiprocessor, as their shared memory allows; NVRTC
// sm_90 would take 141 unbounded); the 64-token ones need fewer anyway.
#define RF_GEMM_DEEP_KERNEL_PF(name, bounds, MT, NT, ST, BK)                                     \
    extern "C" __global__ void bounds name(const u16* __restrict__ A, const u16* __restrict__ B, \
                                           int M, int N, int K, float* __restrict__ C) {         \
        RF_GRID_SYNC();                                                                          \
        rf_gemm_f16_tn_deep<MT, NT, ST, BK, true>(A, B, M, N, K, C);                             \
    }
RF_GEMM_DEEP_KERNEL_PF(gemm_f16_tn_k64_s3_pf, __launch_bounds__(256, 2), 4, 4, 3, 64)
RF_GEMM_DEEP_KERNEL_PF(gemm_f16_tn_m64_k64_s3_pf, __launch_bounds__(256), 2, 4, 3, 64)
// ---- Prompt attention on the matrix units --------------------------------
//
// attention_mma_h<HD>: causal attention of many query rows (a prompt) with
// heads of HD dims (64 or 128), GQA, sliding window and soft-capping, as
// attention_tiled_f32 computes it but with f16 x f16 -> f32 mma for both
// products (flash-attention style). A block of 4 waves takes 64 query rows
// of one head, each wave 16 of them; the keys go by tiles of 64: the tile's
// keys and values are converted to f16 in shared memory, each wave forms
// its 16 x 64 scores S = Q K^T in registers, masks and scales them, updates
// its rows' running max and sum (online softmax: the four lanes of a quad
// hold a row's 64 scores), turns the probabilities into the A operand of
// the second product in place (the accumulator layout of m16n8 is the
// operand layout of m16n8k16 once packed to f16 pairs), and accumulates
// O += P V with the values read transposed by ldmatrix.trans.
//
// Launch: grid = (n_head, ceil(n_rows / 64)), block = 128 threads, rows of
// q/k/v/out on 16-byte boundaries.
#define RF_FA_ROWS 64
#define RF_FA_KEYS 64

// Four 8x8 f16 matrices from shared memory, transposed (the B operand of
// m16n8k16 from a row-major [k][n] tile).
RF_DEVICE void rf_ldmatrix_x4_trans(u32* r, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// `rows` rows of HD floats (row stride `stride` floats) from src into a
// shared f16 tile of row length HD + 8 halves, zeros for rows >= n.
template <int HD>
RF_DEVICE void rf_fa_tile(u16* dst, const float* __restrict__ src, size_t stride, int rows, int n,
                          int tid) {
    constexpr int F4 = HD / 4;  // float4s per row
    for (int i = tid; i < rows * F4; i += 128) {
        const int r = i / F4, c = (i % F4) * 4;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (r < n) v = *(const float4*)(src + (size_t)r * stride + c);
        *(uint2*)(dst + r * (HD + 8) + c) = make_uint2(rf_pack_h2(v.x, v.y), rf_pack_h2(v.z, v.w));
    }
}

template <int HD>
RF_DEVICE void rf_attention_mma(const float* __restrict__ q, const float* __restrict__ k,
                                const float* __restrict__ v, float* __restrict__ out,
                                int start_pos, int n_rows, int n_head, int n_kv, float scale,
                                int window, float softcap) {
    constexpr int LD = HD + 8;  // halves per shared row (ldmatrix rows in distinct banks)
    constexpr int KS = HD / 16;  // k16 steps of Q K^T
    constexpr int NO = HD / 8;   // n8 blocks of the output
    __shared__ __align__(16) u16 ks[RF_FA_KEYS * LD];
    __shared__ __align__(16) u16 vs[RF_FA_KEYS * LD];
    // Row tiles from the last (the most keys, causal) to the first in launch
    // order, so the longest blocks start first and the short ones fill in
    // behind them (RF_FA_LIGHT_FIRST: the launch order, for comparisons).
#if defined(RF_FA_LIGHT_FIRST)
    const int rt = blockIdx.y;
#else
    const int rt = gridDim.y - 1 - blockIdx.y;
#endif
    const int h = blockIdx.x, r0 = rt * RF_FA_ROWS;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    const int g = lane >> 2, qd = lane & 3;
    const int kvh = h / (n_head / n_kv);
    const size_t q_stride = (size_t)n_head * HD, kv_stride = (size_t)n_kv * HD;
    // The query tile through `ks` into registers: this wave's A fragments.
    rf_fa_tile<HD>(ks, q + (size_t)r0 * q_stride + (size_t)h * HD, q_stride, RF_FA_ROWS,
                   n_rows - r0, tid);
    __syncthreads();
    u32 qf[KS][4];
    {
        const u32 base = rf_smem_addr(ks);
        const int row = w * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), col = (lane >> 4) * 8;
#pragma unroll
        for (int s = 0; s < KS; s++) rf_ldmatrix_x4(qf[s], base + (row * LD + s * 16 + col) * 2);
    }
    __syncthreads();  // ks is the key tile from here
    // This lane's two rows (g and g + 8 of the wave's 16) and their positions.
    const int ra = r0 + w * 16 + g, rb = ra + 8;
    const int pa = start_pos + ra, pb = start_pos + rb;
    const int lo_a = window > 0 ? max(0, pa - window + 1) : 0;
    const int lo_b = window > 0 ? max(0, pb - window + 1) : 0;
    // The block's key range: from its first row's window start to its last row.
    const int last = start_pos + min(r0 + RF_FA_ROWS, n_rows) - 1;
    const int first = window > 0 ? max(0, start_pos + r0 - window + 1) : 0;
    float o[NO][4];
#pragma unroll
    for (int j = 0; j < NO; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[j][e] = 0.0f;
    float m_a = RF_NEG_INF, m_b = RF_NEG_INF, l_a = 0.0f, l_b = 0.0f;
    const u32 kbase = rf_smem_addr(ks), vbase = rf_smem_addr(vs);
    for (int j0 = first; j0 <= last; j0 += RF_FA_KEYS) {
        const int nk = min(RF_FA_KEYS, last - j0 + 1);
        rf_fa_tile<HD>(ks, k + (size_t)j0 * kv_stride + (size_t)kvh * HD, kv_stride, RF_FA_KEYS,
                       nk, tid);
        rf_fa_tile<HD>(vs, v + (size_t)j0 * kv_stride + (size_t)kvh * HD, kv_stride, RF_FA_KEYS,
                       nk, tid);
        __syncthreads();
        // S = Q K^T: 8 n8 blocks of keys.
        float sc[8][4];
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) sc[j][e] = 0.0f;
        const int b_row = (lane >> 4) * 8 + (lane & 7), b_col = ((lane >> 3) & 1) * 8;
#pragma unroll
        for (int s = 0; s < KS; s++) {
#pragma unroll
            for (int jj = 0; jj < 4; jj++) {
                u32 r[4];
                rf_ldmatrix_x4(r, kbase + ((jj * 16 + b_row) * LD + s * 16 + b_col) * 2);
                const u32 b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
                rf_mma_16x8x16(sc[2 * jj], qf[s], b0);
                rf_mma_16x8x16(sc[2 * jj + 1], qf[s], b1);
            }
        }
        // Scale, soft-cap, mask; the tile's row maxima.
        float tm_a = RF_NEG_INF, tm_b = RF_NEG_INF;
#pragma unroll
        for (int j = 0; j < 8; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = j0 + j * 8 + 2 * qd + (e & 1);
                const bool row_b = e >= 2;
                const int p = row_b ? pb : pa, lo = row_b ? lo_b : lo_a;
                float x = sc[j][e] * scale;
                if (softcap > 0.0f) x = softcap * tanhf(x / softcap);
                if (key > p || key < lo || key > last) x = RF_NEG_INF;
                sc[j][e] = x;
                if (row_b)
                    tm_b = fmaxf(tm_b, x);
                else
                    tm_a = fmaxf(tm_a, x);
            }
        }
        tm_a = fmaxf(tm_a, RF_SHFL_XOR(tm_a, 1));
        tm_a = fmaxf(tm_a, RF_SHFL_XOR(tm_a, 2));
        tm_b = fmaxf(tm_b, RF_SHFL_XOR(tm_b, 1));
        tm_b = fmaxf(tm_b, RF_SHFL_XOR(tm_b, 2));
        const float mn_a = fmaxf(m_a, tm_a), mn_b = fmaxf(m_b, tm_b);
        // Rows with no key yet (all masked) keep max -inf: factors 1 and 0.
        const float c_a = mn_a == RF_NEG_INF ? 1.0f : expf(m_a - mn_a);
        const float c_b = mn_b == RF_NEG_INF ? 1.0f : expf(m_b - mn_b);
        float s_a = 0.0f, s_b = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const bool row_b = e >= 2;
                const float mn = row_b ? mn_b : mn_a;
                const float pr = sc[j][e] == RF_NEG_INF ? 0.0f : expf(sc[j][e] - mn);
                sc[j][e] = pr;
                if (row_b)
                    s_b += pr;
                else
                    s_a += pr;
            }
        }
        s_a += RF_SHFL_XOR(s_a, 1);
        s_a += RF_SHFL_XOR(s_a, 2);
        s_b += RF_SHFL_XOR(s_b, 1);
        s_b += RF_SHFL_XOR(s_b, 2);
        l_a = l_a * c_a + s_a;
        l_b = l_b * c_b + s_b;
        m_a = mn_a;
        m_b = mn_b;
#pragma unroll
        for (int j = 0; j < NO; j++) {
            o[j][0] *= c_a;
            o[j][1] *= c_a;
            o[j][2] *= c_b;
            o[j][3] *= c_b;
        }
        // O += P V: P's k16 step kk is score blocks 2kk and 2kk + 1.
        const int v_key = ((lane >> 3) & 1) * 8 + (lane & 7), v_dim = (lane >> 4) * 8;
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            const u32 pa4[4] = {rf_pack_h2(sc[2 * kk][0], sc[2 * kk][1]),
                                rf_pack_h2(sc[2 * kk][2], sc[2 * kk][3]),
                                rf_pack_h2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                                rf_pack_h2(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
#pragma unroll
            for (int nb = 0; nb < NO; nb += 2) {
                u32 r[4];
                rf_ldmatrix_x4_trans(r, vbase + ((kk * 16 + v_key) * LD + nb * 8 + v_dim) * 2);
                const u32 b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
                rf_mma_16x8x16(o[nb], pa4, b0);
                rf_mma_16x8x16(o[nb + 1], pa4, b1);
            }
        }
        __syncthreads();  // ks and vs are refilled by the next tile
    }
    const float ia = l_a > 0.0f ? 1.0f / l_a : 0.0f, ib = l_b > 0.0f ? 1.0f / l_b : 0.0f;
#pragma unroll
    for (int j = 0; j < NO; j++) {
        const int d = j * 8 + 2 * qd;
        if (ra < n_rows)
            *(float2*)(out + (size_t)ra * q_stride + (size_t)h * HD + d) =
                make_float2(o[j][0] * ia, o[j][1] * ia);
        if (rb < n_rows)
            *(float2*)(out + (size_t)rb * q_stride + (size_t)h * HD + d) =
                make_float2(o[j][2] * ib, o[j][3] * ib);
    }
}

#define RF_ATTENTION_MMA(HD)                                                                     \
    extern "C" __global__ void __launch_bounds__(128)                                            \
        attention_mma_h##HD(const float* __restrict__ q, const float* __restrict__ k,            \
                            const float* __restrict__ v, float* __restrict__ out, int start_pos, \
                            int n_rows, int n_head, int n_kv, int head_dim, float scale,         \
                            int window, float softcap) {                                         \
        RF_GRID_SYNC();                                                                          \
        rf_attention_mma<HD>(q, k, v, out, start_pos, n_rows, n_head, n_kv, scale, window,       \
                             softcap);                                                           \
    }
RF_ATTENTION_MMA(64)
RF_ATTENTION_MMA(128)

// Rows of W (any format) -> f16, one thread per 32-value chunk: out[r][k].
// A wave's 32 chunks (2 KiB of halves, contiguous in `out`) go out through
// shared memory so that each store instruction writes 512 contiguous bytes
// (a thread's own 64 bytes at once would spread every instruction over 2 KiB).
// Launch: block = 256 threads.
#define RF_DEQ_F16_KERNEL(name, deq)                                                            \
    extern "C" __global__ void __launch_bounds__(256)                                           \
        dequant_f16_##name(const u8* __restrict__ W, int row_bytes, int K, int N,               \
                           uint4* __restrict__ out) {                                           \
        RF_GRID_SYNC();                                                                         \
        __shared__ uint4 st[8][32 * 5];                                                         \
        const int chunks = K / 32;                                                              \
        const size_t total = (size_t)N * chunks;                                                \
        const size_t id = (size_t)blockIdx.x * blockDim.x + threadIdx.x;                        \
        const int lane = threadIdx.x & 31, wv = threadIdx.x >> 5;                               \
        float y[32];                                                                            \
        if (id < total) {                                                                       \
            deq(W + (size_t)(id / chunks) * row_bytes, (int)(id % chunks), K, y);               \
        } else {                                                                                \
            _Pragma("unroll") for (int i = 0; i < 32; i++) y[i] = 0.0f;                         \
        }                                                                                       \
        _Pragma("unroll") for (int i = 0; i < 4; i++) st[wv][lane * 5 + i] =                    \
            make_uint4(rf_pack_h2(y[8 * i], y[8 * i + 1]), rf_pack_h2(y[8 * i + 2], y[8 * i + 3]), \
                       rf_pack_h2(y[8 * i + 4], y[8 * i + 5]),                                  \
                       rf_pack_h2(y[8 * i + 6], y[8 * i + 7]));                                 \
        __syncwarp();                                                                           \
        const size_t first = id - lane; /* the wave's first chunk */                            \
        _Pragma("unroll") for (int j = 0; j < 4; j++) {                                         \
            const int e = j * 32 + lane; /* uint4 e of the wave's 128 */                        \
            if (first + e / 4 < total) out[first * 4 + e] = st[wv][(e / 4) * 5 + e % 4];       \
        }                                                                                       \
    }
RF_FOR_EACH_FORMAT(RF_DEQ_F16_KERNEL)

// rf_scale_min_k4 with the 12 scale bytes as three little-endian words
// (no byte array to index at run time).
RF_DEVICE void rf_scale_min_k4_words(int j, u32 s0, u32 s1, u32 s2, int* sc, int* mn) {
    const int sh = 8 * (j % 4);
    const u32 b0 = (s0 >> sh) & 0xFF, b1 = (s1 >> sh) & 0xFF, b2 = (s2 >> sh) & 0xFF;
    if (j < 4) {
        *sc = (int)(b0 & 63);
        *mn = (int)(b1 & 63);
    } else {
        *sc = (int)((b2 & 0xF) | ((b0 >> 6) << 4));
        *mn = (int)((b2 >> 4) | ((b1 >> 6) << 4));
    }
}

// N little-endian words from byte address p, which is 2-byte aligned: word
// i holds bytes p + 4i .. p + 4i + 3. Aligned 32-bit loads, two halves
// joined where p is not 4-byte aligned (no load past the last word's bytes).
template <int N>
RF_DEVICE void rf_ld_words_a2(const u8* p, u32* w) {
    const u32* a = (const u32*)((size_t)p & ~(size_t)3);
    const bool odd = ((size_t)p & 3) != 0;
#pragma unroll
    for (int i = 0; i < N; i++) {
        const u32 lo = a[i];
        w[i] = odd ? (lo >> 16) | (a[i + 1] << 16) : lo;
    }
}

// Q6_K rows -> f16 with 32-bit loads, one thread per half super-block (128
// values: the half's 64 ql bytes, 32 qh bytes and 8 scales). The same
// values as dequant_f16_q6_k (same arithmetic). A group of 32 threads
// writes its 8 KiB (contiguous in `out`) through shared memory, 512
// contiguous bytes a store instruction. Needs W 2-byte aligned (210-byte
// super-blocks: every other one is not 4-byte aligned).
// Launch: block = 128 threads, one per 128 values.
extern "C" __global__ void __launch_bounds__(128)
    dequant_f16_q6_k_halves(const u8* __restrict__ W, int row_bytes, int K, int N,
                            uint4* __restrict__ out) {
    RF_GRID_SYNC();
    __shared__ uint4 st[4][32 * 17];
    const int halves = K / 128;
    const size_t total = (size_t)N * halves;
    const size_t id = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x & 31, wv = threadIdx.x >> 5;
    if (id < total) {
        const int p = (int)(id % halves), h = p % 2;
        const u8* b = W + (size_t)(id / halves) * row_bytes + (size_t)(p / 2) * 210;
        u32 ql[16], qh[8], sw[2];
        rf_ld_words_a2<16>(b + h * 64, ql);
        rf_ld_words_a2<8>(b + 128 + h * 32, qh);
        rf_ld_words_a2<2>(b + 192 + h * 8, sw);
        const float d = rf_h2f(*(const u16*)(b + 208));
        // Chunk k (32 values) of the half: nibbles of ql bytes (k & 1) * 32 ..,
        // low for k < 2, high above; qh bits 2k, 2k + 1; scales 2k, 2k + 1.
#pragma unroll
        for (int k = 0; k < 4; k++) {
#pragma unroll
            for (int g = 0; g < 4; g++) {
                // Values 8g .. 8g + 7 of chunk k: ql words (k & 1) * 8 + 2g, +1.
                const float dsc = d * (float)(i8)((sw[(2 * k + g / 2) / 4] >> (8 * ((2 * k + g / 2) % 4))) & 0xFF);
                u32 hv[4];
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int l = 8 * g + 2 * e; // first of the pair of values
                    const u32 qlw = ql[(k & 1) * 8 + l / 4], qhw = qh[l / 4];
                    const int sh = 8 * (l % 4);
                    int q2[2];
#pragma unroll
                    for (int v = 0; v < 2; v++) {
                        const u32 lb = (qlw >> (sh + 8 * v)) & 0xFF, hb = (qhw >> (sh + 8 * v)) & 0xFF;
                        const u32 nib = k >= 2 ? lb >> 4 : lb & 0xF;
                        q2[v] = (int)(nib | (((hb >> (2 * k)) & 3) << 4)) - 32;
                    }
                    hv[e] = rf_pack_h2(dsc * (float)q2[0], dsc * (float)q2[1]);
                }
                st[wv][lane * 17 + k * 4 + g] = make_uint4(hv[0], hv[1], hv[2], hv[3]);
            }
        }
    } else {
#pragma unroll
        for (int i = 0; i < 16; i++) st[wv][lane * 17 + i] = make_uint4(0, 0, 0, 0);
    }
    __syncwarp();
    const size_t first = id - lane; // the group's first half super-block
#pragma unroll
    for (int j = 0; j < 16; j++) {
        const int e = j * 32 + lane; // uint4 e of the group's 512
        if (first + e / 16 < total) out[first * 16 + e] = st[wv][(e / 16) * 17 + e % 16];
    }
}

// Q4_K rows -> f16 with whole-word loads, one thread per pair of 32-value
// sub-blocks (the pair shares 32 bytes of quants: low nibbles the first,
// high nibbles the second): d/dmin as one word, the 12 scale bytes as three,
// the quants as two 16-byte loads. The same values as dequant_f16_q4_k
// (same arithmetic). A group of 32 threads writes its 4 KiB (contiguous in
// `out`) through shared memory, 512 contiguous bytes a store instruction.
// Needs W 16-byte aligned (rows are: 144 bytes a super-block).
// Launch: block = 256 threads, one per 64 values.
extern "C" __global__ void __launch_bounds__(256)
    dequant_f16_q4_k_pairs(const u8* __restrict__ W, int row_bytes, int K, int N,
                           uint4* __restrict__ out) {
    RF_GRID_SYNC();
    __shared__ uint4 st[8][32 * 9];
    const int pairs = K / 64;
    const size_t total = (size_t)N * pairs;
    const size_t id = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x & 31, wv = threadIdx.x >> 5;
    uint4 h[8];
    if (id < total) {
        const int p = (int)(id % pairs), j = p % 4;
        const u8* b = W + (size_t)(id / pairs) * row_bytes + (size_t)(p / 4) * 144;
        const u32 dm = *(const u32*)b;
        const u32 s0 = *(const u32*)(b + 4), s1 = *(const u32*)(b + 8), s2 = *(const u32*)(b + 12);
        const uint4 q0 = *(const uint4*)(b + 16 + j * 32);
        const uint4 q1 = *(const uint4*)(b + 32 + j * 32);
        int sa, ma, sb, mb;
        rf_scale_min_k4_words(2 * j, s0, s1, s2, &sa, &ma);
        rf_scale_min_k4_words(2 * j + 1, s0, s1, s2, &sb, &mb);
        const float d0 = rf_h2f((u16)dm), m0 = rf_h2f((u16)(dm >> 16));
        const float da = d0 * (float)sa, mna = m0 * (float)ma;
        const float db = d0 * (float)sb, mnb = m0 * (float)mb;
        const u32 w[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            // Words 2i and 2i + 1: values 8i .. 8i + 7 of each sub-block.
            u32 lo[4], hi[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const u32 v = w[2 * i + e / 2] >> (16 * (e % 2));
                lo[e] = rf_pack_h2(da * (float)(v & 0xF) - mna, da * (float)((v >> 8) & 0xF) - mna);
                hi[e] = rf_pack_h2(db * (float)((v >> 4) & 0xF) - mnb,
                                   db * (float)((v >> 12) & 0xF) - mnb);
            }
            h[i] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
            h[4 + i] = make_uint4(hi[0], hi[1], hi[2], hi[3]);
        }
    } else {
#pragma unroll
        for (int i = 0; i < 8; i++) h[i] = make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int i = 0; i < 8; i++) st[wv][lane * 9 + i] = h[i];
    __syncwarp();
    const size_t first = id - lane; // the group's first pair
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const int e = j * 32 + lane; // uint4 e of the group's 256
        if (first + e / 8 < total) out[first * 8 + e] = st[wv][(e / 8) * 9 + e % 8];
    }
}

#define RF_MMA_KERNEL(name, deq)                                                                 \
    struct rf_deq_##name {                                                                       \
        RF_DEVICE static void run(const u8* row, int c, int K, float* y) { deq(row, c, K, y); } \
    };                                                                                           \
    extern "C" __global__ void __launch_bounds__(RF_MMA_THREADS)                                 \
        matmul_mma_##name(const u8* __restrict__ W, int row_bytes, int K, int N,                \
                          const float* __restrict__ X, int T, float* __restrict__ Y) {          \
        RF_GRID_SYNC();                                                                          \
        rf_mma_tile<rf_deq_##name>(W, row_bytes, K, N, X, T, Y);                                 \
    }

#else

// No matrix instructions of ours for this target: empty kernels, so that
// every target exports the same names (the launcher never runs these).
#define RF_MMA_KERNEL(name, deq)                                                   \
    extern "C" __global__ void matmul_mma_##name(const u8*, int, int, int,        \
                                                 const float*, int, float*) {}    \
    extern "C" __global__ void dequant_f16_##name(const u8*, int, int, int, uint4*) {}
extern "C" __global__ void f32_to_f16(const float*, int, u32*) {}
extern "C" __global__ void dequant_f16_q4_k_pairs(const u8*, int, int, int, uint4*) {}
extern "C" __global__ void dequant_f16_q6_k_halves(const u8*, int, int, int, uint4*) {}
extern "C" __global__ void gemm_f16_tn(const u16*, const u16*, int, int, int, float*) {}
extern "C" __global__ void gemm_f16_tn_m64(const u16*, const u16*, int, int, int, float*) {}
extern "C" __global__ void gemm_f16_tn_s3(const u16*, const u16*, int, int, int, float*) {}
extern "C" __global__ void gemm_f16_tn_s4(const u16*, const u16*, int, int, int, float*) {}
extern "C" __global__ void gemm_f16_tn_m64_s3(const u16*, const u16*, int, int, int, float*) {}
extern "C" __global__ void gemm_f16_tn_m64_s4(const u16*, const u16*, int, int, int, float*) {}
extern "C" __global__ void gemm_f16_tn_n256_s3(const u16*, const u16*, int, int, int, float*) {}
extern "C" __global__ void gemm_f16_tn_k64_s3(const u16*, const u16*, int, int, int, float*) {}
extern "C" __global__ void gemm_f16_tn_m64_k64_s3(const u16*, const u16*, int, int, int, float*) {}
extern "C" __global__ void gemm_f16_tn_k64_s3_pf(const u16*, const u16*, int, int, int, float*) {}
extern "C" __global__ void gemm_f16_tn_m64_k64_s3_pf(const u16*, const u16*, int, int, int,
                                                     float*) {}
extern "C" __global__ void attention_mma_h64(const float*, const float*, const float*, float*, int,
                                             int, int, int, int, float, int, float) {}
extern "C" __global__ void attention_mma_h128(const float*, const float*, const float*, float*,
                                              int, int, int, int, int, float, int, float) {}

#endif

RF_FOR_EACH_FORMAT(RF_MMA_KERNEL)
