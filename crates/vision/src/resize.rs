//! Pillow's separable resampling (Resample.c), as llama.cpp's mtmd ports it: per output pixel, the
//! filter's weights over the input pixels it covers (widened when shrinking), normalized, in 22-bit
//! fixed point; a horizontal pass, then a vertical one, each rounding and clamping to 8 bits.
//! Bit for bit, so tiles equal llama.cpp's.

use crate::Rgb;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    Bilinear,
    Bicubic,
    Lanczos,
}

/// Fixed-point fraction bits: 32 (i32) − 8 (the pixel) − 2 (headroom for the sum).
const PRECISION_BITS: u32 = 32 - 8 - 2;

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Bicubic => {
                // Pillow's a = -0.5 (PyTorch and ggml use -0.75).
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let pi_x = x * std::f64::consts::PI;
    pi_x.sin() / pi_x
}

/// One dimension's filter: for each output pixel, the first input pixel, how many it covers, and
/// their fixed-point weights (`ksize` slots per output pixel).
struct Weights {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

fn weights(in_size: usize, out_size: usize, filter: Filter) -> Weights {
    let scale = in_size as f64 / out_size as f64;
    // Upsampling keeps the filter's own width; downsampling widens it against aliasing.
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut floats = vec![0f64; out_size * ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // Truncation toward zero, as C's int cast.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let row = &mut floats[xx * ksize..xx * ksize + ksize];
        let mut sum = 0.0;
        for (x, w) in row.iter_mut().take(xmax).enumerate() {
            *w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            sum += *w;
        }
        if sum != 0.0 {
            for w in row.iter_mut().take(xmax) {
                *w /= sum;
            }
        }
        bounds.push((xmin, xmax));
    }
    let unit = f64::from(1u32 << PRECISION_BITS);
    // Pillow adds ±0.5 and truncates toward zero.
    let weights = floats.iter().map(|&w| (w * unit + if w < 0.0 { -0.5 } else { 0.5 }) as i32).collect();
    Weights { ksize, bounds, weights }
}

fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

fn horizontal(src: &Rgb, out_width: usize, w: &Weights) -> Rgb {
    let (in_w, h) = (src.width as usize, src.height as usize);
    let mut out = vec![0u8; out_width * h * 3];
    for y in 0..h {
        let row = &src.data[y * in_w * 3..(y + 1) * in_w * 3];
        for (xx, &(xmin, count)) in w.bounds.iter().enumerate() {
            let k = &w.weights[xx * w.ksize..xx * w.ksize + count];
            let mut acc = [HALF; 3];
            for (i, &kw) in k.iter().enumerate() {
                let p = &row[(xmin + i) * 3..(xmin + i) * 3 + 3];
                for c in 0..3 {
                    acc[c] = acc[c].wrapping_add(i32::from(p[c]).wrapping_mul(kw));
                }
            }
            let o = (y * out_width + xx) * 3;
            for c in 0..3 {
                out[o + c] = clip8(acc[c]);
            }
        }
    }
    Rgb::new(out_width as u32, h as u32, out)
}

fn vertical(src: &Rgb, out_height: usize, w: &Weights) -> Rgb {
    let row_len = src.width as usize * 3;
    let mut out = vec![0u8; row_len * out_height];
    let mut acc = vec![0i32; row_len];
    for (yy, &(ymin, count)) in w.bounds.iter().enumerate() {
        acc.fill(HALF);
        for (i, &kw) in w.weights[yy * w.ksize..yy * w.ksize + count].iter().enumerate() {
            let row = &src.data[(ymin + i) * row_len..(ymin + i + 1) * row_len];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a = a.wrapping_add(i32::from(p).wrapping_mul(kw));
            }
        }
        for (o, &a) in out[yy * row_len..(yy + 1) * row_len].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    Rgb::new(src.width, out_height as u32, out)
}

/// `image` resampled to `width` × `height` (both at least 1) with `filter`.
pub fn resize(image: &Rgb, width: u32, height: u32, filter: Filter) -> Rgb {
    assert!(width > 0 && height > 0, "resize to {width} × {height}");
    let mut out = image.clone();
    if width != image.width {
        out = horizontal(&out, width as usize, &weights(image.width as usize, width as usize, filter));
    }
    if height != image.height {
        out = vertical(&out, height as usize, &weights(image.height as usize, height as usize, filter));
    }
    out
}
