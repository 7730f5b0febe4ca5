//! Dequantization to f32, following the block layouts and arithmetic of ggml-quants.c `dequantize_row_*`.
//!
//! Each format walks `data` and `out` in lockstep with `chunks_exact`, converting every block slice to a
//! fixed-size array so the inner loops index without bounds checks. The float operations are done in the same
//! order as ggml's reference code, so results are bit-identical to it.

use crate::{byte_size, GgmlType, GgufError};

/// Dequantize `out.len()` elements stored as `ty` in `data`; `data.len()` must be exactly their byte size.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), GgufError> {
    if !ty.can_dequantize() {
        return Err(GgufError::UnsupportedDequant(ty));
    }
    let n = out.len() as u64;
    let expected = byte_size(ty, n).ok_or(GgufError::NotBlockMultiple { ty, n })?;
    if data.len() as u64 != expected {
        return Err(GgufError::SizeMismatch {
            what: format!("{ty} data for {n} elements"),
            expected,
            found: data.len() as u64,
        });
    }
    match ty {
        GgmlType::F32 => blocks::<4, 1>(data, out, |b, y| y[0] = f32::from_le_bytes(*b)),
        GgmlType::F16 => blocks::<2, 1>(data, out, |b, y| y[0] = f16_to_f32(u16::from_le_bytes(*b))),
        // bf16 is the top half of an f32, so widening is exact.
        GgmlType::BF16 => blocks::<2, 1>(data, out, |b, y| {
            y[0] = f32::from_bits(u32::from(u16::from_le_bytes(*b)) << 16)
        }),
        GgmlType::Q8_0 => blocks::<34, 32>(data, out, q8_0),
        GgmlType::Q4_0 => blocks::<18, 32>(data, out, q4_0),
        GgmlType::Q4_1 => blocks::<20, 32>(data, out, q4_1),
        GgmlType::Q5_0 => blocks::<22, 32>(data, out, q5_0),
        GgmlType::Q5_1 => blocks::<24, 32>(data, out, q5_1),
        GgmlType::Q4_K => blocks::<144, 256>(data, out, q4_k),
        GgmlType::Q5_K => blocks::<176, 256>(data, out, q5_k),
        GgmlType::Q6_K => blocks::<210, 256>(data, out, q6_k),
        GgmlType::Q2_K => blocks::<84, 256>(data, out, q2_k),
        GgmlType::Q3_K => blocks::<110, 256>(data, out, q3_k),
        GgmlType::IQ4_NL => blocks::<18, 32>(data, out, iq4_nl),
        GgmlType::IQ4_XS => blocks::<136, 256>(data, out, iq4_xs),
        other => return Err(GgufError::UnsupportedDequant(other)),
    }
    Ok(())
}

/// Allocating form of [`dequantize`] for `n` elements.
pub fn dequantize_to_vec(ty: GgmlType, data: &[u8], n: usize) -> Result<Vec<f32>, GgufError> {
    // Check the size before allocating: `n` may come from an untrusted header.
    let expected = byte_size(ty, n as u64).ok_or(GgufError::NotBlockMultiple { ty, n: n as u64 })?;
    if data.len() as u64 != expected {
        return Err(GgufError::SizeMismatch {
            what: format!("{ty} data for {n} elements"),
            expected,
            found: data.len() as u64,
        });
    }
    let mut out = vec![0f32; n];
    dequantize(ty, data, &mut out)?;
    Ok(out)
}

/// Runs `f` on each (block bytes, block output) pair. The caller has checked the lengths match.
#[inline(always)]
fn blocks<const TS: usize, const BS: usize>(data: &[u8], out: &mut [f32], f: impl Fn(&[u8; TS], &mut [f32; BS])) {
    for (b, y) in data.chunks_exact(TS).zip(out.chunks_exact_mut(BS)) {
        if let (Ok(b), Ok(y)) = (<&[u8; TS]>::try_from(b), <&mut [f32; BS]>::try_from(y)) {
            f(b, y);
        }
    }
}

