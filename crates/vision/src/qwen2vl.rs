//! Qwen2-VL's and Qwen2.5-VL's image layout, as llama.cpp's mtmd builds it (mtmd-image.cpp's
//! dyn_size preprocessor, after transformers' `smart_resize`): one image of any size, its sides
//! rounded to whole 2 × 2 blocks of patches (28 pixels for a 14-pixel patch) and its area kept
//! inside a pixel budget. Unlike transformers, llama.cpp does not stretch the image to that size:
//! it resizes it keeping its aspect ratio (Pillow's bicubic) and centres it on a black canvas, a
//! strip of a few pixels along one side. Every 2 × 2 block of patches becomes one token of the
//! language model, which places the tokens on a grid with M-RoPE.

use crate::resize::{resize, Filter};
use crate::Rgb;

#[derive(Clone, Debug, PartialEq)]
pub struct Qwen2Vl {
    /// A patch's side in pixels (`clip.vision.patch_size`).
    pub patch_size: u32,
    /// Patches merged into one token along each side (`clip.vision.spatial_merge_size`, else 2).
    pub merge_size: u32,
    /// The canvas's least and most pixels.
    pub min_pixels: u32,
    pub max_pixels: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// The encoder's input for one image: `width` × `height` pixels of normalized `[r, g, b]`, rows
/// top to bottom (how mtmd hands it to the encoder; [`Qwen2VlImage::planar`] gives the planes
/// llama.cpp's graph reads), and where its tokens go.
#[derive(Clone, Debug, PartialEq)]
pub struct Qwen2VlImage {
    pub width: u32,
    pub height: u32,
    /// Patches in time (1: a still image), rows and columns, as Qwen's `image_grid_thw`.
    pub grid_thw: [u32; 3],
    pub pixels: Vec<f32>,
    pub tokens: MropeImage,
}

/// An image's tokens in an M-RoPE language model: `nx` × `ny` tokens, row by row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MropeImage {
    pub nx: u32,
    pub ny: u32,
}

impl Qwen2Vl {
    /// llama.cpp's budget for Qwen2-VL and Qwen2.5-VL, in tokens; `--image-min-tokens` and
    /// `--image-max-tokens` replace it (the mmproj file has no say).
    pub const DEFAULT_MIN_TOKENS: u32 = 8;
    pub const DEFAULT_MAX_TOKENS: u32 = 4096;

    /// The processor with llama.cpp's default budget.
    pub fn new(patch_size: u32, merge_size: u32, mean: [f32; 3], std: [f32; 3]) -> Self {
        let block = patch_size * merge_size;
        Qwen2Vl {
            patch_size,
            merge_size,
            min_pixels: Self::DEFAULT_MIN_TOKENS * block * block,
            max_pixels: Self::DEFAULT_MAX_TOKENS * block * block,
            mean,
            std,
        }
    }

    /// The same with a budget of `min_tokens` to `max_tokens` tokens an image.
    pub fn with_token_budget(mut self, min_tokens: u32, max_tokens: u32) -> Self {
        let block = self.patch_size * self.merge_size;
        self.min_pixels = min_tokens * block * block;
        self.max_pixels = max_tokens * block * block;
        self
    }

    /// The canvas size for a `width` × `height` image: each side a multiple of the merged block,
    /// the area inside the budget. In f32, step by step, as llama.cpp computes it (a rounding
    /// differs from f64 often enough to move a side by a block).
    pub fn target_size(&self, width: u32, height: u32) -> (u32, u32) {
        let align = i64::from(self.patch_size * self.merge_size);
        let a = align as f32;
        let round_by = |x: f32| (x / a).round() as i64 * align;
        let ceil_by = |x: f32| (x / a).ceil() as i64 * align;
        let floor_by = |x: f32| (x / a).floor() as i64 * align;
        let (w, h) = (width as f32, height as f32);
        let (mut tw, mut th) = (round_by(w).max(align), round_by(h).max(align));
        let (min, max) = (i64::from(self.min_pixels), i64::from(self.max_pixels));
        if max > 0 && tw * th > max {
            let beta = (h * w / max as f32).sqrt();
            th = floor_by(h / beta).max(align);
            tw = floor_by(w / beta).max(align);
        } else if min > 0 && tw * th < min {
            let beta = (min as f32 / (h * w)).sqrt();
            th = ceil_by(h * beta);
            tw = ceil_by(w * beta);
        }
        (tw as u32, th as u32)
    }

