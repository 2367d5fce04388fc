// Token selection on the device: the logits of a decode step stay in device
// memory and only the chosen id is copied back. The rule is the host
// reference `backend_core::select_reference`: soft-capping → penalties →
// argmax (greedy, `argmax_f32` in elementwise.hip) or top-k → top-p → min-p →
// temperature → one draw with a uniform number supplied by the host.
#include "compat.h"
#include "common.h"

// Threads per block of `sample_topk_f32` (the launch wrapper uses it).
#define RF_SAMPLE_THREADS 256
// Largest top-k: candidates are sorted in shared memory.
#define RF_SAMPLE_MAX_K 1024

// a[i] = cap * tanh(a[i] / cap).
extern "C" __global__ void softcap_f32(float* __restrict__ a, int n, float cap) {
    RF_GRID_SYNC();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) a[i] = cap * tanhf(a[i] / cap);
}

// Penalties for one row: each (ids[j], counts[j]) pair once (ids distinct).
extern "C" __global__ void penalize_f32(float* __restrict__ row, int cols, const u32* __restrict__ ids,
                                        const u32* __restrict__ counts, int n, float repeat,
                                        float frequency, float presence) {
    RF_GRID_SYNC();
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n || ids[j] >= (u32)cols) return;
    float v = row[ids[j]];
    v = v <= 0.0f ? v * repeat : v / repeat;
    row[ids[j]] = v - ((float)counts[j] * frequency + presence);
}

