// Causal attention with GQA, sliding window and soft-capping, flash-style:
// keys are visited in tiles of blockDim.x positions with an online softmax,
// so any sequence length up to the context fits in fixed shared memory.
//
// q:   [n_rows][n_head * head_dim]  (query row i is at position start_pos + i)
// k,v: [n_ctx][n_kv * head_dim]     (one layer of the cache)
// out: [n_rows][n_head * head_dim]
// Launch: grid = (n_head, n_rows), block = RF_ATT_THREADS, dynamic shared
// memory = (head_dim + RF_ATT_THREADS) floats; head_dim <= 4 * RF_ATT_THREADS.
// For few query rows (decode) the key range is also split over blockIdx.z
// (attention_split_f32, partial results), merged by attention_combine_f32.
#include "compat.h"
#include "common.h"

#define RF_ATT_THREADS 128
#define RF_ATT_PER_THREAD 4


// Online-softmax attention of one (head, query row) over keys lo..=hi.
// Leaves this thread's output dims in acc (unnormalised), the running max in
// *m_out and the sum of exponentials in *l_out.
RF_DEVICE void rf_attend(const float* __restrict__ qr, const float* __restrict__ k,
                         const float* __restrict__ v, int lo, int hi, int kvh, int head_dim,
                         size_t kv_stride, float scale, float softcap, float* smem,
                         float* scratch, float* acc, float* m_out, float* l_out) {
    float* qs = smem;             // head_dim
    float* ps = smem + head_dim;  // blockDim.x probabilities of the tile
    const int tid = threadIdx.x, nt = blockDim.x;
    for (int d = tid; d < head_dim; d += nt) qs[d] = qr[d];
    __syncthreads();
#pragma unroll
    for (int a = 0; a < RF_ATT_PER_THREAD; a++) acc[a] = 0.0f;
    float m = RF_NEG_INF, l = 0.0f;
    for (int j0 = lo; j0 <= hi; j0 += nt) {
        const int j = j0 + tid;
        float s = RF_NEG_INF;
        if (j <= hi) {
            const float* kr = k + (size_t)j * kv_stride + (size_t)kvh * head_dim;
            float dot = 0.0f;
            for (int d = 0; d < head_dim; d++) dot += qs[d] * kr[d];
            s = dot * scale;
            if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
        }
        const float m_new = fmaxf(m, rf_block_max(s, scratch));
        const float corr = expf(m - m_new);
        const float p = j <= hi ? expf(s - m_new) : 0.0f;
        ps[tid] = p;
        l = l * corr + rf_block_sum(p, scratch);  // contains __syncthreads: ps is complete
        const int n_in_tile = min(nt, hi - j0 + 1);
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
    *m_out = m;
    *l_out = l;
}

extern "C" __global__ void attention_f32(const float* __restrict__ q, const float* __restrict__ k,
                                         const float* __restrict__ v, float* __restrict__ out,
                                         int start_pos, int n_head, int n_kv, int head_dim,
                                         float scale, int window, float softcap) {
    extern __shared__ float smem[];
    __shared__ float scratch[32];
    const int h = blockIdx.x, row = blockIdx.y, tid = threadIdx.x, nt = blockDim.x;
    const int pos = start_pos + row;
    const int lo = window > 0 ? max(0, pos - window + 1) : 0;
    const size_t q_stride = (size_t)n_head * head_dim, kv_stride = (size_t)n_kv * head_dim;
    float acc[RF_ATT_PER_THREAD], m, l;
    rf_attend(q + row * q_stride + (size_t)h * head_dim, k, v, lo, pos, h / (n_head / n_kv), head_dim,
              kv_stride, scale, softcap, smem, scratch, acc, &m, &l);
    float* o = out + row * q_stride + (size_t)h * head_dim;
#pragma unroll
    for (int a = 0; a < RF_ATT_PER_THREAD; a++) {
        const int d = tid + a * nt;
        if (d < head_dim) o[d] = acc[a] / l;
    }
}

// Split over keys: block z handles keys [lo + z*chunk, lo + (z+1)*chunk) and
// writes its unnormalised output to part_o[((row*n_head + h)*splits + z)*head_dim]
// and (max, sum) to part_ml[2 * ((row*n_head + h)*splits + z)].
extern "C" __global__ void attention_split_f32(const float* __restrict__ q, const float* __restrict__ k,
                                               const float* __restrict__ v, float* __restrict__ part_o,
                                               float* __restrict__ part_ml, int start_pos, int n_head,
                                               int n_kv, int head_dim, float scale, int window,
                                               float softcap, int chunk) {
    extern __shared__ float smem[];
    __shared__ float scratch[32];
    const int h = blockIdx.x, row = blockIdx.y, z = blockIdx.z, splits = gridDim.z;
    const int tid = threadIdx.x, nt = blockDim.x;
    const int pos = start_pos + row;
    const int lo0 = window > 0 ? max(0, pos - window + 1) : 0;
    const int lo = lo0 + z * chunk, hi = min(pos, lo + chunk - 1);
    const size_t q_stride = (size_t)n_head * head_dim, kv_stride = (size_t)n_kv * head_dim;
    const size_t part = ((size_t)row * n_head + h) * splits + z;
    float acc[RF_ATT_PER_THREAD], m = RF_NEG_INF, l = 0.0f;
    if (lo <= hi) {
        rf_attend(q + row * q_stride + (size_t)h * head_dim, k, v, lo, hi, h / (n_head / n_kv),
                  head_dim, kv_stride, scale, softcap, smem, scratch, acc, &m, &l);
    } else {
#pragma unroll
        for (int a = 0; a < RF_ATT_PER_THREAD; a++) acc[a] = 0.0f;
    }
#pragma unroll
    for (int a = 0; a < RF_ATT_PER_THREAD; a++) {
        const int d = tid + a * nt;
        if (d < head_dim) part_o[part * head_dim + d] = acc[a];
    }
    if (tid == 0) {
        part_ml[2 * part] = m;
        part_ml[2 * part + 1] = l;
    }
}

// Merge the splits of attention_split_f32. Launch: grid = (n_head, n_rows), block = 128.
extern "C" __global__ void attention_combine_f32(const float* __restrict__ part_o,
                                                 const float* __restrict__ part_ml,
                                                 float* __restrict__ out, int n_head, int head_dim,
                                                 int splits) {
    const int h = blockIdx.x, row = blockIdx.y;
    const size_t base = ((size_t)row * n_head + h) * splits;
    float mx = RF_NEG_INF;
    for (int z = 0; z < splits; z++) mx = fmaxf(mx, part_ml[2 * (base + z)]);
    float l = 0.0f;
    for (int z = 0; z < splits; z++) {
        const float m = part_ml[2 * (base + z)];
        if (m != RF_NEG_INF) l += expf(m - mx) * part_ml[2 * (base + z) + 1];
    }
    float* o = out + ((size_t)row * n_head + h) * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float s = 0.0f;
        for (int z = 0; z < splits; z++) {
            const float m = part_ml[2 * (base + z)];
            if (m != RF_NEG_INF) s += expf(m - mx) * part_o[(base + z) * head_dim + d];
        }
        o[d] = s / l;
    }
}
