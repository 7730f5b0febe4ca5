//! Broken model files: every command fails with a non-zero exit and one line naming the file and
//! the problem, never a panic. The broken files are made from the real model's bytes.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::model_path;

fn model_bytes() -> Vec<u8> {
    let path = model_path();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("burrow-bad-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs commands on `bytes` written to a file; each must fail cleanly with a message containing `expect`.
fn assert_clean_failure(scratch: &Scratch, label: &str, bytes: &[u8], expect: &str) {
    let path = write(scratch, label, bytes);
    let file = path.to_str().unwrap();
    assert_fails(label, file, &["info", "--model", file], expect);
    assert_run_fails(label, file, expect);
    std::fs::remove_file(&path).unwrap();
}

/// A well-formed file Burrow cannot run: `info` explains why, loading it fails with that reason.
fn assert_unsupported(scratch: &Scratch, label: &str, bytes: &[u8], expect: &str) {
    let path = write(scratch, label, bytes);
    let file = path.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_burrow")).args(["info", "--model", file]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{label}: info failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("supported: no") && stdout.contains(expect), "{label}: info says:\n{stdout}");
    assert_run_fails(label, file, expect);
    std::fs::remove_file(&path).unwrap();
}

fn write(scratch: &Scratch, label: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch.0.join(format!("{label}.gguf"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn assert_run_fails(label: &str, file: &str, expect: &str) {
    let commands: [&[&str]; 2] = [
        &["generate", "--model", file, "--prompt", "hi", "--max-tokens", "1", "--json"],
        &["logits", "--model", file, "--ids", "1", "--json"],
    ];
    for args in commands {
        assert_fails(label, file, args, expect);
    }
}

/// Exit status 1, nothing on stdout, one line on stderr naming the file and containing `expect`.
fn assert_fails(label: &str, file: &str, args: &[&str], expect: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_burrow")).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{label} {args:?}: exit status {:?}, stderr {stderr}", out.status);
    assert!(out.stdout.is_empty(), "{label} {args:?}: printed {}", String::from_utf8_lossy(&out.stdout));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{label} {args:?}: stderr is not one line: {stderr}");
    assert!(lines[0].starts_with(&format!("burrow: {file}: ")), "{label}: {stderr}");
    assert!(lines[0].contains(expect), "{label} {args:?}: expected '{expect}' in: {stderr}");
}

/// Offset of the first byte after the GGUF string `s` (u64 length + bytes) in the header.
fn after_string(bytes: &[u8], s: &str) -> usize {
    let mut needle = (s.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(s.as_bytes());
    let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap_or_else(|| panic!("'{s}' not in the header"));
    at + needle.len()
}

#[test]
fn truncated_files_fail_cleanly() {
    let bytes = model_bytes();
    let scratch = Scratch::new("truncated");
    let data_start = 1_785_664; // tensor data offset of this file (tests/golden/smollm2)
    for cut in [0, 3, 4, 7, 8, 16, 23, 24, 40, 1_000, 100_000, data_start - 1, data_start, data_start + 4096, bytes.len() / 2, bytes.len() - 1] {
        assert_clean_failure(&scratch, &format!("cut{cut}"), &bytes[..cut], "");
    }
}

#[test]
fn malformed_headers_fail_with_a_clear_reason() {
    let bytes = model_bytes();
    let scratch = Scratch::new("malformed");
    let header = &bytes[..1_785_664];

    let mut bad = header.to_vec();
    bad[..4].copy_from_slice(b"GGUX");
    assert_clean_failure(&scratch, "magic", &bad, "GGUF");

    assert_clean_failure(&scratch, "text", b"This is a text file, not a model.\n", "GGUF");

    let mut bad = bytes.clone();
    bad[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert_clean_failure(&scratch, "version1", &bad, "version");

    // tensor_count at offset 8: far more tensors than the file could describe.
    let mut bad = bytes.clone();
    bad[8..16].copy_from_slice(&(1u64 << 62).to_le_bytes());
    assert_clean_failure(&scratch, "tensor-count", &bad, "");

    // general.architecture's value: u32 type, u64 length, then the name.
    let mut bad = bytes.clone();
    let value = after_string(&bad, "general.architecture") + 4 + 8;
    bad[value..value + 5].copy_from_slice(b"mamba");
    assert_unsupported(&scratch, "architecture", &bad, "architecture 'mamba' is not supported");

    // The first tensor record: name, u32 n_dims, n_dims × u64 dims, u32 type, u64 offset.
    let record = after_string(&bytes, "token_embd.weight");
    let n_dims = u32::from_le_bytes(bytes[record..record + 4].try_into().unwrap()) as usize;
    let type_at = record + 4 + 8 * n_dims;

    let mut bad = bytes.clone();
    bad[type_at..type_at + 4].copy_from_slice(&200u32.to_le_bytes());
    assert_clean_failure(&scratch, "tensor-type", &bad, "200");

    let mut bad = bytes.clone();
    bad[record + 4..record + 12].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert_clean_failure(&scratch, "dims", &bad, "token_embd.weight");

    let mut bad = bytes.clone();
    bad[type_at + 4..type_at + 12].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert_clean_failure(&scratch, "offset", &bad, "token_embd.weight");

    // A valid quantization type Burrow cannot run yet: MXFP4 (id 39) has 32-element blocks and
    // is smaller than Q8_0, so the file still parses.
    let mut bad = bytes.clone();
    bad[type_at..type_at + 4].copy_from_slice(&39u32.to_le_bytes());
    assert_unsupported(&scratch, "unsupported-type", &bad, "MXFP4");
}