// Order-preserving map of a float to an unsigned key (larger float, larger key).
RF_DEVICE u32 rf_order_key(float f) {
    const u32 b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Whether candidate (va, ia) comes before (vb, ib): larger logit first (in
// the order of Rust's f32::total_cmp), lower id first among equal logits.
RF_DEVICE bool rf_before(float va, u32 ia, float vb, u32 ib) {
    const u32 ka = rf_order_key(va), kb = rf_order_key(vb);
    return ka > kb || (ka == kb && ia < ib);
}

// Exclusive prefix sum of one value per thread (RF_SAMPLE_THREADS threads);
// `scan` is shared scratch of that many entries. Returns the thread's offset
// and writes the total to *total.
RF_DEVICE u32 rf_block_exclusive_scan(u32 v, u32* scan, u32* total) {
    scan[threadIdx.x] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        u32 acc = 0;
        for (int t = 0; t < RF_SAMPLE_THREADS; ++t) {
            const u32 c = scan[t];
            scan[t] = acc;
            acc += c;
        }
        *total = acc;
    }
    __syncthreads();
    const u32 off = scan[threadIdx.x];
    __syncthreads();
    return off;
}

// One block per row. Finds the top_k candidates by radix selection of the
// k-th largest key, gathers them (ties at the threshold by lowest id), sorts
// them in shared memory and walks top-p, min-p, temperature and the draw
// exactly as the host reference does.
extern "C" __global__ void sample_topk_f32(const float* __restrict__ logits, int cols, int top_k,
                                           float top_p, float min_p, float temperature,
                                           double uniform, u32* __restrict__ out) {
    RF_GRID_SYNC();
    __shared__ u32 hist[256];
    __shared__ u32 scan[RF_SAMPLE_THREADS];
    __shared__ float cv[RF_SAMPLE_MAX_K];
    __shared__ u32 ci[RF_SAMPLE_MAX_K];
    __shared__ u32 s_prefix, s_remaining, s_total;
    const float* row = logits + (size_t)blockIdx.x * cols;
    const int tid = threadIdx.x;
    const int k = top_k < cols ? top_k : cols;

    // 1. Radix selection (8 bits per pass, most significant first) of the
    //    key of the k-th largest logit; `remaining` ends as the number of
    //    elements equal to it that belong to the top k.
    u32 prefix = 0, mask = 0, remaining = (u32)k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = tid; i < 256; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        // Four loads in flight per thread.
        const int bd = blockDim.x;
        int i = tid;
        for (; i + 3 * bd < cols; i += 4 * bd) {
            const float v[4] = {row[i], row[i + bd], row[i + 2 * bd], row[i + 3 * bd]};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const u32 key = rf_order_key(v[j]);
                if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
            }
        }
        for (; i < cols; i += bd) {
            const u32 key = rf_order_key(row[i]);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (tid == 0) {
            u32 above = 0;
            int b = 255;
            for (; b > 0; --b) {
                if (above + hist[b] >= remaining) break;
                above += hist[b];
            }
            s_prefix = prefix | ((u32)b << shift);
            s_remaining = remaining - above;
        }
        __syncthreads();
        prefix = s_prefix;
        remaining = s_remaining;
        mask |= 255u << shift;
        __syncthreads();
    }
    const u32 threshold = prefix;

    // 2. Gather: every key above the threshold, and the first `remaining`
    //    (by id) equal to it. Threads own contiguous ranges so that id order
    //    is thread order.
    const int per = (cols + RF_SAMPLE_THREADS - 1) / RF_SAMPLE_THREADS;
    const int lo = tid * per < cols ? tid * per : cols;
    const int hi = lo + per < cols ? lo + per : cols;
    u32 n_above = 0, n_equal = 0;
    for (int i = lo; i < hi; ++i) {
        const u32 key = rf_order_key(row[i]);
        n_above += key > threshold;
        n_equal += key == threshold;
    }
    const u32 equal_before = rf_block_exclusive_scan(n_equal, scan, &s_total);
    u32 take_equal = 0;
    if (remaining > equal_before) {
        take_equal = remaining - equal_before;
        if (take_equal > n_equal) take_equal = n_equal;
    }
    u32 pos = rf_block_exclusive_scan(n_above + take_equal, scan, &s_total);
    for (int i = lo; i < hi; ++i) {
        const float v = row[i];
        const u32 key = rf_order_key(v);
        bool keep = key > threshold;
        if (key == threshold && take_equal > 0) {
            keep = true;
            --take_equal;
        }
        if (keep && pos < RF_SAMPLE_MAX_K) {
            cv[pos] = v;
            ci[pos] = (u32)i;
            ++pos;
        }
    }
    // Pad to a power of two with entries that sort last.
    int padded = 1;
    while (padded < k) padded <<= 1;
    for (int i = k + tid; i < padded; i += blockDim.x) {
        cv[i] = RF_NEG_INF;
        ci[i] = 0xffffffffu;
    }
    __syncthreads();

    // 3. Bitonic sort of the candidates into "before" order.
    for (int size = 2; size <= padded; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = tid; i < padded; i += blockDim.x) {
                const int j = i ^ stride;
                if (j > i) {
                    const bool up = (i & size) == 0;
                    const bool swap = up ? rf_before(cv[j], ci[j], cv[i], ci[i])
                                         : rf_before(cv[i], ci[i], cv[j], ci[j]);
                    if (swap) {
                        const float tv = cv[i];
                        cv[i] = cv[j];
                        cv[j] = tv;
                        const u32 ti = ci[i];
                        ci[i] = ci[j];
                        ci[j] = ti;
                    }
                }
            }
            __syncthreads();
        }
    }

    // 4. The host reference's walk over the sorted candidates (one thread;
    //    k is small and this is a handful of microseconds at k = 1024).
    if (tid != 0) return;
    int n = k;
    if (top_p < 1.0f) {
        float sum = 0.0f;
        for (int i = 0; i < n; ++i) sum += expf(cv[i] - cv[0]);
        double cum = 0.0;
        for (int i = 0; i < n; ++i) {
            cum += (double)(expf(cv[i] - cv[0]) / sum);
            if (cum >= (double)top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (min_p > 0.0f) {
        const float cut = cv[0] + logf(min_p);
        int m = 0;
        while (m < n && cv[m] >= cut) ++m;
        n = m > 0 ? m : 1;
    }
    const float top = cv[0] / temperature;
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) sum += expf(cv[i] / temperature - top);
    double cum = 0.0;
    u32 pick = ci[n - 1];
    for (int i = 0; i < n; ++i) {
        cum += (double)(expf(cv[i] / temperature - top) / sum);
        if (uniform < cum) {
            pick = ci[i];
            break;
        }
    }
    out[blockIdx.x] = pick;
}
