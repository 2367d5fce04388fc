//! The ggml tensor type table: every type id current ggml defines, with its
//! name as ggml spells it, the number of elements per block and the number of
//! bytes per block.

/// A ggml tensor element type, as stored in a GGUF tensor info.
///
/// The discriminant is the numeric id used on disk. Ids that ggml retired
/// (4, 5, 31–33, 36–38) are not represented: reading them is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32 = 0,
    /// 16-bit IEEE float.
    F16 = 1,
    /// 4-bit, 32-element blocks with an f16 scale.
    Q4_0 = 2,
    /// 4-bit, 32-element blocks with an f16 scale and minimum.
    Q4_1 = 3,
    /// 5-bit, 32-element blocks with an f16 scale.
    Q5_0 = 6,
    /// 5-bit, 32-element blocks with an f16 scale and minimum.
    Q5_1 = 7,
    /// 8-bit, 32-element blocks with an f16 scale.
    Q8_0 = 8,
    /// 8-bit, 32-element blocks with an f16 scale and the f16 of scale × sum.
    Q8_1 = 9,
    /// 2-bit k-quant, 256-element super-blocks.
    Q2_K = 10,
    /// 3-bit k-quant, 256-element super-blocks.
    Q3_K = 11,
    /// 4-bit k-quant, 256-element super-blocks.
    Q4_K = 12,
    /// 5-bit k-quant, 256-element super-blocks.
    Q5_K = 13,
    /// 6-bit k-quant, 256-element super-blocks.
    Q6_K = 14,
    /// 8-bit k-quant (activations), 256-element super-blocks with an f32 scale.
    Q8_K = 15,
    /// 2.06 bits per weight i-quant.
    IQ2_XXS = 16,
    /// 2.31 bits per weight i-quant.
    IQ2_XS = 17,
    /// 3.06 bits per weight i-quant.
    IQ3_XXS = 18,
    /// 1.56 bits per weight i-quant.
    IQ1_S = 19,
    /// 4-bit non-linear, 32-element blocks.
    IQ4_NL = 20,
    /// 3.44 bits per weight i-quant.
    IQ3_S = 21,
    /// 2.5 bits per weight i-quant.
    IQ2_S = 22,
    /// 4.25 bits per weight non-linear, 256-element super-blocks.
    IQ4_XS = 23,
    /// 8-bit signed integer.
    I8 = 24,
    /// 16-bit signed integer.
    I16 = 25,
    /// 32-bit signed integer.
    I32 = 26,
    /// 64-bit signed integer.
    I64 = 27,
    /// 64-bit IEEE float.
    F64 = 28,
    /// 1.75 bits per weight i-quant.
    IQ1_M = 29,
    /// bfloat16.
    BF16 = 30,
    /// Ternary, 1.69 bits per weight.
    TQ1_0 = 34,
    /// Ternary, 2.06 bits per weight.
    TQ2_0 = 35,
    /// OCP microscaling FP4 (E2M1) with an E8M0 scale per 32 elements.
    MXFP4 = 39,
    /// NVIDIA FP4 (E2M1) with an UE4M3 scale per 16 elements, 64-element blocks.
    NVFP4 = 40,
    /// 1-bit, 128-element blocks with an f16 scale.
    Q1_0 = 41,
}

