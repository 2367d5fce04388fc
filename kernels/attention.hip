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
// dyn_pos (the decode kernels): when not null, start_pos is read from there
// instead (a recorded decode step replayed at a later position).
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
    // Rows of whole float4s on 16-byte boundaries (the same order of
    // additions as the scalar loop, so the same result).
    const bool vec4 = (head_dim & 3) == 0 && (((size_t)k | (kv_stride * 4)) & 15) == 0;
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
            if (vec4) {
                // 16-byte loads of the key row: a quarter of the load
                // instructions (each lane walks its own key row).
                const float4* k4 = (const float4*)kr;
                const float4* q4 = (const float4*)qs;
#pragma unroll 4
                for (int d4 = 0; d4 < (head_dim >> 2); d4++) {
                    const float4 a = q4[d4], b = k4[d4];
                    dot += a.x * b.x;
                    dot += a.y * b.y;
                    dot += a.z * b.z;
                    dot += a.w * b.w;
                }
            } else {
                for (int d = 0; d < head_dim; d++) dot += qs[d] * kr[d];
            }
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

// oq, ods: when not null (one query row, head_dim a multiple of 32), the
// output row is also written as 8-bit blocks for the decode mat-vec that
// reads it next (see rf_q8_emit1); each block writes its head's blocks.
extern "C" __global__ void attention_f32(const float* __restrict__ q, const float* __restrict__ k,
                                         const float* __restrict__ v, float* __restrict__ out,
                                         int start_pos, int n_head, int n_kv, int head_dim,
                                         float scale, int window, float softcap,
                                         i8* __restrict__ oq, float2* __restrict__ ods,
                                         const u32* __restrict__ dyn_pos) {
    RF_GRID_SYNC();
    extern __shared__ float smem[];
    __shared__ float scratch[32];
    if (dyn_pos) start_pos = (int)*dyn_pos;
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
        const float r = d < head_dim ? acc[a] / l : 0.0f;
        if (d < head_dim) o[d] = r;
        if (oq) rf_q8_emit1(r, h * head_dim + d, d < head_dim, oq, ods);
    }
}

// Few query rows, heads of at most 4 * RF_WAVE dims (a multiple of 4, rows
// on 16-byte boundaries): one (head, query row) per block of 4 waves. A key
// row is read by a whole wave with one 16-byte load per lane (coalesced; the
// kernel above walks a key row per thread), the dot product reduced with
// shuffles; the waves take every 4th key of a tile of RF_DEC_TILE for the
// scores and again, with the same keys, for the weighted values, and add
// their partial outputs through shared memory. Online softmax across
// tiles. oq, ods as attention_f32.
#define RF_DEC_TILE 256
#define RF_DEC_WAVES 4

RF_DEVICE float4 rf_f4_axpy(float a, float4 x, float4 y) {
    return make_float4(y.x + a * x.x, y.y + a * x.y, y.z + a * x.z, y.w + a * x.w);
}

