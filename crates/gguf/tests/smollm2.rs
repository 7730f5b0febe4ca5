//! The real SmolLM2-135M-Instruct Q4_1 model, checked against llama.cpp's reading of it
//! (tests/gguf-fixtures/smollm2_*, copied from shared/golden/smollm2). Skipped when the model is not present.

mod common;

use burrow_gguf::{dequantize_to_vec, GgmlType, Gguf, HeaderReader};
use common::{fixtures_dir, read_fixture};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn model() -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            println!("note: {} is absent; skipping the SmolLM2 checks", path.display());
            None
        }
    }
}

fn summary() -> serde_json::Value {
    serde_json::from_slice(&read_fixture("smollm2_summary.json")).unwrap()
}

struct Expected {
    name: String,
    type_id: u32,
    dims: Vec<u64>,
    n_elements: u64,
    n_bytes: u64,
    abs_offset: u64,
    sha256: String,
}

fn expected_tensors() -> Vec<Expected> {
    let text = std::fs::read_to_string(fixtures_dir().join("smollm2_tensors.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Expected {
                name: f[0].to_owned(),
                type_id: f[1].parse().unwrap(),
                dims: f[2].split(',').map(|d| d.parse().unwrap()).collect(),
                n_elements: f[3].parse().unwrap(),
                n_bytes: f[4].parse().unwrap(),
                abs_offset: f[5].parse().unwrap(),
                sha256: f[6].to_owned(),
            }
        })
        .collect()
}

#[test]
fn header_matches_llama_cpp() {
    let Some(bytes) = model() else { return };
    let s = summary();
    assert_eq!(bytes.len() as u64, s["file_size_bytes"].as_u64().unwrap());
    let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(u64::from(g.version), s["gguf_version"].as_u64().unwrap());
    assert_eq!(g.data_offset, s["tensor_data_offset"].as_u64().unwrap());
    assert_eq!(g.data_offset, 1_785_664);
    assert_eq!(g.alignment, s["alignment"].as_u64().unwrap());
    assert_eq!(g.metadata.len() as u64, s["kv_count"].as_u64().unwrap());
    assert_eq!(g.architecture(), s["architecture"].as_str());
    assert_eq!(g.get_str("general.name"), s["general.name"].as_str());
    assert_eq!(g.get_u64("llama.embedding_length"), s["n_embd"].as_u64());
    assert_eq!(g.get_u64("llama.block_count"), s["n_layer"].as_u64());
    assert_eq!(g.get_u64("tokenizer.ggml.bos_token_id"), s["bos_token_id"].as_u64());
    assert_eq!(g.get_u64("tokenizer.ggml.eos_token_id"), s["eos_token_id"].as_u64());
    assert_eq!(g.get_f32("llama.attention.layer_norm_rms_epsilon").map(f64::from), s["rms_norm_eps"].as_f64());
    assert_eq!(g.get_f32("llama.rope.freq_base").map(f64::from), s["rope_freq_base"].as_f64());
    let tokens = g.get_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len() as u64, s["vocab_size_tokens"].as_u64().unwrap());
    for (t, want) in tokens.iter().zip(s["first_tokens"].as_array().unwrap()) {
        assert_eq!(t.as_str(), want.as_str());
    }
    let merges = g.get_array("tokenizer.ggml.merges").unwrap();
    assert_eq!(merges.len() as u64, s["n_merges"].as_u64().unwrap());
    for (m, want) in merges.iter().zip(s["first_merges"].as_array().unwrap()) {
        assert_eq!(m.as_str(), want.as_str());
    }

    let expected = expected_tensors();
    assert_eq!(g.tensors.len(), 272);
    assert_eq!(g.tensors.len(), expected.len());
    for (t, e) in g.tensors.iter().zip(&expected) {
        assert_eq!(t.name, e.name);
        assert_eq!(t.ty.id(), e.type_id, "{}", t.name);
        assert_eq!(t.dims, e.dims, "{}", t.name);
        assert_eq!(t.n_elements, e.n_elements, "{}", t.name);
        assert_eq!(t.n_bytes, e.n_bytes, "{}", t.name);
        assert_eq!(g.data_offset + t.offset, e.abs_offset, "{}", t.name);
    }
}

#[test]
fn tensor_bytes_match_and_every_tensor_dequantizes() {
    let Some(bytes) = model() else { return };
    let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
    for (t, e) in g.tensors.iter().zip(expected_tensors()) {
        let data = g.tensor_data(&bytes, t).unwrap();
        let digest: String = Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest, e.sha256, "{}", t.name);
        assert!(matches!(t.ty, GgmlType::F32 | GgmlType::Q4_1 | GgmlType::Q8_0), "{}", t.ty);
        let values = dequantize_to_vec(t.ty, data, t.n_elements as usize).unwrap();
        // Real weights: finite and not all zero.
        assert!(values.iter().all(|v| v.is_finite()), "{}", t.name);
        assert!(values.iter().any(|&v| v != 0.0), "{}", t.name);
    }
}

#[test]
fn header_reader_on_the_real_model() {
    let Some(bytes) = model() else { return };
    let whole = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
    let header_len = whole.data_offset as usize;
    for chunk in [1, 7, 1 << 20] {
        let mut reader = HeaderReader::new(bytes.len() as u64);
        let mut found = None;
        for c in bytes.chunks(chunk) {
            if let Some(g) = reader.push(c).unwrap() {
                found = Some(g);
                break;
            }
        }
        let g = found.expect("header completes");
        assert_eq!(g.tensors, whole.tensors, "{chunk}-byte chunks");
        assert_eq!(g.metadata, whole.metadata, "{chunk}-byte chunks");
        assert_eq!(g.data_offset as usize, header_len);
    }
}
