//! Memory bandwidth, for benchmarks: copying a buffer (`shaders/copy.wgsl`), the ceiling the
//! decode matvecs' weight reads are compared against (`burrow bench --bandwidth`).

use burn::backend::wgpu::{KernelSource, SourceTemplate};
use burn::cubecl::client::Client;
use burn::cubecl::prelude::KernelId;
use burn::cubecl::server::Handle;
use burn::tensor::Device;

use crate::device::{wgpu_device, MAX_WORKGROUPS_PER_DIM};
use crate::error::GpuError;
use crate::kernel::{dispatch_sized, Named};
use crate::shaders::{self, GPU_WORKGROUP_SIZE};

/// Workgroups of one copy: enough to keep any GPU's memory busy; each lane strides past them.
const COPY_WORKGROUPS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Copy;

impl KernelSource for Copy {
    fn source(&self) -> SourceTemplate {
        shaders::template(shaders::COPY, GPU_WORKGROUP_SIZE)
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>()
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

impl Named for Copy {
    fn name(&self) -> String {
        "copy".into()
    }
}

/// Two buffers of the same size on a wgpu device, the first filled with a known pattern.
pub struct CopyBench {
    client: Client,
    src: Handle,
    dst: Handle,
    bytes: usize,
}

impl CopyBench {
    /// Buffers of `bytes` (rounded up to 16) on `device`.
    ///
    /// # Errors
    ///
    /// [`GpuError::NotWgpu`] off wgpu, [`GpuError::TooLarge`] past a binding.
    pub fn new(device: &Device, bytes: usize) -> Result<CopyBench, GpuError> {
        let client: Client = wgpu_device(device).ok_or_else(|| GpuError::NotWgpu(format!("{device:?}")))?.client();
        let bytes = bytes.next_multiple_of(16).max(16);
        if bytes as u64 > client.properties().memory.max_page_size {
            return Err(GpuError::TooLarge(format!("a copy of {bytes} bytes")));
        }
        let pattern: Vec<u8> = (0..bytes / 4).flat_map(|i| (i as u32).wrapping_mul(0x9E37_79B9).to_le_bytes()).collect();
        Ok(CopyBench { src: client.create_from_slice(&pattern), dst: client.empty(bytes), client, bytes })
    }

    /// Queues one copy.
    ///
    /// # Errors
    ///
    /// As a dispatch.
    pub fn run(&self) -> Result<(), GpuError> {
        let groups = COPY_WORKGROUPS.min(MAX_WORKGROUPS_PER_DIM);
        dispatch_sized(&self.client, Copy, GPU_WORKGROUP_SIZE, [groups, 1], &[&self.src, &self.dst], &[(self.bytes / 16) as u32])
    }

    /// Bytes one copy moves: read and written.
    pub fn bytes_moved(&self) -> usize {
        2 * self.bytes
    }

    /// Whether the destination holds the source's pattern (natively: it waits for the device).
    ///
    /// # Errors
    ///
    /// [`GpuError::Device`] if the read fails.
    #[cfg(not(target_family = "wasm"))]
    pub fn copied(&self) -> Result<bool, GpuError> {
        let words = crate::ops::read_u32(&self.client, self.dst.clone())?;
        Ok(words.iter().enumerate().all(|(i, &w)| w == (i as u32).wrapping_mul(0x9E37_79B9)))
    }
}