    /// The tokens a `width` × `height` image becomes, before any pixel is resized.
    pub fn tokens(&self, width: u32, height: u32) -> MropeImage {
        let (w, h) = self.target_size(width, height);
        let block = self.patch_size * self.merge_size;
        MropeImage { nx: w / block, ny: h / block }
    }

    pub fn preprocess(&self, image: &Rgb) -> Qwen2VlImage {
        let (width, height) = self.target_size(image.width, image.height);
        // llama.cpp can fail here (a side beyond 65536 pixels, from a sliver of an image); the
        // resize does not need that limit, so such an image is processed anyway.
        let canvas = letterbox(image, width, height);
        let p = self.patch_size;
        Qwen2VlImage {
            width,
            height,
            grid_thw: [1, height / p, width / p],
            pixels: self.normalize(&canvas),
            tokens: self.tokens(image.width, image.height),
        }
    }

    /// (v / 255 − mean) / std per channel, in f32 as llama.cpp computes it.
    fn normalize(&self, image: &Rgb) -> Vec<f32> {
        image
            .data
            .chunks_exact(3)
            .flat_map(|p| (0..3).map(move |c| (f32::from(p[c]) / 255.0 - self.mean[c]) / self.std[c]))
            .collect()
    }
}

/// img_tool::resize with PAD_CEIL: the image scaled to fit `width` × `height` with its aspect
/// ratio (the fitting side exact, the other rounded up in f32), centred on black. The same size
/// is a plain copy.
fn letterbox(image: &Rgb, width: u32, height: u32) -> Rgb {
    if (image.width, image.height) == (width, height) {
        return image.clone();
    }
    let (sw, sh) = (image.width as f32, image.height as f32);
    let scale = (width as f32 / sw).min(height as f32 / sh);
    let content_w = ((sw * scale).ceil() as u32).min(width);
    let content_h = ((sh * scale).ceil() as u32).min(height);
    let content = resize(image, content_w, content_h, Filter::Bicubic);
    let (ox, oy) = ((width - content_w) / 2, (height - content_h) / 2);
    let mut data = vec![0u8; width as usize * height as usize * 3];
    let row = content_w as usize * 3;
    for y in 0..content_h as usize {
        let dst = ((oy as usize + y) * width as usize + ox as usize) * 3;
        data[dst..dst + row].copy_from_slice(&content.data[y * row..(y + 1) * row]);
    }
    Rgb::new(width, height, data)
}

impl Qwen2VlImage {
    /// The pixels as three planes, R then G then B, each row by row: llama.cpp's `inp_raw`.
    pub fn planar(&self) -> Vec<f32> {
        let n = self.width as usize * self.height as usize;
        let mut out = vec![0f32; n * 3];
        for (i, px) in self.pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * n + i] = px[c];
            }
        }
        out
    }
}

impl MropeImage {
    pub fn n_tokens(&self) -> usize {
        self.nx as usize * self.ny as usize
    }

    /// How far the image moves the next token's position: its longer side in tokens, not its
    /// token count (mtmd_image_tokens_get_n_pos).
    pub fn n_positions(&self) -> u32 {
        self.nx.max(self.ny)
    }

    /// Each token's position when the image starts at position `start`, in the sections' order
    /// llama.cpp's graph takes them: [time, row, column, 0] = [start, start + row, start + column,
    /// 0] (mtmd_image_tokens_get_decoder_pos).
    pub fn positions(&self, start: i32) -> Vec<[i32; 4]> {
        (0..self.ny as i32)
            .flat_map(|row| (0..self.nx as i32).map(move |col| [start, start + row, start + col, 0]))
            .collect()
    }
}

/// A text token's M-RoPE position at `position`: the first three sections equal, the fourth 0
/// (llama.cpp's llm_graph_input_pos).
pub fn mrope_text_position(position: i32) -> [i32; 4] {
    [position, position, position, 0]
}
