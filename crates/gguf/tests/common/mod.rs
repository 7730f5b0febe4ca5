//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/gguf-fixtures")
}

pub fn read_fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn manifest() -> serde_json::Value {
    serde_json::from_slice(&read_fixture("manifest.json")).expect("manifest.json is valid JSON")
}

/// Builds GGUF bytes field by field, for hand-made valid and invalid files.
#[derive(Default, Clone)]
pub struct Builder(pub Vec<u8>);

impl Builder {
    pub fn header(version: u32, tensor_count: u64, kv_count: u64) -> Builder {
        let mut b = Builder::default();
        b.0.extend_from_slice(b"GGUF");
        b.u32(version).u64(tensor_count).u64(kv_count);
        b
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// A key with a u32 value.
    pub fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
    }
    pub fn tensor(&mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(type_id).u64(offset)
    }
    /// Zero padding up to `alignment`, then `data_len` bytes of data.
    pub fn data(&mut self, alignment: usize, data_len: usize) -> &mut Self {
        let padded = self.0.len().next_multiple_of(alignment);
        self.0.resize(padded + data_len, 0);
        self
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
}
