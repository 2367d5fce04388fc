//! Dot products between a quantized weight row and an activation row in the
//! format ggml pairs with it (Q8_0, Q8_1 or Q8_K), plus f32/f16/bf16 rows.