// The body of attention_decode_f32; with ROPE (one query row, every dim
// rotated) also the rotation of the row's query and of its key and the
// cache write of that key and value (attention_decode_rope_f32).
template <bool ROPE>
RF_DEVICE void rf_attention_decode(const float* __restrict__ q, const float* __restrict__ k,
                                   const float* __restrict__ v, float* __restrict__ out,
                                   int start_pos, int n_head, int n_kv, int head_dim, float scale,
                                   int window, float softcap, i8* __restrict__ oq,
                                   float2* __restrict__ ds, const RfRope& rope,
                                   const float* __restrict__ k_new,
                                   const float* __restrict__ v_new, float* kc, float* vc) {
    __shared__ float ps[RF_DEC_TILE];
    __shared__ float red[2][RF_DEC_WAVES];
    __shared__ float4 part[RF_DEC_WAVES][RF_WAVE];
    __shared__ float2 rcs[ROPE ? 2 * RF_WAVE : 1];
    const int h = blockIdx.x, row = blockIdx.y;
    const int lane = threadIdx.x % RF_WAVE, w = threadIdx.x / RF_WAVE;
    const int pos = start_pos + row;
    const int lo = window > 0 ? max(0, pos - window + 1) : 0;
    const size_t q_stride = (size_t)n_head * head_dim, kv_stride = (size_t)n_kv * head_dim;
    const int kvh = h / (n_head / n_kv);
    const bool has = 4 * lane < head_dim;
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float4 qv = has ? ((const float4*)(q + row * q_stride + (size_t)h * head_dim))[lane] : zero;
    const float* kb = k + (size_t)kvh * head_dim + 4 * lane;
    const float* vb = v + (size_t)kvh * head_dim + 4 * lane;
    // The new key and value (position pos), in registers: read from there,
    // not from the cache, which the first query head of each KV head writes.
    float4 k_cur = zero, v_cur = zero;
    if (ROPE) {
        // The head's (cos, sin) pairs, one per thread (head_dim / 2 <= the
        // block's threads), shared by the query and the key.
        if ((int)threadIdx.x < head_dim / 2) rcs[threadIdx.x] = rf_rope_cs((float)pos, threadIdx.x, rope);
        __syncthreads();
        qv = rf_rope4(qv, lane, head_dim, rope.neox, rcs);
        k_cur = has ? ((const float4*)(k_new + (size_t)kvh * head_dim))[lane] : zero;
        k_cur = rf_rope4(k_cur, lane, head_dim, rope.neox, rcs);
        v_cur = has ? ((const float4*)(v_new + (size_t)kvh * head_dim))[lane] : zero;
        if (has && h % (n_head / n_kv) == 0 && w == 0) {
            *(float4*)(kc + (size_t)pos * kv_stride + (size_t)kvh * head_dim + 4 * lane) = k_cur;
            *(float4*)(vc + (size_t)pos * kv_stride + (size_t)kvh * head_dim + 4 * lane) = v_cur;
        }
    }
    float m = RF_NEG_INF, l = 0.0f;
    float4 acc = zero;
    for (int j0 = lo; j0 <= pos; j0 += RF_DEC_TILE) {
        const int n = min(RF_DEC_TILE, pos - j0 + 1);
        float tmax = RF_NEG_INF;
        for (int jj = w; jj < n; jj += RF_DEC_WAVES) {
            float4 kv = zero;
            if (ROPE && j0 + jj == pos)
                kv = k_cur;
            else if (has)
                kv = *(const float4*)(kb + (size_t)(j0 + jj) * kv_stride);
            float s = rf_wave_sum(qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w) * scale;
            if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
            if (lane == 0) ps[jj] = s;
            tmax = fmaxf(tmax, s);
        }
        if (lane == 0) red[0][w] = tmax;
        __syncthreads();
        float mt = red[0][0];
#pragma unroll
        for (int i = 1; i < RF_DEC_WAVES; i++) mt = fmaxf(mt, red[0][i]);
        const float m_new = fmaxf(m, mt);
        const float corr = expf(m - m_new);
        float psum = 0.0f;
        float4 a = zero;
        for (int jj = w; jj < n; jj += RF_DEC_WAVES) {
            const float p = expf(ps[jj] - m_new);
            psum += p;
            if (ROPE && j0 + jj == pos)
                a = rf_f4_axpy(p, v_cur, a);
            else if (has)
                a = rf_f4_axpy(p, *(const float4*)(vb + (size_t)(j0 + jj) * kv_stride), a);
        }
        if (lane == 0) red[1][w] = psum;
        part[w][lane] = a;
        __syncthreads();
        float ls = 0.0f;
        float4 at = zero;
#pragma unroll
        for (int i = 0; i < RF_DEC_WAVES; i++) {
            ls += red[1][i];
            at = rf_f4_axpy(1.0f, part[i][lane], at);
        }
        l = l * corr + ls;
        acc = make_float4(acc.x * corr + at.x, acc.y * corr + at.y, acc.z * corr + at.z,
                          acc.w * corr + at.w);
        m = m_new;
        __syncthreads();  // ps, red and part are rewritten by the next tile
    }
    // Every wave holds the same sums; wave 0 writes them.
    if (w != 0) return;
    const float inv = 1.0f / l;
    const float4 r = has ? make_float4(acc.x * inv, acc.y * inv, acc.z * inv, acc.w * inv) : zero;
    if (has) ((float4*)(out + row * q_stride + (size_t)h * head_dim))[lane] = r;
    // Whole 32-value blocks (head_dim a multiple of 32 when oq is given).
    if (oq) rf_q8_emit4(r, (h * head_dim >> 2) + lane, has, oq, ds);
}

