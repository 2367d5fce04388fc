//! Lookup tables and grids that are part of the ggml formats' definitions
//! (i-quant grids, sign tables, non-linear code books). Data, in one place.
