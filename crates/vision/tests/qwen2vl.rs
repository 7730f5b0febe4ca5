//! Qwen2.5-VL's preprocessing and token layout against llama.cpp's mtmd on the fixtures in
//! tests/vision-fixtures/qwen2vl (scripts/fixtures_vision_qwen2vl.py): for every test image
//! (scaled up to the least pixels, scaled down to the most, odd aspect ratios, grayscale, PNG
//! with alpha, an EXIF-rotated JPEG) the pixels are the ones llama.cpp feeds its encoder, which
//! the generator captured from llama.cpp itself, and the tokens sit where mtmd puts them.

use std::path::PathBuf;

use burrow_vision::{decode, mrope_text_position, Qwen2Vl, Rgb};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vision-fixtures/qwen2vl")
}

fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("qwen2vl.json")).unwrap()).unwrap()
}

fn f32s(path: &str) -> Vec<f32> {
    std::fs::read(fixtures().join(path))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn positions(v: &Value) -> Vec<[i32; 4]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let p: Vec<i32> = p.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as i32).collect();
            [p[0], p[1], p[2], p[3]]
        })
        .collect()
}

/// The processor with llama.cpp's default budget, from the mmproj's values.
fn processor(manifest: &Value) -> Qwen2Vl {
    let h = &manifest["mmproj"]["hparams"];
    let three = |key: &str| -> [f32; 3] {
        let v: Vec<f32> = h[key].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        [v[0], v[1], v[2]]
    };
    let qwen = Qwen2Vl::new(
        h["patch_size"].as_u64().unwrap() as u32,
        h["n_merge"].as_u64().unwrap() as u32,
        three("image_mean"),
        three("image_std"),
    );
    assert_eq!(u64::from(qwen.min_pixels), h["image_min_pixels_default"].as_u64().unwrap());
    assert_eq!(u64::from(qwen.max_pixels), h["image_max_pixels_default"].as_u64().unwrap());
    qwen
}

/// The budget the references were made with (llama.cpp's `--image-max-tokens`).
fn test_processor(manifest: &Value) -> Qwen2Vl {
    let max_tokens = manifest["reference"]["mtmd_context_params"]["image_max_tokens"].as_u64().unwrap() as u32;
    let qwen = processor(manifest).with_token_budget(Qwen2Vl::DEFAULT_MIN_TOKENS, max_tokens);
    let h = &manifest["mmproj"]["hparams"];
    assert_eq!(u64::from(qwen.min_pixels), h["image_min_pixels"].as_u64().unwrap());
    assert_eq!(u64::from(qwen.max_pixels), h["image_max_pixels"].as_u64().unwrap());
    qwen
}

/// The image as llama.cpp decoded it: stb_image's output where the fixtures keep it (the JPEG,
/// which stb decodes a little differently from other decoders, and as stored: stb ignores EXIF),
/// else ours (a PNG's samples are exact).
fn as_llama_cpp_decoded(image: &Value) -> Rgb {
    match image["decoded_rgb"]["file"].as_str() {
        Some(raw) => {
            let shape = u32s(&image["decoded_rgb"]["shape"]);
            Rgb::new(shape[1], shape[0], std::fs::read(fixtures().join(raw)).unwrap())
        }
        None => decode(&std::fs::read(fixtures().join(image["image"].as_str().unwrap())).unwrap()).unwrap(),
    }
}

#[test]
fn pixels_equal_llama_cpp_for_every_test_image() {
    let manifest = manifest();
    let qwen = test_processor(&manifest);
    let images = manifest["images"].as_array().unwrap();
    assert!(images.len() >= 9);
    for image in images {
        let name = image["image"].as_str().unwrap();
        let plan = &image["preprocess"];
        let ours = qwen.preprocess(&as_llama_cpp_decoded(image));
        assert_eq!(vec![ours.width, ours.height], u32s(&plan["target_size"]), "{name}: size");
        assert_eq!(ours.grid_thw.to_vec(), u32s(&plan["grid_thw"]), "{name}: patch grid");
        let reference = f32s(image["pixels"]["file"].as_str().unwrap());
        assert_eq!(ours.pixels.len(), reference.len(), "{name}: pixel count");
        // Bit for bit: the resize is integer arithmetic, the normalization the same f32 operations.
        let differing = ours.pixels.iter().zip(&reference).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differing, 0, "{name}: {differing} of {} values differ from llama.cpp's", ours.pixels.len());
    }
}

