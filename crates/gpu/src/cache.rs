//! A layer's KV cache on the GPU: keys and values of every position a session can hold, written
//! in place by the RoPE kernels and read by attention. The GPU family keeps it as f16 pairs packed
//! in u32 words (half the memory, so a long context fits under a 128 MiB binding), the CPU-adapter
//! family as f32.

use burn::backend::CubeDevice;
use burn::cubecl::client::Client;
use burn::cubecl::server::Handle;
use burn::tensor::Device;

use crate::device::wgpu_device;
use crate::error::GpuError;

/// Keys and values `[kv_heads, n_ctx, head_dim]` of one layer.
#[derive(Clone)]
pub struct KvCache {
    pub(crate) k: Handle,
    pub(crate) v: Handle,
    dims: [usize; 3],
    f16: bool,
    pub(crate) client: Client,
    pub(crate) device: CubeDevice,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KvCache({:?}, {})", self.dims, if self.f16 { "f16" } else { "f32" })
    }
}

impl KvCache {
    /// An empty cache (positions are written before attention reads them) on the wgpu `device`.
    /// `head_dim` must be even for f16 pairs.
    ///
    /// # Errors
    ///
    /// [`GpuError::NotWgpu`] off wgpu, [`GpuError::Shape`] for an empty or odd shape,
    /// [`GpuError::TooLarge`] past a storage binding.
    pub fn new(device: &Device, [kv_heads, n_ctx, head_dim]: [usize; 3], f16: bool) -> Result<KvCache, GpuError> {
        let cube = wgpu_device(device).ok_or_else(|| GpuError::NotWgpu(format!("{device:?}")))?.clone();
        if kv_heads == 0 || n_ctx == 0 || head_dim == 0 || head_dim % 4 != 0 {
            return Err(GpuError::Shape(format!("a KV cache [{kv_heads}, {n_ctx}, {head_dim}]")));
        }
        let client: Client = cube.client();
        let bytes = kv_heads * n_ctx * head_dim * if f16 { 2 } else { 4 };
        if bytes as u64 > client.properties().memory.max_page_size || bytes > u32::MAX as usize {
            return Err(GpuError::TooLarge(format!("a KV cache of {bytes} bytes per layer and tensor")));
        }
        Ok(KvCache {
            k: client.empty(bytes),
            v: client.empty(bytes),
            dims: [kv_heads, n_ctx, head_dim],
            f16,
            client,
            device: cube,
        })
    }

    /// A cache holding `k` and `v` (`[kv_heads, n_ctx, head_dim]` f32 each, rounded to f16 for an
    /// f16 cache): for tests.
    ///
    /// # Errors
    ///
    /// As [`KvCache::new`], and [`GpuError::Shape`] if the values are not that shape.
    pub fn upload(device: &Device, dims: [usize; 3], k: &[f32], v: &[f32], f16: bool) -> Result<KvCache, GpuError> {
        let cache = KvCache::new(device, dims, f16)?;
        let n = dims.iter().product::<usize>();
        if k.len() != n || v.len() != n {
            return Err(GpuError::Shape(format!("{} and {} values for a cache {dims:?}", k.len(), v.len())));
        }
        let bytes = |values: &[f32]| -> Vec<u8> {
            if f16 {
                values.iter().flat_map(|&x| burn::tensor::f16::from_f32(x).to_le_bytes()).collect()
            } else {
                values.iter().flat_map(|x| x.to_le_bytes()).collect()
            }
        };
        let k_handle = cache.client.create_from_slice(&bytes(k));
        let v_handle = cache.client.create_from_slice(&bytes(v));
        Ok(KvCache { k: k_handle, v: v_handle, ..cache })
    }

    /// Keys and values as f32 (natively: it waits for the device): for tests.
    ///
    /// # Errors
    ///
    /// [`GpuError::Device`] if the read fails.
    #[cfg(not(target_family = "wasm"))]
    pub fn read(&self) -> Result<(Vec<f32>, Vec<f32>), GpuError> {
        let f16 = self.f16;
        let values = |h: &Handle| -> Result<Vec<f32>, GpuError> {
            let bytes = self.client.read_one(h.clone()).map_err(|e| GpuError::Device(format!("{e:?}")))?;
            Ok(if f16 {
                bytes.chunks_exact(2).map(|b| burn::tensor::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            } else {
                bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            })
        };
        Ok((values(&self.k)?, values(&self.v)?))
    }

    /// `[kv_heads, n_ctx, head_dim]`.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// Whether it holds f16 pairs (else f32).
    pub fn is_f16(&self) -> bool {
        self.f16
    }

    /// Bytes of device memory the keys and values take.
    pub fn bytes(&self) -> usize {
        2 * self.dims.iter().product::<usize>() * if self.f16 { 2 } else { 4 }
    }
}