extern "C" __global__ void __launch_bounds__(RF_DEC_WAVES * RF_WAVE)
    attention_decode_f32(const float* __restrict__ q, const float* __restrict__ k,
                         const float* __restrict__ v, float* __restrict__ out, int start_pos,
                         int n_head, int n_kv, int head_dim, float scale, int window,
                         float softcap, i8* __restrict__ oq, float2* __restrict__ ds,
                         const u32* __restrict__ dyn_pos) {
    RF_GRID_SYNC();
    if (dyn_pos) start_pos = (int)*dyn_pos;
    const RfRope none = {0, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    rf_attention_decode<false>(q, k, v, out, start_pos, n_head, n_kv, head_dim, scale, window,
                               softcap, oq, ds, none, nullptr, nullptr, nullptr, nullptr);
}

// Few query rows, heads of 32 to RF_KG_MAX_DIM dims (a multiple of 32, rows
// on 16-byte boundaries): one (head, query row) per block of RF_KG_THREADS.
// The block's threads form groups of 8 lanes; a group owns one key at a
// time, each lane 4 * (head_dim / 32) of its dims (float4 c * 8 + lane, so a
// group's load instruction reads 128 contiguous bytes), and group g takes
// keys lo + g, lo + g + RF_KG_GROUPS, ... two at a time, with both keys'
// and both values' loads issued before any arithmetic: every key of a
// context up to 2 * RF_KG_GROUPS is in flight at once (attention_decode_f32
// walks its keys one wave-wide load after the other). Each group keeps its
// own online softmax (max, sum, unnormalised output); the groups are merged
// through shared memory at the end. oq, ods as attention_f32.
#define RF_KG_THREADS 256
#define RF_KG_GROUPS (RF_KG_THREADS / 8)
#define RF_KG_MAX_DIM 128
#define RF_KG_C (RF_KG_MAX_DIM / 32)

RF_DEVICE float rf_group8_sum(float v) {
    v += RF_SHFL_XOR(v, 4);
    v += RF_SHFL_XOR(v, 2);
    v += RF_SHFL_XOR(v, 1);
    return v;
}

// Score of one key row (this lane's float4s kr[c * 8], c < nc) against q.
RF_DEVICE float rf_kg_score(const float4* q, const float4* k, int nc, float scale, float softcap) {
    float d = 0.0f;
#pragma unroll
    for (int c = 0; c < RF_KG_C; c++)
        if (c < nc) d += q[c].x * k[c].x + q[c].y * k[c].y + q[c].z * k[c].z + q[c].w * k[c].w;
    float s = rf_group8_sum(d) * scale;
    if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
    return s;
}

// Keys and values j0 and j1 (this lane's float4s c * 8 + li, c < nc, of
// rows kv4 float4s apart) into ka/va and kb/vb where has0 / has1; the others
// become zeros, or with KEEP stay as they are.
template <bool KEEP>
RF_DEVICE void rf_kg_load_pair(const float4* k4, const float4* v4, size_t kv4, int nc, int j0,
                               int j1, bool has0, bool has1, float4* ka, float4* kb, float4* va,
                               float4* vb) {
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int c = 0; c < RF_KG_C; c++) {
        const bool in0 = c < nc && has0, in1 = c < nc && has1;
        if (in0 || !KEEP) ka[c] = in0 ? k4[(size_t)j0 * kv4 + c * 8] : zero;
        if (in1 || !KEEP) kb[c] = in1 ? k4[(size_t)j1 * kv4 + c * 8] : zero;
        if (in0 || !KEEP) va[c] = in0 ? v4[(size_t)j0 * kv4 + c * 8] : zero;
        if (in1 || !KEEP) vb[c] = in1 ? v4[(size_t)j1 * kv4 + c * 8] : zero;
    }
}

// The groups' online-softmax results merged by the first wave (all of its
// lanes; the caller's other waves have returned): lane t < head_dim / 4
// writes float4 t of the head's output row `o_row` and every lane takes
// part in its 8-bit blocks (float4 index f0 + t of the row of all heads).
// The groups' maxima come from one wave reduction; the scales, the sum and
// the output then run over the groups in order, unrolled without branches
// (a group without keys has weight 0), so every shared-memory load is
// issued up front instead of one after the other; results equal, to the
// bit, those of a loop that skips keyless groups (adding 0 changes
// nothing).
RF_DEVICE void rf_kg_merge(const float4 (*gacc)[RF_KG_MAX_DIM / 4], const float* gm,
                           const float* gl, int head_dim, float* o_row, int f0,
                           i8* __restrict__ oq, float2* __restrict__ ds) {
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const int t = threadIdx.x;
    const float mx = rf_wave_max(t < RF_KG_GROUPS ? gm[t] : RF_NEG_INF);
    const bool has = t < (head_dim >> 2);
    const int tt = has ? t : 0;
    float L = 0.0f;
    float4 o = zero;
#pragma unroll
    for (int i = 0; i < RF_KG_GROUPS; i++) {
        const float m = gm[i];
        const float w = m == RF_NEG_INF ? 0.0f : expf(m - mx);
        L += w * gl[i];
        o = rf_f4_axpy(w, gacc[i][tt], o);
    }
    const float inv = 1.0f / L;
    const float4 r = has ? make_float4(o.x * inv, o.y * inv, o.z * inv, o.w * inv) : zero;
    if (has) ((float4*)o_row)[t] = r;
    if (oq) rf_q8_emit4(r, f0 + t, has, oq, ds);
}

