//! [`TensorInfo`]: one entry of the tensor table.

use crate::error::GgufError;
use crate::GgmlType;

/// One tensor of the file: name, element type, shape and where its data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor name (`"blk.0.attn_q.weight"`).
    pub name: String,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Dimensions in ggml order: `shape[0]` (ne0) is the fastest-varying one.
    pub shape: Vec<u64>,
    /// Offset of the data, relative to the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements (the product of the shape; 1 for zero dimensions).
    /// Saturates at `u64::MAX` for shapes the parser would reject.
    pub fn n_elements(&self) -> u64 {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .unwrap_or(u64::MAX)
    }

    /// Bytes of data. Exact for every tensor the parser accepted; 0 for a
    /// hand-built info whose shape does not fit its type (see
    /// [`TensorInfo::checked_n_bytes`]).
    pub fn n_bytes(&self) -> u64 {
        self.checked_n_bytes().unwrap_or(0)
    }

    /// Bytes of data, or an error naming the tensor when the shape overflows
    /// ggml's `i64` element counts or `ne0` is not a multiple of the block size.
    pub fn checked_n_bytes(&self) -> Result<u64, GgufError> {
        let bad = |reason| GgufError::BadShape {
            tensor: self.name.clone(),
            shape: self.shape.clone(),
            ggml_type: self.ggml_type,
            reason,
        };
        let mut n: u64 = 1;
        for &d in &self.shape {
            n = n
                .checked_mul(d)
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| bad("element count overflows i64"))?;
        }
        if d0_not_whole_blocks(self) {
            return Err(bad("ne0 is not a multiple of the block size"));
        }
        self.ggml_type
            .bytes_for(n)
            .ok_or_else(|| bad("element count is not a whole number of blocks"))
    }
}

fn d0_not_whole_blocks(t: &TensorInfo) -> bool {
    let ne0 = t.shape.first().copied().unwrap_or(1);
    ne0 % t.ggml_type.block_size() as u64 != 0
}
