//! Shared by the vision tests: the fixtures under tests/vision-fixtures and the wgpu device.
#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;

use burrow_gpu::Gpu;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vision-fixtures")
}

/// A raw little-endian f32 reference file under the fixtures.
pub fn f32s(path: &str) -> Vec<f32> {
    std::fs::read(fixtures().join(path)).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The wgpu device, opened once for this binary (a second init fails).
pub fn gpu() -> &'static Gpu {
    static GPU: std::sync::OnceLock<Gpu> = std::sync::OnceLock::new();
    GPU.get_or_init(|| Gpu::open().expect("a wgpu adapter (apt-get install -y mesa-vulkan-drivers)"))
}