extern "C" __global__ void __launch_bounds__(RF_KG_THREADS)
    attention_keygroups_f32(const float* __restrict__ q, const float* __restrict__ k,
                            const float* __restrict__ v, float* __restrict__ out, int start_pos,
                            int n_head, int n_kv, int head_dim, float scale, int window,
                            float softcap, i8* __restrict__ oq, float2* __restrict__ ds,
                            const u32* __restrict__ dyn_pos) {
    __shared__ float4 gacc[RF_KG_GROUPS][RF_KG_MAX_DIM / 4];
    __shared__ float gm[RF_KG_GROUPS], gl[RF_KG_GROUPS];
    // Read before the grid-dependency wait, as the first keys below: the
    // position is written before the step's first kernel and the cache rows
    // before start_pos by earlier calls, and this kernel starts only once
    // the kernel two before it in the stream has finished (every kernel
    // waits before it lets the next one start: RF_GRID_SYNC); the query and
    // this call's own rows (from start_pos on) come from the kernel just
    // before, so they are read after the wait.
    if (dyn_pos) start_pos = (int)*dyn_pos;
    const int h = blockIdx.x, row = blockIdx.y;
    const int g = threadIdx.x >> 3, li = threadIdx.x & 7;
    const int nc = head_dim >> 5;  // float4s per lane
    const int pos = start_pos + row;
    const int lo = window > 0 ? max(0, pos - window + 1) : 0;
    const size_t q_stride = (size_t)n_head * head_dim, kv_stride = (size_t)n_kv * head_dim;
    const int kvh = h / (n_head / n_kv);
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const float4* q4 = (const float4*)(q + row * q_stride + (size_t)h * head_dim) + li;
    const float4* k4 = (const float4*)(k + (size_t)kvh * head_dim) + li;
    const float4* v4 = (const float4*)(v + (size_t)kvh * head_dim) + li;
    const size_t kv4 = kv_stride >> 2;  // float4s per cache row
    float4 qv[RF_KG_C], acc[RF_KG_C];
    float4 ka[RF_KG_C], kb[RF_KG_C], va[RF_KG_C], vb[RF_KG_C];
    {
        // The first pass's keys from earlier calls, then the wait, then
        // those of this call and the query.
        const int j0 = lo + g, j1 = j0 + RF_KG_GROUPS;
        const bool e0 = j0 <= pos && j0 < start_pos, e1 = j1 <= pos && j1 < start_pos;
        rf_kg_load_pair<false>(k4, v4, kv4, nc, j0, j1, e0, e1, ka, kb, va, vb);
        RF_GRID_SYNC();
        rf_kg_load_pair<true>(k4, v4, kv4, nc, j0, j1, j0 <= pos && !e0, j1 <= pos && !e1, ka, kb,
                              va, vb);
    }
#pragma unroll
    for (int c = 0; c < RF_KG_C; c++) {
        qv[c] = c < nc ? q4[c * 8] : zero;
        acc[c] = zero;
    }
    float m = RF_NEG_INF, l = 0.0f;
    // The same trip count for every group (the score sums shuffle across
    // the wave's groups); keys past pos are skipped after the shuffles.
    for (int b = lo; b <= pos; b += 2 * RF_KG_GROUPS) {
        const int j0 = b + g, j1 = j0 + RF_KG_GROUPS;
        const bool has0 = j0 <= pos, has1 = j1 <= pos;
        if (b != lo) rf_kg_load_pair<false>(k4, v4, kv4, nc, j0, j1, has0, has1, ka, kb, va, vb);
        const float sa = rf_kg_score(qv, ka, nc, scale, softcap);
        const float sb = rf_kg_score(qv, kb, nc, scale, softcap);
        if (!has0) continue;  // then no key of this group is left (j1 > j0)
        const float m_new = fmaxf(m, has1 ? fmaxf(sa, sb) : sa);
        const float corr = expf(m - m_new);  // 0 for the first key (m = -inf)
        const float pa = expf(sa - m_new), pb = has1 ? expf(sb - m_new) : 0.0f;
        l = l * corr + pa + pb;
#pragma unroll
        for (int c = 0; c < RF_KG_C; c++) {
            acc[c] = make_float4(acc[c].x * corr + pa * va[c].x + pb * vb[c].x,
                                 acc[c].y * corr + pa * va[c].y + pb * vb[c].y,
                                 acc[c].z * corr + pa * va[c].z + pb * vb[c].z,
                                 acc[c].w * corr + pa * va[c].w + pb * vb[c].w);
        }
        m = m_new;
    }
#pragma unroll
    for (int c = 0; c < RF_KG_C; c++)
        if (c < nc) gacc[g][c * 8 + li] = acc[c];
    if (li == 0) {
        gm[g] = m;
        gl[g] = l;
    }
    __syncthreads();
    if (threadIdx.x >= RF_WAVE) return;
    rf_kg_merge(gacc, gm, gl, head_dim, out + row * q_stride + (size_t)h * head_dim,
                h * head_dim >> 2, oq, ds);
}

