//! Shared helpers for the integration tests: fixture paths and the real SmolLM2 model.

use std::path::PathBuf;

use burrow_gguf::Gguf;

pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture(name: &str) -> PathBuf {
    workspace_root().join("tests/text-fixtures").join(name)
}

pub fn read_json(name: &str) -> serde_json::Value {
    let path = fixture(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The parsed SmolLM2 model, or None when BURROW_SKIP_MODEL_TESTS=1. A missing file is a failure.
#[allow(dead_code)] // each test binary uses its own subset of these helpers
pub fn smollm2() -> Option<Gguf> {
    if std::env::var("BURROW_SKIP_MODEL_TESTS").is_ok_and(|v| v == "1") {
        return None;
    }
    let path = std::env::var_os("BURROW_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/models").join(MODEL_FILE));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "model file {} not readable ({e}): run `make model` to fetch it, set BURROW_MODEL, \
             or set BURROW_SKIP_MODEL_TESTS=1",
            path.display()
        )
    });
    Some(Gguf::parse(&bytes, bytes.len() as u64).expect("parse SmolLM2 GGUF"))
}
