//! What the `burrow` command's integration tests share: where things are, and running the binary.
#![allow(dead_code)] // each test file uses its own subset

pub mod gguf;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The default model (`$BURROW_MODEL` or `.cache/models/`), fetched by `make model`.
pub fn model_path() -> PathBuf {
    let path = std::env::var_os("BURROW_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(path.exists(), "{} is missing: run `make model` first", path.display());
    path
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Runs `burrow` with `args`, which must succeed, and parses the last line of its output as JSON.
pub fn run_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_burrow")).args(args).output().expect("burrow runs");
    assert!(out.status.success(), "burrow {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout.lines().last().expect("one JSON line");
    serde_json::from_str(line).expect("valid JSON")
}