// RoPE of a head held in the key-group layout (this lane's float4s c * 8 +
// li, c < nc; every dim rotated), with cs[i] = rf_rope_cs of pair i. NeoX
// partners (dims d and d + head_dim / 2) are float4s c and c + head_dim / 64
// of the same lane: head_dim must be a multiple of 64 for NeoX.
// The NeoX case of rf_kg_rope for heads of 64 * P dims: float4 c < P of
// the first half with its partner c + P.
template <int P>
RF_DEVICE void rf_kg_rope_neox(float4* v, int li, const float2* cs) {
#pragma unroll
    for (int c = 0; c < P; c++) {
        const int i0 = 4 * (c * 8 + li);
        const float4 lo = v[c], hi = v[c + P];
        const float2 x = rf_rope_rotate(lo.x, hi.x, cs[i0]);
        const float2 y = rf_rope_rotate(lo.y, hi.y, cs[i0 + 1]);
        const float2 z = rf_rope_rotate(lo.z, hi.z, cs[i0 + 2]);
        const float2 w = rf_rope_rotate(lo.w, hi.w, cs[i0 + 3]);
        v[c] = make_float4(x.x, y.x, z.x, w.x);
        v[c + P] = make_float4(x.y, y.y, z.y, w.y);
    }
}

RF_DEVICE void rf_kg_rope(float4* v, int nc, int li, int head_dim, int neox, const float2* cs) {
    if (!neox) {
#pragma unroll
        for (int c = 0; c < RF_KG_C; c++) {
            if (c >= nc) continue;
            const int f = c * 8 + li;
            const float2 a = rf_rope_rotate(v[c].x, v[c].y, cs[2 * f]);
            const float2 b = rf_rope_rotate(v[c].z, v[c].w, cs[2 * f + 1]);
            v[c] = make_float4(a.x, a.y, b.x, b.y);
        }
        return;
    }
    // Partner distance in c: a compile-time index (a run-time one would put
    // the caller's register arrays in local memory).
    if (head_dim >> 6 == 1) {
        rf_kg_rope_neox<1>(v, li, cs);
    } else if (head_dim >> 6 == 2) {
        rf_kg_rope_neox<2>(v, li, cs);
    }
}