/// Exact IEEE binary16 -> binary32 widening, branch-light so loops over it vectorize (a per-call CPU feature
/// check, as in general-purpose half crates, would prevent that).
#[inline(always)]
fn f16_to_f32(h: u16) -> f32 {
    const EXP_MASK: u32 = 0x7C00 << 13; // the f16 exponent field, moved to the f32 position
    const REBIAS: u32 = (127 - 15) << 23;
    let sign = u32::from(h & 0x8000) << 16;
    let shifted = u32::from(h & 0x7FFF) << 13;
    let exp = shifted & EXP_MASK;
    let bits = if exp == EXP_MASK {
        // Inf/NaN: the exponent becomes all ones, the payload is kept.
        shifted + REBIAS + ((128 - 16) << 23)
    } else if exp == 0 {
        // Zero/subnormal: mantissa * 2^-24, computed exactly by subtracting the implicit one.
        (f32::from_bits(shifted + REBIAS + (1 << 23)) - f32::from_bits(113 << 23)).to_bits()
    } else {
        shifted + REBIAS
    };
    f32::from_bits(bits | sign)
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// Q8_0: f16 d, 32 x i8; y = q * d.
fn q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..]) {
        *y = f32::from(q as i8) * d;
    }
}

/// Q4_0: f16 d, 16 bytes; low nibbles are elements 0..16, high nibbles 16..32; y = (q - 8) * d.
fn q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = y.split_at_mut(16);
    for ((&q, lo), hi) in b[2..].iter().zip(lo).zip(hi) {
        *lo = f32::from((q & 0x0F) as i8 - 8) * d;
        *hi = f32::from((q >> 4) as i8 - 8) * d;
    }
}

/// Q4_1: f16 d, f16 m, 16 bytes; y = q * d + m.
fn q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let (lo, hi) = y.split_at_mut(16);
    for ((&q, lo), hi) in b[4..].iter().zip(lo).zip(hi) {
        *lo = f32::from(q & 0x0F) * d + m;
        *hi = f32::from(q >> 4) * d + m;
    }
}

/// The 5th bits of a Q5 block: bit j of the little-endian u32 belongs to element j.
#[inline(always)]
fn q5_high_bits(qh: &[u8]) -> u32 {
    u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]])
}

/// Q5_0: f16 d, u32 qh, 16 bytes; 5-bit q = nibble | high bit << 4; y = (q - 16) * d.
fn q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let qh = q5_high_bits(&b[2..6]);
    let (lo, hi) = y.split_at_mut(16);
    for (j, ((&q, lo), hi)) in b[6..].iter().zip(lo).zip(hi).enumerate() {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        *lo = f32::from(((q & 0x0F) | h0) as i8 - 16) * d;
        *hi = f32::from(((q >> 4) | h1) as i8 - 16) * d;
    }
}

