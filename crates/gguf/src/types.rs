//! ggml tensor element types: numeric ids, names and block geometry (ggml.h / ggml-common.h).

/// A ggml tensor storage type, as stored in a GGUF tensor info.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// Elements per super-block of the K-quants and most IQ types (ggml's QK_K).
pub(crate) const QK_K: usize = 256;

/// (type, ggml id, name, elements per block, bytes per block). Sizes follow ggml-common.h's block structs.
const TABLE: [(GgmlType, u32, &str, usize, usize); 32] = [
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", 32, 2 + 16),
    (GgmlType::Q4_1, 3, "Q4_1", 32, 2 + 2 + 16),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 2 + 4 + 16),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 2 + 2 + 4 + 16),
    (GgmlType::Q8_0, 8, "Q8_0", 32, 2 + 32),
    (GgmlType::Q8_1, 9, "Q8_1", 32, 2 + 2 + 32),
    (GgmlType::Q2_K, 10, "Q2_K", QK_K, 16 + 64 + 2 + 2),
    (GgmlType::Q3_K, 11, "Q3_K", QK_K, 32 + 64 + 12 + 2),
    (GgmlType::Q4_K, 12, "Q4_K", QK_K, 2 + 2 + 12 + 128),
    (GgmlType::Q5_K, 13, "Q5_K", QK_K, 2 + 2 + 12 + 32 + 128),
    (GgmlType::Q6_K, 14, "Q6_K", QK_K, 128 + 64 + 16 + 2),
    (GgmlType::Q8_K, 15, "Q8_K", QK_K, 4 + 256 + 32),
    (GgmlType::IQ2_XXS, 16, "IQ2_XXS", QK_K, 2 + 64),
    (GgmlType::IQ2_XS, 17, "IQ2_XS", QK_K, 2 + 64 + 8),
    (GgmlType::IQ3_XXS, 18, "IQ3_XXS", QK_K, 2 + 96),
    (GgmlType::IQ1_S, 19, "IQ1_S", QK_K, 2 + 32 + 16),
    (GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 2 + 16),
    (GgmlType::IQ3_S, 21, "IQ3_S", QK_K, 2 + 64 + 8 + 32 + 4),
    (GgmlType::IQ2_S, 22, "IQ2_S", QK_K, 2 + 64 + 16),
    (GgmlType::IQ4_XS, 23, "IQ4_XS", QK_K, 2 + 2 + 4 + 128),
    (GgmlType::I8, 24, "I8", 1, 1),
    (GgmlType::I16, 25, "I16", 1, 2),
    (GgmlType::I32, 26, "I32", 1, 4),
    (GgmlType::I64, 27, "I64", 1, 8),
    (GgmlType::F64, 28, "F64", 1, 8),
    (GgmlType::IQ1_M, 29, "IQ1_M", QK_K, 32 + 16 + 8),
    (GgmlType::BF16, 30, "BF16", 1, 2),
    (GgmlType::TQ1_0, 34, "TQ1_0", QK_K, 48 + 4 + 2),
    (GgmlType::TQ2_0, 35, "TQ2_0", QK_K, 64 + 2),
    (GgmlType::MXFP4, 39, "MXFP4", 32, 1 + 16),
];

impl GgmlType {
    /// All types, in ggml id order.
    pub const ALL: [GgmlType; 32] = {
        let mut all = [GgmlType::F32; 32];
        let mut i = 0;
        while i < TABLE.len() {
            all[i] = TABLE[i].0;
            i += 1;
        }
        all
    };

    fn row(self) -> &'static (GgmlType, u32, &'static str, usize, usize) {
        // The enum's declaration order is the table's order, so the discriminant indexes it.
        &TABLE[self as usize]
    }

    /// The type for a ggml numeric id, None for ids that are unknown or were removed from GGUF.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|row| row.1 == id).map(|row| row.0)
    }

    pub fn id(self) -> u32 {
        self.row().1
    }

    /// The name llama.cpp prints ("F32", "Q4_K", ...).
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        self.row().3
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.row().4
    }

    /// Whether [`crate::dequantize`] supports this type.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_NL | IQ4_XS
        )
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Byte size of `n` elements of `ty`, None if `n` is not a multiple of the block size or it overflows.
pub fn byte_size(ty: GgmlType, n: u64) -> Option<u64> {
    let block = ty.block_size() as u64;
    if !n.is_multiple_of(block) {
        return None;
    }
    (n / block).checked_mul(ty.type_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_order_matches_enum_and_ids_round_trip() {
        for (i, row) in TABLE.iter().enumerate() {
            assert_eq!(row.0 as usize, i);
            assert_eq!(GgmlType::from_id(row.1), Some(row.0));
            assert_eq!(row.0.id(), row.1);
        }
        for removed in [4, 5, 31, 32, 33, 36, 37, 38, 40, 200, u32::MAX] {
            assert_eq!(GgmlType::from_id(removed), None);
        }
    }

    #[test]
    fn byte_size_rejects_partial_blocks_and_overflow() {
        assert_eq!(byte_size(GgmlType::Q4_K, 512), Some(288));
        assert_eq!(byte_size(GgmlType::Q4_K, 100), None);
        assert_eq!(byte_size(GgmlType::F32, u64::MAX), None);
        assert_eq!(byte_size(GgmlType::I8, u64::MAX), Some(u64::MAX));
    }
}