/// Static facts about one type: `(type, name, elements per block, bytes per block)`.
const TABLE: &[(GgmlType, &str, u32, u32)] = &[
    (GgmlType::F32, "F32", 1, 4),
    (GgmlType::F16, "F16", 1, 2),
    (GgmlType::Q4_0, "Q4_0", 32, 18),
    (GgmlType::Q4_1, "Q4_1", 32, 20),
    (GgmlType::Q5_0, "Q5_0", 32, 22),
    (GgmlType::Q5_1, "Q5_1", 32, 24),
    (GgmlType::Q8_0, "Q8_0", 32, 34),
    (GgmlType::Q8_1, "Q8_1", 32, 36),
    (GgmlType::Q2_K, "Q2_K", 256, 84),
    (GgmlType::Q3_K, "Q3_K", 256, 110),
    (GgmlType::Q4_K, "Q4_K", 256, 144),
    (GgmlType::Q5_K, "Q5_K", 256, 176),
    (GgmlType::Q6_K, "Q6_K", 256, 210),
    (GgmlType::Q8_K, "Q8_K", 256, 292),
    (GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66),
    (GgmlType::IQ2_XS, "IQ2_XS", 256, 74),
    (GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98),
    (GgmlType::IQ1_S, "IQ1_S", 256, 50),
    (GgmlType::IQ4_NL, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, "IQ3_S", 256, 110),
    (GgmlType::IQ2_S, "IQ2_S", 256, 82),
    (GgmlType::IQ4_XS, "IQ4_XS", 256, 136),
    (GgmlType::I8, "I8", 1, 1),
    (GgmlType::I16, "I16", 1, 2),
    (GgmlType::I32, "I32", 1, 4),
    (GgmlType::I64, "I64", 1, 8),
    (GgmlType::F64, "F64", 1, 8),
    (GgmlType::IQ1_M, "IQ1_M", 256, 56),
    (GgmlType::BF16, "BF16", 1, 2),
    (GgmlType::TQ1_0, "TQ1_0", 256, 54),
    (GgmlType::TQ2_0, "TQ2_0", 256, 66),
    (GgmlType::MXFP4, "MXFP4", 32, 17),
    (GgmlType::NVFP4, "NVFP4", 64, 36),
    (GgmlType::Q1_0, "Q1_0", 128, 18),
];

impl GgmlType {
    /// Every type this crate knows, in id order.
    pub const ALL: [GgmlType; 34] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
        GgmlType::NVFP4,
        GgmlType::Q1_0,
    ];

    fn entry(self) -> &'static (GgmlType, &'static str, u32, u32) {
        // The table is in the same order as `ALL`; find by value to stay robust.
        TABLE
            .iter()
            .find(|e| e.0 == self)
            .expect("every GgmlType variant has a table entry")
    }

    /// The type for an on-disk id, or `None` for ids ggml does not define (or retired).
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|e| e.0 as u32 == id).map(|e| e.0)
    }

    /// The type whose ggml name is `name` (exact spelling, e.g. `"Q4_K"`).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TABLE.iter().find(|e| e.1 == name).map(|e| e.0)
    }

    /// The numeric id stored in GGUF files.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// The name as ggml spells it (`"Q4_1"`, `"BF16"`, …).
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// Number of elements in one block (1 for plain scalar types).
    pub fn block_size(self) -> usize {
        self.entry().2 as usize
    }

    /// Number of bytes in one block.
    pub fn type_size(self) -> usize {
        self.entry().3 as usize
    }

    /// True for block-quantized types (block size above one).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes taken by `n_elements` elements, or `None` when `n_elements` is not
    /// a whole number of blocks or the size overflows `u64`.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n_elements.is_multiple_of(bs) {
            return None;
        }
        (n_elements / bs).checked_mul(self.type_size() as u64)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_all_agree() {
        assert_eq!(TABLE.len(), GgmlType::ALL.len());
        for (t, e) in GgmlType::ALL.iter().zip(TABLE) {
            assert_eq!(*t, e.0);
            assert_eq!(GgmlType::from_id(t.id()), Some(*t));
            assert_eq!(GgmlType::from_name(t.name()), Some(*t));
        }
    }

    #[test]
    fn retired_ids_are_unknown() {
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 42, 1000] {
            assert_eq!(GgmlType::from_id(id), None, "id {id}");
        }
    }

    #[test]
    fn sizes_match_ggml() {
        assert_eq!(GgmlType::Q4_0.type_size(), 18);
        assert_eq!(GgmlType::Q8_0.type_size(), 34);
        assert_eq!(GgmlType::Q4_K.type_size(), 144);
        assert_eq!(GgmlType::Q6_K.type_size(), 210);
        assert_eq!(GgmlType::MXFP4.id(), 39);
        assert_eq!(GgmlType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(GgmlType::Q4_1.bytes_for(33), None);
    }
}