/// Q5_1: f16 d, f16 m, u32 qh, 16 bytes; y = q * d + m.
fn q5_1(b: &[u8; 24], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = q5_high_bits(&b[4..8]);
    let (lo, hi) = y.split_at_mut(16);
    for (j, ((&q, lo), hi)) in b[8..].iter().zip(lo).zip(hi).enumerate() {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        *lo = f32::from((q & 0x0F) | h0) * d + m;
        *hi = f32::from((q >> 4) | h1) * d + m;
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes of a Q4_K/Q5_K block
/// (ggml's get_scale_min_k4): sub-blocks 0..4 use the low 6 bits of bytes j and j+4; sub-blocks 4..8 take their
/// low 4 bits from byte j+4 and their top 2 bits from the spare high bits of bytes j-4 and j.
#[inline(always)]
fn scale_min_k4(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Splits a K-quant block's leading f16 d, f16 dmin and 12 scale bytes.
#[inline(always)]
fn k_header(b: &[u8]) -> (f32, f32, [u8; 12]) {
    let mut scales = [0u8; 12];
    scales.copy_from_slice(&b[4..16]);
    (f16_at(b, 0), f16_at(b, 2), scales)
}

/// Q4_K: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles. Each 64 outputs use 32 bytes: low nibbles
/// with sub-block scale 2i, then high nibbles with 2i+1; y = d*sc * q - dmin*m.
fn q4_k(b: &[u8; 144], y: &mut [f32; 256]) {
    let (d, dmin, scales) = k_header(b);
    for (i, (qs, y)) in b[16..].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * i, &scales);
        let (sc2, m2) = scale_min_k4(2 * i + 1, &scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let (lo, hi) = y.split_at_mut(32);
        for ((&q, lo), hi) in qs.iter().zip(lo).zip(hi) {
            *lo = d1 * f32::from(q & 0x0F) - m1;
            *hi = d2 * f32::from(q >> 4) - m2;
        }
    }
}

/// Q5_K: like Q4_K plus 32 bytes qh before the nibbles; for output group i (64 elements), bit 2i of qh[l] is the
/// 5th bit of the low-nibble element l and bit 2i+1 that of the high-nibble element.
fn q5_k(b: &[u8; 176], y: &mut [f32; 256]) {
    let (d, dmin, scales) = k_header(b);
    let qh = &b[16..48];
    for (i, (qs, y)) in b[48..].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * i, &scales);
        let (sc2, m2) = scale_min_k4(2 * i + 1, &scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let (lo, hi) = y.split_at_mut(32);
        for (((&q, &h), lo), hi) in qs.iter().zip(qh).zip(lo).zip(hi) {
            let h0 = ((h >> (2 * i)) & 1) << 4;
            let h1 = ((h >> (2 * i + 1)) & 1) << 4;
            *lo = d1 * f32::from((q & 0x0F) + h0) - m1;
            *hi = d2 * f32::from((q >> 4) + h1) - m2;
        }
    }
}

/// Q6_K: 128 bytes ql (low 4 bits), 64 bytes qh (2 high bits), 16 i8 scales, f16 d; y = d * scale * (q - 32).
/// Each half (128 outputs) uses 64 ql bytes, 32 qh bytes and 8 scales; within it, element l + 32k takes
/// bits 2k..2k+2 of qh[l], and the nibble of ql[l] (k even) or ql[l + 32] (k odd), low for k < 2.
fn q6_k(b: &[u8; 210], y: &mut [f32; 256]) {
    let d = f16_at(b, 208);
    for (half, y) in y.chunks_exact_mut(128).enumerate() {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let sc = &b[192 + 8 * half..192 + 8 * half + 8];
        for l in 0..32 {
            let is = l / 16;
            let h = qh[l];
            let q1 = ((ql[l] & 0x0F) | ((h & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((h >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((h >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) as i8 - 32;
            y[l] = d * f32::from(sc[is] as i8) * f32::from(q1);
            y[l + 32] = d * f32::from(sc[is + 2] as i8) * f32::from(q2);
            y[l + 64] = d * f32::from(sc[is + 4] as i8) * f32::from(q3);
            y[l + 96] = d * f32::from(sc[is + 6] as i8) * f32::from(q4);
        }
    }
}

/// Q2_K: 16 scale bytes (low nibble scale, high nibble minimum of each 16 weights), 64 bytes of 2-bit
/// codes, f16 d, f16 dmin. Each 128 outputs use 32 code bytes: output 32j + 16k + l of the half is bits
/// 2j..2j+2 of byte 16k + l, with scale byte 8·half + 2j + k; y = d·sc · q − dmin·m.
fn q2_k(b: &[u8; 84], y: &mut [f32; 256]) {
    let d = f16_at(b, 80);
    let dmin = f16_at(b, 82);
    for (half, y) in y.chunks_exact_mut(128).enumerate() {
        let q = &b[16 + 32 * half..16 + 32 * half + 32];
        for (g, y) in y.chunks_exact_mut(16).enumerate() {
            let (j, k) = (g / 2, g % 2);
            let sc = b[8 * half + g];
            let (dl, ml) = (d * f32::from(sc & 0x0F), dmin * f32::from(sc >> 4));
            for (l, y) in y.iter_mut().enumerate() {
                *y = dl * f32::from((q[16 * k + l] >> (2 * j)) & 3) - ml;
            }
        }
    }
}

/// The signed 6-bit scale of 16-weight group `j` (0..16) of a Q3_K block from its 12 packed bytes: the low
/// 4 bits are nibble j / 8 of byte j % 8, the top 2 bits are bits 2·(j / 4) of byte 8 + j % 4; minus 32.
#[inline(always)]
fn q3_k_scale(s: &[u8], j: usize) -> i32 {
    let lo = (s[j % 8] >> (4 * (j / 8))) & 0x0F;
    let hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    i32::from(lo | (hi << 4)) - 32
}

/// Q3_K: 32 bytes hmask, 64 bytes of 2-bit codes, 12 bytes of packed 6-bit scales, f16 d. Laid out as
/// Q2_K; output 32j + 16k + l of half h also takes bit 4h + j of hmask[16k + l] as its third bit, and
/// q = low bits − 4 where that bit is clear; y = d·(scale − 32) · q.
fn q3_k(b: &[u8; 110], y: &mut [f32; 256]) {
    let d = f16_at(b, 108);
    let (hmask, scales) = (&b[..32], &b[96..108]);
    for (half, y) in y.chunks_exact_mut(128).enumerate() {
        let q = &b[32 + 32 * half..32 + 32 * half + 32];
        for (g, y) in y.chunks_exact_mut(16).enumerate() {
            let (j, k) = (g / 2, g % 2);
            let dl = d * q3_k_scale(scales, 8 * half + g) as f32;
            let m = 1u8 << (4 * half + j);
            for (l, y) in y.iter_mut().enumerate() {
                let low = i32::from((q[16 * k + l] >> (2 * j)) & 3);
                let high = if hmask[16 * k + l] & m != 0 { 0 } else { 4 };
                *y = dl * (low - high) as f32;
            }
        }
    }
}

/// The 16 non-uniform levels of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl).
const IQ4_LEVELS: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// IQ4_NL: f16 d, 16 bytes; nibbles as Q4_0 index the levels; y = d · level.
fn iq4_nl(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = y.split_at_mut(16);
    for ((&q, lo), hi) in b[2..].iter().zip(lo).zip(hi) {
        *lo = d * f32::from(IQ4_LEVELS[usize::from(q & 0x0F)]);
        *hi = d * f32::from(IQ4_LEVELS[usize::from(q >> 4)]);
    }
}

/// IQ4_XS: f16 d, u16 scales_h, 4 bytes scales_l, 128 bytes of nibbles. Sub-block j (32 weights) has the
/// 6-bit scale (nibble j % 2 of scales_l[j / 2]) | (bits 2j..2j+2 of scales_h) << 4 and 16 bytes of
/// nibbles laid out as IQ4_NL; y = d·(scale − 32) · level.
fn iq4_xs(b: &[u8; 136], y: &mut [f32; 256]) {
    let d = f16_at(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    for (j, (qs, y)) in b[8..].chunks_exact(16).zip(y.chunks_exact_mut(32)).enumerate() {
        let lo = (b[4 + j / 2] >> (4 * (j % 2))) & 0x0F;
        let hi = ((scales_h >> (2 * j)) & 3) as u8;
        let dl = d * (i32::from(lo | (hi << 4)) - 32) as f32;
        let (ylo, yhi) = y.split_at_mut(16);
        for ((&q, ylo), yhi) in qs.iter().zip(ylo).zip(yhi) {
            *ylo = dl * f32::from(IQ4_LEVELS[usize::from(q & 0x0F)]);
            *yhi = dl * f32::from(IQ4_LEVELS[usize::from(q >> 4)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_sizes_and_unsupported_types() {
        let mut out = [0f32; 32];
        assert_eq!(dequantize(GgmlType::Q8_0, &[0; 33], &mut out), Err(GgufError::SizeMismatch {
            what: "Q8_0 data for 32 elements".into(),
            expected: 34,
            found: 33
        }));
        assert_eq!(dequantize(GgmlType::Q4_K, &[0; 18], &mut out), Err(GgufError::NotBlockMultiple {
            ty: GgmlType::Q4_K,
            n: 32
        }));
        assert_eq!(dequantize(GgmlType::IQ2_XS, &[], &mut []), Err(GgufError::UnsupportedDequant(GgmlType::IQ2_XS)));
        assert!(dequantize_to_vec(GgmlType::F32, &[0; 4], usize::MAX).is_err());
    }

    #[test]
    fn f16_conversion_is_exact_for_every_bit_pattern() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            let got = f16_to_f32(h);
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{h:#06x}: {got} vs {want}");
        }
    }

    #[test]
    fn q4_0_nibble_order_by_hand() {
        // d = 1.0 (f16 0x3C00); byte j holds j in its low nibble and 15-j in its high nibble.
        let mut b = vec![0x00, 0x3C];
        b.extend((0..16u8).map(|j| ((15 - j) << 4) | j));
        let y = dequantize_to_vec(GgmlType::Q4_0, &b, 32).unwrap();
        for j in 0..16 {
            assert_eq!(y[j], j as f32 - 8.0);
            assert_eq!(y[j + 16], (15.0 - j as f32) - 8.0);
        }
    }
}
