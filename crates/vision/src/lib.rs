//! Images for vision models, read top to bottom: bytes → RGB pixels ([`decode`]) → Pillow's
//! resampling ([`resize`], as llama.cpp's mtmd does it) → the normalized tiles a vision encoder
//! takes ([`Idefics3`]: SmolVLM's layout; [`Qwen2Vl`]: Qwen2-VL's and Qwen2.5-VL's). The pixels
//! match llama.cpp's, so embeddings and answers can be compared with it token for token.

mod decode;
mod idefics3;
mod qwen2vl;
mod resize;

pub use decode::{decode, Rgb, MAX_IMAGE_PIXELS};
pub use idefics3::{Idefics3, Tiles};
pub use qwen2vl::{mrope_text_position, MropeImage, Qwen2Vl, Qwen2VlImage};
pub use resize::{resize, Filter};

/// Why an image cannot be used; each says so in one sentence a person can act on.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VisionError {
    #[error("this file is not an image Burrow can read (PNG, JPEG or WebP)")]
    NotAnImage,
    #[error("the image could not be decoded (is the file complete?): {0}")]
    Corrupt(String),
    #[error("the image is {width} × {height} pixels; Burrow takes images of up to {} megapixels", MAX_IMAGE_PIXELS / 1_000_000)]
    TooLarge { width: u32, height: u32 },
    #[error("the image is empty ({width} × {height} pixels)")]
    Empty { width: u32, height: u32 },
}
