// Causal attention with GQA, sliding window and soft-capping, flash-style:
// keys are visited in tiles of blockDim.x positions with an online softmax,
// so any sequence length up to the context fits in fixed shared memory.
//
// q:   [n_rows][n_head * head_dim]  (query row i is at position start_pos + i)
// k,v: [n_ctx][n_kv * head_dim]     (one layer of the cache)
// out: [n_rows][n_head * head_dim]
// Launch: grid = (n_head, n_rows), block = RF_ATT_THREADS, dynamic shared
// memory = (head_dim + RF_ATT_THREADS) floats; head_dim <= 4 * RF_ATT_THREADS.
#include "compat.h"
#include "common.h"

#define RF_ATT_THREADS 128
#define RF_ATT_PER_THREAD 4

extern "C" __global__ void attention_f32(const float* __restrict__ q, const float* __restrict__ k,
                                         const float* __restrict__ v, float* __restrict__ out,
                                         int start_pos, int n_head, int n_kv, int head_dim,
                                         float scale, int window, float softcap) {
    extern __shared__ float smem[];
    __shared__ float scratch[32];
    float* qs = smem;               // head_dim
    float* ps = smem + head_dim;    // blockDim.x probabilities of the tile
    const int h = blockIdx.x, row = blockIdx.y, tid = threadIdx.x, nt = blockDim.x;
    const int kvh = h / (n_head / n_kv);
    const int pos = start_pos + row;
    const int lo = window > 0 ? max(0, pos - window + 1) : 0;
    const size_t q_stride = (size_t)n_head * head_dim, kv_stride = (size_t)n_kv * head_dim;
    const float* qr = q + row * q_stride + (size_t)h * head_dim;
    for (int d = tid; d < head_dim; d += nt) qs[d] = qr[d];
    __syncthreads();

    float acc[RF_ATT_PER_THREAD];
#pragma unroll
    for (int a = 0; a < RF_ATT_PER_THREAD; a++) acc[a] = 0.0f;
    float m = RF_NEG_INF, l = 0.0f;

    for (int j0 = lo; j0 <= pos; j0 += nt) {
        const int j = j0 + tid;
        float s = RF_NEG_INF;
        if (j <= pos) {
            const float* kr = k + (size_t)j * kv_stride + (size_t)kvh * head_dim;
            float dot = 0.0f;
            for (int d = 0; d < head_dim; d++) dot += qs[d] * kr[d];
            s = dot * scale;
            if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
        }
        const float m_new = fmaxf(m, rf_block_max(s, scratch));
        const float corr = expf(m - m_new);
        const float p = j <= pos ? expf(s - m_new) : 0.0f;
        ps[tid] = p;
        l = l * corr + rf_block_sum(p, scratch);  // contains __syncthreads: ps is complete
        const int n_in_tile = min(nt, pos - j0 + 1);
#pragma unroll
        for (int a = 0; a < RF_ATT_PER_THREAD; a++) {
            const int d = tid + a * nt;
            if (d < head_dim) {
                float sum = acc[a] * corr;
                const float* vc = v + (size_t)j0 * kv_stride + (size_t)kvh * head_dim + d;
                for (int jj = 0; jj < n_in_tile; jj++) sum += ps[jj] * vc[(size_t)jj * kv_stride];
                acc[a] = sum;
            }
        }
        m = m_new;
        __syncthreads();  // ps is rewritten by the next tile
    }
    float* o = out + row * q_stride + (size_t)h * head_dim;
#pragma unroll
    for (int a = 0; a < RF_ATT_PER_THREAD; a++) {
        const int d = tid + a * nt;
        if (d < head_dim) o[d] = acc[a] / l;
    }
}
