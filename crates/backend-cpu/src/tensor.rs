//! The CPU activation tensor: a dense row-major `f32` matrix.

use backend_core::{BackendError, Result};

/// A dense row-major `rows × cols` matrix of `f32` in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuTensor {
    data: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl CpuTensor {
    /// A tensor over `data`, which must hold exactly `rows * cols` values.
    pub fn from_vec(data: Vec<f32>, rows: usize, cols: usize) -> Result<CpuTensor> {
        match rows.checked_mul(cols) {
            Some(n) if n == data.len() => Ok(CpuTensor { data, rows, cols }),
            _ => Err(BackendError::Shape {
                op: "tensor",
                detail: format!("{} values do not make a {rows} x {cols} matrix", data.len()),
            }),
        }
    }

    /// A zero-filled `rows × cols` tensor.
    pub fn zeros(rows: usize, cols: usize) -> Result<CpuTensor> {
        let n = rows.checked_mul(cols).ok_or_else(|| BackendError::Shape {
            op: "zeros",
            detail: format!("{rows} x {cols} overflows"),
        })?;
        Ok(CpuTensor {
            data: vec![0.0; n],
            rows,
            cols,
        })
    }

    /// Number of rows (tokens).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// All values, row-major, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Row `r`.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Row `r`, mutable.
    pub fn row_mut(&mut self, r: usize) -> &mut [f32] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// The values, consuming the tensor.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
}