#[test]
fn sizes_follow_llama_cpps_default_budget_too() {
    let manifest = manifest();
    let qwen = processor(&manifest);
    for image in manifest["images"].as_array().unwrap() {
        let name = image["image"].as_str().unwrap();
        let default = &image["default_budget"];
        let rgb = as_llama_cpp_decoded(image);
        let (width, height) = qwen.target_size(rgb.width, rgb.height);
        assert_eq!(vec![width, height], u32s(&default["preprocess"]["target_size"]), "{name}");
        let tokens = qwen.tokens(rgb.width, rgb.height);
        assert_eq!(tokens.n_tokens() as u64, default["n_image_tokens"].as_u64().unwrap(), "{name}");
        assert_eq!(u64::from(tokens.n_positions()), default["n_image_positions"].as_u64().unwrap(), "{name}");
    }
}

#[test]
fn image_tokens_sit_where_mtmd_puts_them() {
    let manifest = manifest();
    let qwen = test_processor(&manifest);
    for image in manifest["images"].as_array().unwrap() {
        let name = image["image"].as_str().unwrap();
        let rgb = as_llama_cpp_decoded(image);
        let tokens = qwen.preprocess(&rgb).tokens;
        assert_eq!(tokens, qwen.tokens(rgb.width, rgb.height));
        let grid = u32s(&image["preprocess"]["merged_grid"]);
        assert_eq!((tokens.nx, tokens.ny), (grid[0], grid[1]), "{name}: token grid");
        // The prompt is just the image: <|vision_start|>, the image, <|vision_end|>.
        let chunks = image["chunks"].as_array().unwrap();
        let start = chunks[0]["tokens"].as_array().unwrap().len() as i32;
        let chunk = &chunks[1];
        assert_eq!(chunk["type"], "image");
        assert_eq!(tokens.n_tokens() as u64, chunk["n_tokens"].as_u64().unwrap(), "{name}");
        assert_eq!(u64::from(tokens.n_positions()), chunk["n_pos"].as_u64().unwrap(), "{name}");
        assert_eq!(tokens.positions(start), positions(&chunk["positions"]), "{name}: positions");
        let total = image["n_positions_total"].as_u64().unwrap() as i32;
        assert_eq!(start + tokens.n_positions() as i32 + 1, total, "{name}: where <|vision_end|> goes");
    }
}

#[test]
fn chat_prompt_positions_equal_the_ones_llama_cpps_language_model_received() {
    let manifest = manifest();
    let chat = &manifest["chat"];
    let image = manifest["images"].as_array().unwrap().iter().find(|i| i["image"] == chat["image"]).unwrap();
    let tokens = test_processor(&manifest).preprocess(&as_llama_cpp_decoded(image)).tokens;
    let mut ours = Vec::new();
    let mut position = 0i32;
    for chunk in chat["chunks"].as_array().unwrap() {
        if chunk["type"] == "text" {
            for _ in chunk["tokens"].as_array().unwrap() {
                ours.push(mrope_text_position(position));
                position += 1;
            }
        } else {
            ours.extend(tokens.positions(position));
            position += tokens.n_positions() as i32;
        }
    }
    assert_eq!(ours, positions(&chat["positions"]));
    assert_eq!(i64::from(position), chat["n_past"].as_i64().unwrap());
    // Generated tokens continue after the image's longer side, not after its token count.
    assert!(ours.len() > position as usize);
    let generated: Vec<[i32; 4]> = (0..8).map(|i| mrope_text_position(position + i)).collect();
    assert_eq!(generated, positions(&chat["greedy"]["positions"]));
}

#[test]
fn planar_pixels_are_llama_cpps_input_planes() {
    let manifest = manifest();
    let image = &manifest["images"][0];
    let ours = test_processor(&manifest).preprocess(&as_llama_cpp_decoded(image));
    let planes = ours.planar();
    let n = (ours.width * ours.height) as usize;
    for (i, px) in ours.pixels.chunks_exact(3).enumerate() {
        assert_eq!([planes[i], planes[n + i], planes[2 * n + i]], [px[0], px[1], px[2]]);
    }
}

#[test]
fn an_upright_phone_photo_gets_the_transposed_layout() {
    // Burrow turns the JPEG upright by its EXIF orientation (stored 60 × 30, shown 30 × 60);
    // llama.cpp's stb_image does not, so its canvas is 112 × 56 where ours is 56 × 112.
    let manifest = manifest();
    let qwen = test_processor(&manifest);
    let image = manifest["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["image"].as_str().unwrap().contains("exif_rot6"))
        .unwrap();
    let upright = decode(&std::fs::read(fixtures().join(image["image"].as_str().unwrap())).unwrap()).unwrap();
    let stored = as_llama_cpp_decoded(image);
    assert_eq!((upright.width, upright.height), (stored.height, stored.width));
    let ours = qwen.preprocess(&upright);
    let theirs = u32s(&image["preprocess"]["target_size"]);
    assert_eq!((ours.width, ours.height), (theirs[1], theirs[0]));
    assert_eq!((ours.tokens.nx, ours.tokens.ny), (2, 4));
}
