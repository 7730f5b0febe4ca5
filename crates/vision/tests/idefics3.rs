//! Decoding and SmolVLM's preprocessing against llama.cpp's mtmd on the fixtures in
//! tests/vision-fixtures (scripts/fixtures_vision.py): the tiles' pixels for every test image
//! (sizes that need resizing, odd aspect ratios, grayscale, PNG with alpha, an EXIF-rotated JPEG)
//! are the ones llama.cpp feeds its encoder, which the generator captured from llama.cpp itself.

use std::path::PathBuf;

use burrow_vision::{decode, Idefics3, Rgb, VisionError};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vision-fixtures")
}

fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("vision.json")).unwrap()).unwrap()
}

fn f32s(path: &str) -> Vec<f32> {
    std::fs::read(fixtures().join(path)).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn processor(manifest: &Value) -> Idefics3 {
    let h = &manifest["mmproj"]["hparams"];
    let three = |key: &str| -> [f32; 3] {
        let v: Vec<f32> = h[key].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        [v[0], v[1], v[2]]
    };
    Idefics3 {
        tile_size: h["image_size"].as_u64().unwrap() as u32,
        longest_edge: h["preproc_image_size"].as_u64().unwrap() as u32,
        mean: three("image_mean"),
        std: three("image_std"),
    }
}

/// The image as llama.cpp decoded it: stb_image's output where the fixtures keep it (the JPEG,
/// which stb decodes a little differently from other decoders, and as stored: stb ignores EXIF),
/// else ours (a PNG's samples are exact).
fn as_llama_cpp_decoded(image: &Value) -> Rgb {
    let path = image["image"].as_str().unwrap();
    match image["decoded_rgb"]["file"].as_str() {
        Some(raw) => {
            let shape: Vec<u32> = image["decoded_rgb"]["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            Rgb::new(shape[1], shape[0], std::fs::read(fixtures().join(raw)).unwrap())
        }
        None => decode(&std::fs::read(fixtures().join(path)).unwrap()).unwrap(),
    }
}

#[test]
fn tiles_equal_llama_cpp_for_every_test_image() {
    let manifest = manifest();
    let idefics3 = processor(&manifest);
    let images = manifest["images"].as_array().unwrap();
    assert!(images.len() >= 8);
    for image in images {
        let name = image["image"].as_str().unwrap();
        let rgb = as_llama_cpp_decoded(image);
        let tiles = idefics3.preprocess(&rgb);
        let grid: Vec<u64> = image["preprocess"]["grid"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!((u64::from(tiles.grid_x), u64::from(tiles.grid_y)), (grid[0], grid[1]), "{name}: grid");
        let reference = f32s(image["pixels"]["file"].as_str().unwrap());
        // Prompt order: the tiles row by row, then the overview.
        let ours: Vec<f32> = tiles.tiles.iter().flatten().chain(&tiles.overview).copied().collect();
        assert_eq!(ours.len(), reference.len(), "{name}: pixel count");
        let differing = ours.iter().zip(&reference).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differing, 0, "{name}: {differing} of {} values differ from llama.cpp's", ours.len());
    }
}

#[test]
fn a_phone_photo_is_turned_upright_by_its_exif_orientation() {
    // Orientation 6: stored 60 × 30, shown rotated 90° clockwise (30 × 60). llama.cpp's stb_image
    // ignores the tag; we apply it, as transformers' load_image and every photo viewer do. So the
    // reference is stb's decode, rotated here.
    let manifest = manifest();
    let image = manifest["images"].as_array().unwrap().iter().find(|i| i["image"].as_str().unwrap().contains("exif_rot6")).unwrap();
    let stored = as_llama_cpp_decoded(image);
    let ours = decode(&std::fs::read(fixtures().join(image["image"].as_str().unwrap())).unwrap()).unwrap();
    assert_eq!((ours.width, ours.height), (stored.height, stored.width));
    let (mut worst, mut total) = (0u8, 0u64);
    for y in 0..ours.height {
        for x in 0..ours.width {
            // Rotating clockwise: shown (x, y) is stored (y, H_shown − 1 − x).
            let (sx, sy) = (y, stored.height - 1 - x);
            for c in 0..3 {
                let a = ours.data[((y * ours.width + x) * 3 + c) as usize];
                let b = stored.data[((sy * stored.width + sx) * 3 + c) as usize];
                worst = worst.max(a.abs_diff(b));
                total += u64::from(a.abs_diff(b));
            }
        }
    }
    let mean = total as f64 / ours.data.len() as f64;
    // JPEG decoders differ in their IDCT and chroma upsampling: on this small, busy image
    // zune-jpeg and stb_image are 0.4 levels apart on average, 9 at most (Pillow's libjpeg-turbo
    // is 2 from stb). Rotated the wrong way, the mean would be tens of levels.
    assert!(mean <= 1.0 && worst <= 16, "difference from stb_image's decode: mean {mean:.3}, largest {worst} levels");
}

/// A PNG whose header says `width` × `height`, with nothing after the header.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    // An empty IDAT: decoders read the header up to the first image data.
    png.extend(0u32.to_be_bytes());
    png.extend(b"IDAT");
    png.extend(crc32(b"IDAT").to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn bad_images_get_a_clear_error() {
    // A 12,000 × 12,000 photo is refused from its header, before 432 MB of pixels are decoded.
    assert_eq!(decode(&png_header(12_000, 12_000)), Err(VisionError::TooLarge { width: 12_000, height: 12_000 }));
    let message = VisionError::TooLarge { width: 12_000, height: 12_000 }.to_string();
    assert_eq!(message, "the image is 12000 × 12000 pixels; Burrow takes images of up to 50 megapixels");
    // Not an image at all.
    assert_eq!(decode(b"GGUF\x03\x00\x00\x00 this is a model, not a photo"), Err(VisionError::NotAnImage));
    assert_eq!(decode(b""), Err(VisionError::NotAnImage));
    // A real image cut short.
    let png = std::fs::read(fixtures().join("images/large_160x160.png")).unwrap();
    assert!(matches!(decode(&png[..png.len() / 2]), Err(VisionError::Corrupt(_))));
    let jpeg = std::fs::read(fixtures().join("images/exif_rot6_60x30.jpg")).unwrap();
    assert!(matches!(decode(&jpeg[..jpeg.len() / 3]), Err(VisionError::Corrupt(_))));
}

#[test]
fn grayscale_and_alpha_decode_as_llama_cpp_does() {
    // Gray is repeated into R, G and B; alpha is dropped, not blended (stb_image with 3 channels).
    let gray = decode(&std::fs::read(fixtures().join("images/gray_70x40.png")).unwrap()).unwrap();
    assert!(gray.data.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    let rgba = decode(&std::fs::read(fixtures().join("images/rgba_40x64.png")).unwrap()).unwrap();
    assert_eq!((rgba.width, rgba.height, rgba.data.len()), (40, 64, 40 * 64 * 3));
}
