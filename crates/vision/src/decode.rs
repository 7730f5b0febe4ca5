//! Bytes to RGB pixels: PNG, JPEG or WebP, turned upright by its EXIF orientation (a phone's photo
//! is stored sideways with a tag saying so; transformers' `load_image` applies it too). Alpha is
//! dropped and gray is repeated into R, G and B, as llama.cpp's stb_image does when asked for
//! three channels.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::VisionError;

/// The most pixels an image may have: a 50 MP phone photo decodes to 150 MB of RGB, about what a
/// phone's browser tab can spare besides the model.
pub const MAX_IMAGE_PIXELS: u64 = 50_000_000;

/// An 8-bit RGB image, rows top to bottom, pixels left to right, `[r, g, b]` each.
#[derive(Clone, Debug, PartialEq)]
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Rgb {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Self {
        assert_eq!(data.len(), width as usize * height as usize * 3, "RGB data of {width} × {height}");
        Rgb { width, height, data }
    }

    /// The `width` × `height` region at (`x`, `y`), which must lie inside the image.
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> Rgb {
        assert!(x + width <= self.width && y + height <= self.height, "crop inside the image");
        let row = self.width as usize * 3;
        let mut data = Vec::with_capacity(width as usize * height as usize * 3);
        for r in y..y + height {
            let start = r as usize * row + x as usize * 3;
            data.extend_from_slice(&self.data[start..start + width as usize * 3]);
        }
        Rgb { width, height, data }
    }
}

/// Decodes an image file. Its size is checked from the header, before any pixel is decoded.
pub fn decode(bytes: &[u8]) -> Result<Rgb, VisionError> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|_| VisionError::NotAnImage)?;
    if reader.format().is_none() {
        return Err(VisionError::NotAnImage);
    }
    let mut decoder = reader.into_decoder().map_err(|e| VisionError::Corrupt(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(VisionError::Empty { width, height });
    }
    if u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS {
        return Err(VisionError::TooLarge { width, height });
    }
    let orientation = decoder.orientation().map_err(|e| VisionError::Corrupt(e.to_string()))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| VisionError::Corrupt(e.to_string()))?;
    image.apply_orientation(orientation);
    let rgb = image.into_rgb8();
    Ok(Rgb { width: rgb.width(), height: rgb.height(), data: rgb.into_raw() })
}