// attention_keygroups_f32 for one query row at position pos[0] whose query
// q and key k_new are not yet rotated: both are rotated here (every dim;
// rope as rope_f32), the key and the value row v_new are written to the
// cache at that position (kc, vc: the layer's cache; the first query head
// of each KV head writes), and the row attends over the cache's earlier
// positions (read through kr/vr, the same memory: those rows are never
// written here) and the new key and value from registers. RoPE, the cache
// write and attention in one launch.
extern "C" __global__ void __launch_bounds__(RF_KG_THREADS)
    attention_keygroups_rope_f32(const float* __restrict__ q, const float* __restrict__ k_new,
                                 const float* __restrict__ v_new, float* kc, float* vc,
                                 const float* __restrict__ kr, const float* __restrict__ vr,
                                 float* __restrict__ out, const u32* __restrict__ posp,
                                 int n_head, int n_kv, int head_dim, float scale, int window,
                                 float softcap, i8* __restrict__ oq, float2* __restrict__ ds,
                                 int neox, float theta_scale, float freq_scale, float ext_factor,
                                 float attn_factor, float corr_low, float corr_high) {
    // Before the grid-dependency wait (as in attention_keygroups_f32): the
    // position, the rotation's (cos, sin) and the first pass of cached keys;
    // the query and the new key and value come from the kernel just before.
    __shared__ float4 gacc[RF_KG_GROUPS][RF_KG_MAX_DIM / 4];
    __shared__ float gm[RF_KG_GROUPS], gl[RF_KG_GROUPS];
    __shared__ float2 rcs[RF_KG_MAX_DIM / 2];
    const RfRope rope = {neox, theta_scale, freq_scale, ext_factor, attn_factor, corr_low,
                         corr_high};
    const int pos = (int)posp[0];
    const int h = blockIdx.x;
    const int g = threadIdx.x >> 3, li = threadIdx.x & 7;
    const int nc = head_dim >> 5;
    const int lo = window > 0 ? max(0, pos - window + 1) : 0;
    const size_t kv_stride = (size_t)n_kv * head_dim;
    const int kvh = h / (n_head / n_kv);
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const float4* k4 = (const float4*)(kr + (size_t)kvh * head_dim) + li;
    const float4* v4 = (const float4*)(vr + (size_t)kvh * head_dim) + li;
    const size_t kv4 = kv_stride >> 2;
    float4 ka[RF_KG_C], kb[RF_KG_C], va[RF_KG_C], vb[RF_KG_C];
    {
        const int j0 = lo + g, j1 = j0 + RF_KG_GROUPS;
        rf_kg_load_pair<false>(k4, v4, kv4, nc, j0, j1, j0 < pos, j1 < pos, ka, kb, va, vb);
    }
    for (int t = threadIdx.x; t < head_dim / 2; t += blockDim.x)
        rcs[t] = rf_rope_cs((float)pos, t, rope);
    RF_GRID_SYNC();
    const float4* q4 = (const float4*)(q + (size_t)h * head_dim) + li;
    const float4* kn4 = (const float4*)(k_new + (size_t)kvh * head_dim) + li;
    const float4* vn4 = (const float4*)(v_new + (size_t)kvh * head_dim) + li;
    float4 qv[RF_KG_C], kcur[RF_KG_C], vcur[RF_KG_C], acc[RF_KG_C];
#pragma unroll
    for (int c = 0; c < RF_KG_C; c++) {
        qv[c] = c < nc ? q4[c * 8] : zero;
        kcur[c] = c < nc ? kn4[c * 8] : zero;
        vcur[c] = c < nc ? vn4[c * 8] : zero;
        acc[c] = zero;
    }
    __syncthreads();  // rcs
    rf_kg_rope(qv, nc, li, head_dim, neox, rcs);
    rf_kg_rope(kcur, nc, li, head_dim, neox, rcs);
    if (h % (n_head / n_kv) == 0 && g == 0) {
        float4* kw = (float4*)(kc + (size_t)pos * kv_stride + (size_t)kvh * head_dim) + li;
        float4* vw = (float4*)(vc + (size_t)pos * kv_stride + (size_t)kvh * head_dim) + li;
#pragma unroll
        for (int c = 0; c < RF_KG_C; c++)
            if (c < nc) kw[c * 8] = kcur[c], vw[c * 8] = vcur[c];
    }
    float m = RF_NEG_INF, l = 0.0f;
    // The cached keys lo .. pos - 1, as attention_keygroups_f32 (the same
    // trip count for every group; the first pass's loaded above).
    for (int b = lo; b < pos; b += 2 * RF_KG_GROUPS) {
        const int j0 = b + g, j1 = j0 + RF_KG_GROUPS;
        const bool has0 = j0 < pos, has1 = j1 < pos;
        if (b != lo) rf_kg_load_pair<false>(k4, v4, kv4, nc, j0, j1, has0, has1, ka, kb, va, vb);
        const float sa = rf_kg_score(qv, ka, nc, scale, softcap);
        const float sb = rf_kg_score(qv, kb, nc, scale, softcap);
        if (!has0) continue;
        const float m_new = fmaxf(m, has1 ? fmaxf(sa, sb) : sa);
        const float corr = expf(m - m_new);
        const float pa = expf(sa - m_new), pb = has1 ? expf(sb - m_new) : 0.0f;
        l = l * corr + pa + pb;
#pragma unroll
        for (int c = 0; c < RF_KG_C; c++) {
            acc[c] = make_float4(acc[c].x * corr + pa * va[c].x + pb * vb[c].x,
                                 acc[c].y * corr + pa * va[c].y + pb * vb[c].y,
                                 acc[c].z * corr + pa * va[c].z + pb * vb[c].z,
                                 acc[c].w * corr + pa * va[c].w + pb * vb[c].w);
        }
        m = m_new;
    }
    // The new key (position pos), from registers: group 0 takes it (every
    // group computes the score: the sum shuffles across the wave).
    {
        const float s = rf_kg_score(qv, kcur, nc, scale, softcap);
        if (g == 0) {
            const float m_new = fmaxf(m, s);
            const float corr = expf(m - m_new);
            const float p = expf(s - m_new);
            l = l * corr + p;
#pragma unroll
            for (int c = 0; c < RF_KG_C; c++)
                acc[c] = make_float4(acc[c].x * corr + p * vcur[c].x, acc[c].y * corr + p * vcur[c].y,
                                     acc[c].z * corr + p * vcur[c].z, acc[c].w * corr + p * vcur[c].w);
            m = m_new;
        }
    }
#pragma unroll
    for (int c = 0; c < RF_KG_C; c++)
        if (c < nc) gacc[g][c * 8 + li] = acc[c];
    if (li == 0) {
        gm[g] = m;
        gl[g] = l;
    }
    __syncthreads();
    if (threadIdx.x >= RF_WAVE) return;
    rf_kg_merge(gacc, gm, gl, head_dim, out + (size_t)h * head_dim, h * head_dim >> 2, oq, ds);
}

