//! The weight formats the GPU kernels read directly.

use gguf_format::GgmlType;

/// A weight format with GPU kernels (matmul and get_rows). Other ggml types
/// are converted (to [`GpuFormat::F16`]) when uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum GpuFormat {
    F32,
    F16,
    Bf16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Iq4Nl,
    Iq4Xs,
    Mxfp4,
}

impl GpuFormat {
    /// The GPU format of a ggml type, if the kernels read it directly.
    pub fn from_ggml(t: GgmlType) -> Option<GpuFormat> {
        Some(match t {
            GgmlType::F32 => GpuFormat::F32,
            GgmlType::F16 => GpuFormat::F16,
            GgmlType::BF16 => GpuFormat::Bf16,
            GgmlType::Q4_0 => GpuFormat::Q4_0,
            GgmlType::Q4_1 => GpuFormat::Q4_1,
            GgmlType::Q5_0 => GpuFormat::Q5_0,
            GgmlType::Q5_1 => GpuFormat::Q5_1,
            GgmlType::Q8_0 => GpuFormat::Q8_0,
            GgmlType::Q2_K => GpuFormat::Q2K,
            GgmlType::Q3_K => GpuFormat::Q3K,
            GgmlType::Q4_K => GpuFormat::Q4K,
            GgmlType::Q5_K => GpuFormat::Q5K,
            GgmlType::Q6_K => GpuFormat::Q6K,
            GgmlType::IQ4_NL => GpuFormat::Iq4Nl,
            GgmlType::IQ4_XS => GpuFormat::Iq4Xs,
            GgmlType::MXFP4 => GpuFormat::Mxfp4,
            _ => return None,
        })
    }

    /// The ggml type with the same layout.
    pub fn ggml(self) -> GgmlType {
        match self {
            GpuFormat::F32 => GgmlType::F32,
            GpuFormat::F16 => GgmlType::F16,
            GpuFormat::Bf16 => GgmlType::BF16,
            GpuFormat::Q4_0 => GgmlType::Q4_0,
            GpuFormat::Q4_1 => GgmlType::Q4_1,
            GpuFormat::Q5_0 => GgmlType::Q5_0,
            GpuFormat::Q5_1 => GgmlType::Q5_1,
            GpuFormat::Q8_0 => GgmlType::Q8_0,
            GpuFormat::Q2K => GgmlType::Q2_K,
            GpuFormat::Q3K => GgmlType::Q3_K,
            GpuFormat::Q4K => GgmlType::Q4_K,
            GpuFormat::Q5K => GgmlType::Q5_K,
            GpuFormat::Q6K => GgmlType::Q6_K,
            GpuFormat::Iq4Nl => GgmlType::IQ4_NL,
            GpuFormat::Iq4Xs => GgmlType::IQ4_XS,
            GpuFormat::Mxfp4 => GgmlType::MXFP4,
        }
    }

    /// The suffix of its kernels' names (`matmul_<suffix>`).
    pub fn kernel_suffix(self) -> &'static str {
        match self {
            GpuFormat::F32 => "f32",
            GpuFormat::F16 => "f16",
            GpuFormat::Bf16 => "bf16",
            GpuFormat::Q4_0 => "q4_0",
            GpuFormat::Q4_1 => "q4_1",
            GpuFormat::Q5_0 => "q5_0",
            GpuFormat::Q5_1 => "q5_1",
            GpuFormat::Q8_0 => "q8_0",
            GpuFormat::Q2K => "q2_k",
            GpuFormat::Q3K => "q3_k",
            GpuFormat::Q4K => "q4_k",
            GpuFormat::Q5K => "q5_k",
            GpuFormat::Q6K => "q6_k",
            GpuFormat::Iq4Nl => "iq4_nl",
            GpuFormat::Iq4Xs => "iq4_xs",
            GpuFormat::Mxfp4 => "mxfp4",
        }
    }

    /// Every GPU format.
    pub const ALL: [GpuFormat; 16] = [
        GpuFormat::F32,
        GpuFormat::F16,
        GpuFormat::Bf16,
        GpuFormat::Q4_0,
        GpuFormat::Q4_1,
        GpuFormat::Q5_0,
        GpuFormat::Q5_1,
        GpuFormat::Q8_0,
        GpuFormat::Q2K,
        GpuFormat::Q3K,
        GpuFormat::Q4K,
        GpuFormat::Q5K,
        GpuFormat::Q6K,
        GpuFormat::Iq4Nl,
        GpuFormat::Iq4Xs,
        GpuFormat::Mxfp4,
    ];

    /// Bytes of one row of `k` elements, or `None` when `k` is not a whole
    /// number of blocks (the kernels then cannot read the row).
    pub fn row_bytes(self, k: usize) -> Option<usize> {
        let t = self.ggml();
        let bs = t.block_size();
        if !k.is_multiple_of(bs) {
            return None;
        }
        Some(k / bs * t.type_size())
    }
}
