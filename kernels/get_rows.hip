// out[i][:] = dequantized row ids[i] of a weight table (token embeddings).
// Launch: grid = (n_ids), block = 128 threads (any multiple of RF_WAVE).
#include "compat.h"
#include "quant.h"

#define RF_GET_ROWS(name, deq)                                                                  \
    extern "C" __global__ void get_rows_##name(const u8* __restrict__ W, int row_bytes, int K, \
                                               const u32* __restrict__ ids,                    \
                                               int n_rows, float* __restrict__ out) {          \
        RF_GRID_SYNC();                                                                        \
        const u32 id = ids[blockIdx.x];                                                        \
        float* o = out + (size_t)blockIdx.x * K;                                               \
        if (id >= (u32)n_rows) { /* out of range: zeros (the host checks ids first) */         \
            for (int i = threadIdx.x; i < K; i += blockDim.x) o[i] = 0.0f;                     \
            return;                                                                            \
        }                                                                                      \
        const u8* row = W + (size_t)id * row_bytes;                                            \
        for (int c = threadIdx.x; c < (K + 31) / 32; c += blockDim.x) {                        \
            float y[32];                                                                       \
            deq(row, c, K, y);                                                                 \
            _Pragma("unroll") for (int i = 0; i < 32; i++) if (c * 32 + i < K) o[c * 32 + i] = y[i]; \
        }                                                                                      \
    }

RF_FOR_EACH_FORMAT(RF_GET_ROWS)