// One query row at position pos[0] whose query q and key k_new are not yet
// rotated: both are rotated here (every dim; rope as rope_f32), the key and
// the value row v_new are written to the cache (kc, vc: the layer's cache,
// also read as k and v) at that position, and the row attends as in
// attention_decode_f32. RoPE, the cache write and attention in one launch.
extern "C" __global__ void __launch_bounds__(RF_DEC_WAVES * RF_WAVE)
    attention_decode_rope_f32(const float* __restrict__ q, const float* __restrict__ k_new,
                              const float* __restrict__ v_new, float* kc, float* vc,
                              float* __restrict__ out, const u32* __restrict__ pos, int n_head,
                              int n_kv, int head_dim, float scale, int window, float softcap,
                              i8* __restrict__ oq, float2* __restrict__ ds, int neox,
                              float theta_scale, float freq_scale, float ext_factor,
                              float attn_factor, float corr_low, float corr_high) {
    RF_GRID_SYNC();
    const RfRope rope = {neox, theta_scale, freq_scale, ext_factor, attn_factor, corr_low,
                         corr_high};
    rf_attention_decode<true>(q, kc, vc, out, (int)pos[0], n_head, n_kv, head_dim, scale, window,
                              softcap, oq, ds, rope, k_new, v_new, kc, vc);
}

