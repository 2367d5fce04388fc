//! CPU weights: the stored bytes, used in place.
//!
//! # Lifetime rule
//!
//! A [`CpuWeight`] never borrows: it either holds an `Arc` of a registered
//! host mapping plus a byte range inside it (zero copy), or owns a copy.
//! To get zero copy, register the memory map once with
//! [`backend_core::Backend::register_mapping`] before calling
//! `load_weight`; every view whose bytes lie inside a registered mapping is
//! then kept as `(Arc<mapping>, range)` and the mapping stays alive as long as
//! any weight does. Views from anywhere else (tests, synthetic weights) are
//! copied once. No `unsafe` is involved either way.

use std::ops::Range;
use std::sync::Arc;

use backend_core::{BackendError, GgmlType, Result, WeightView};

/// A host memory region weights may point into (typically a memory-mapped
/// GGUF file).
pub type HostMapping = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// Where a weight's bytes live.
enum Bytes {
    /// A range of a registered mapping (no copy).
    Mapped {
        owner: HostMapping,
        range: Range<usize>,
    },
    /// A private copy.
    Owned(Box<[u8]>),
}

/// A weight in its stored format on the CPU.
pub struct CpuWeight {
    name: String,
    ggml_type: GgmlType,
    dims: [usize; 4],
    bytes: Bytes,
    /// The dequantized values of a one-row weight (norm weights, biases).
    small_f32: Option<Box<[f32]>>,
}

impl std::fmt::Debug for CpuWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuWeight")
            .field("name", &self.name)
            .field("ggml_type", &self.ggml_type)
            .field("dims", &self.dims)
            .field("zero_copy", &self.is_mapped())
            .finish()
    }
}

impl CpuWeight {
    /// Build a weight from `view`, pointing into one of `mappings` when the
    /// view's bytes lie inside it, else copying them.
    pub(crate) fn load(view: &WeightView<'_>, mappings: &[HostMapping]) -> Result<CpuWeight> {
        let t = view.ggml_type;
        let shape_err = |detail: String| BackendError::Shape {
            op: "load_weight",
            detail: format!("tensor {}: {detail}", view.name),
        };
        let n = view
            .dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| shape_err(format!("dims {:?} overflow", view.dims)))?;
        if t.block_size() == 0 || !view.dims[0].is_multiple_of(t.block_size()) {
            return Err(shape_err(format!(
                "row length {} is not a multiple of the {} block size {}",
                view.dims[0],
                t.name(),
                t.block_size()
            )));
        }
        let expected = n / t.block_size() * t.type_size();
        if view.data.len() != expected {
            return Err(shape_err(format!(
                "{} bytes given, {expected} expected for {:?} {}",
                view.data.len(),
                view.dims,
                t.name()
            )));
        }
        let bytes =
            find_mapping(view.data, mappings).unwrap_or_else(|| Bytes::Owned(view.data.into()));
        let rows = view.rows();
        let small_f32 = if rows == 1 && quant::can_dequantize(t) {
            let mut v = vec![0.0f32; view.dims[0]];
            quant::dequantize(t, view.data, &mut v).map_err(|e| shape_err(e.to_string()))?;
            Some(v.into_boxed_slice())
        } else {
            None
        };
        Ok(CpuWeight {
            name: view.name.to_string(),
            ggml_type: t,
            dims: view.dims,
            bytes,
            small_f32,
        })
    }

    /// The tensor name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stored type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Dims in ggml order.
    pub fn dims(&self) -> [usize; 4] {
        self.dims
    }

    /// Row length (ne0).
    pub fn cols(&self) -> usize {
        self.dims[0]
    }

    /// Rows when viewed as 2-D.
    pub fn rows(&self) -> usize {
        self.dims[1] * self.dims[2] * self.dims[3]
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.dims[0] / self.ggml_type.block_size() * self.ggml_type.type_size()
    }

    /// Whether the bytes are used in place from a registered mapping.
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped { .. })
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped { owner, range } => &(**owner).as_ref()[range.clone()],
            Bytes::Owned(b) => b,
        }
    }

    /// The values as `f32` when the weight is a single row (norms, biases).
    pub(crate) fn small_f32(&self) -> Option<&[f32]> {
        self.small_f32.as_deref()
    }
}

/// The mapping holding all of `data`, as a range of it.
fn find_mapping(data: &[u8], mappings: &[HostMapping]) -> Option<Bytes> {
    let start = data.as_ptr() as usize;
    let end = start + data.len();
    mappings.iter().find_map(|m| {
        let region: &[u8] = (**m).as_ref();
        let base = region.as_ptr() as usize;
        (start >= base && end <= base + region.len()).then(|| Bytes::Mapped {
            owner: Arc::clone(m),
            range: start - base..end - base,
        })
    })
}