// Split over keys: block z handles keys [lo + z*chunk, lo + (z+1)*chunk), with
// chunk = ceil(span of the last row / splits), and
// writes its unnormalised output to part_o[((row*n_head + h)*splits + z)*head_dim]
// and (max, sum) to part_ml[2 * ((row*n_head + h)*splits + z)].
extern "C" __global__ void attention_split_f32(const float* __restrict__ q, const float* __restrict__ k,
                                               const float* __restrict__ v, float* __restrict__ part_o,
                                               float* __restrict__ part_ml, int start_pos, int n_head,
                                               int n_kv, int head_dim, float scale, int window,
                                               float softcap, const u32* __restrict__ dyn_pos) {
    RF_GRID_SYNC();
    extern __shared__ float smem[];
    __shared__ float scratch[32];
    if (dyn_pos) start_pos = (int)*dyn_pos;
    const int h = blockIdx.x, row = blockIdx.y, z = blockIdx.z, splits = gridDim.z;
    const int tid = threadIdx.x, nt = blockDim.x;
    const int pos = start_pos + row;
    // The keys of the last row (the longest span), split evenly.
    const int last = start_pos + (int)gridDim.y - 1;
    const int span = window > 0 ? min(window, last + 1) : last + 1;
    const int chunk = (span + splits - 1) / splits;
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
// oq, ods as attention_f32.
extern "C" __global__ void attention_combine_f32(const float* __restrict__ part_o,
                                                 const float* __restrict__ part_ml,
                                                 float* __restrict__ out, int n_head, int head_dim,
                                                 int splits, i8* __restrict__ oq,
                                                 float2* __restrict__ ods) {
    RF_GRID_SYNC();
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
    // The same trip count on every lane (the 8-bit blocks reduce with shuffles).
    for (int d0 = 0; d0 < head_dim; d0 += blockDim.x) {
        const int d = d0 + threadIdx.x;
        float r = 0.0f;
        if (d < head_dim) {
            float s = 0.0f;
            for (int z = 0; z < splits; z++) {
                const float m = part_ml[2 * (base + z)];
                if (m != RF_NEG_INF) s += expf(m - mx) * part_o[(base + z) * head_dim + d];
            }
            r = s / l;
            o[d] = r;
        }
        if (oq) rf_q8_emit1(r, h * head_dim + d, d < head_dim, oq, ods);
    }
}

// Prompt processing: RF_ATQ query rows of one head per block share each tile
// of RF_ATK keys and values, staged once in shared memory (the one-row kernel
// above reads every key from device memory once per query row).
// Thread (query i = tid / 16, s = tid % 16) scores keys s and s + 16 of the
// tile, the 16 threads of a query keep its online softmax with shuffles
// inside their 16-lane group, and thread s accumulates output dims s, s + 16,
// … of its query. Launch: grid = (n_head, ceil(n_rows / RF_ATQ)), block =
// RF_ATQ * 16 threads; head_dim <= RF_ATD.
#define RF_ATQ 16
#define RF_ATK 32
#define RF_ATD 128
extern "C" __global__ void __launch_bounds__(RF_ATQ * 16)
    attention_tiled_f32(const float* __restrict__ q, const float* __restrict__ k,
                        const float* __restrict__ v, float* __restrict__ out, int start_pos,
                        int n_rows, int n_head, int n_kv, int head_dim, float scale, int window,
                        float softcap) {
    RF_GRID_SYNC();
    __shared__ float qs[RF_ATQ][RF_ATD];
    // One float of padding: the 16 threads of a query read 16 different key rows.
    __shared__ float ks[RF_ATK][RF_ATD + 1];
    __shared__ float vs[RF_ATK][RF_ATD];
    __shared__ float ps[RF_ATQ][RF_ATK];
    const int h = blockIdx.x, r0 = blockIdx.y * RF_ATQ, tid = threadIdx.x, nt = blockDim.x;
    const int qi = tid >> 4, s = tid & 15;
    const int kvh = h / (n_head / n_kv);
    const size_t q_stride = (size_t)n_head * head_dim, kv_stride = (size_t)n_kv * head_dim;
    const int row = r0 + qi;
    const bool valid = row < n_rows;
    const int pos = start_pos + row;
    const int lo_q = window > 0 ? max(0, pos - window + 1) : 0;
    for (int i = tid; i < RF_ATQ * head_dim; i += nt) {
        const int a = i / head_dim, d = i % head_dim;
        qs[a][d] = r0 + a < n_rows ? q[(size_t)(r0 + a) * q_stride + (size_t)h * head_dim + d] : 0.0f;
    }
    // Keys any query of the block can see.
    const int hi_blk = start_pos + min(r0 + RF_ATQ, n_rows) - 1;
    const int lo_blk = window > 0 ? max(0, start_pos + r0 - window + 1) : 0;
    float acc[RF_ATD / 16];
#pragma unroll
    for (int i = 0; i < RF_ATD / 16; i++) acc[i] = 0.0f;
    float m = RF_NEG_INF, l = 0.0f;
    for (int j0 = lo_blk; j0 <= hi_blk; j0 += RF_ATK) {
        __syncthreads();  // the previous tile is consumed (and the queries are staged)
        for (int i = tid; i < RF_ATK * head_dim; i += nt) {
            const int a = i / head_dim, d = i % head_dim, j = j0 + a;
            const size_t off = (size_t)j * kv_stride + (size_t)kvh * head_dim + d;
            ks[a][d] = j <= hi_blk ? k[off] : 0.0f;
            vs[a][d] = j <= hi_blk ? v[off] : 0.0f;
        }
        __syncthreads();
        float sc[2];
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int kk = s + 16 * e, j = j0 + kk;
            float dot = 0.0f;
            for (int d = 0; d < head_dim; d++) dot += qs[qi][d] * ks[kk][d];
            float x = dot * scale;
            if (softcap > 0.0f) x = softcap * tanhf(x / softcap);
            sc[e] = (valid && j <= pos && j >= lo_q) ? x : RF_NEG_INF;
        }
        float mx = fmaxf(sc[0], sc[1]);
        for (int o = 8; o > 0; o >>= 1) mx = fmaxf(mx, RF_SHFL_XOR(mx, o));
        const float m_new = fmaxf(m, mx);
        const float corr = m_new == RF_NEG_INF ? 1.0f : expf(m - m_new);
        const float p0 = sc[0] == RF_NEG_INF ? 0.0f : expf(sc[0] - m_new);
        const float p1 = sc[1] == RF_NEG_INF ? 0.0f : expf(sc[1] - m_new);
        float ps_sum = p0 + p1;
        for (int o = 8; o > 0; o >>= 1) ps_sum += RF_SHFL_XOR(ps_sum, o);
        l = l * corr + ps_sum;
        m = m_new;
        ps[qi][s] = p0;
        ps[qi][s + 16] = p1;
        __syncthreads();
#pragma unroll
        for (int i = 0; i < RF_ATD / 16; i++) {
            const int d = s + 16 * i;
            if (d < head_dim) {
                float a = acc[i] * corr;
#pragma unroll 8
                for (int jj = 0; jj < RF_ATK; jj++) a += ps[qi][jj] * vs[jj][d];
                acc[i] = a;
            }
        }
    }
    if (valid) {
        float* o = out + (size_t)row * q_stride + (size_t)h * head_dim;
#pragma unroll
        for (int i = 0; i < RF_ATD / 16; i++) {
            const int d = s + 16 * i;
            if (d < head_dim) o[d] = l > 0.0f ? acc[i] / l : 0.0f;
        }
    }
}
