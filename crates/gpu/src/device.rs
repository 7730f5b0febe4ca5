//! The wgpu device and what Burrow knows of it: the adapter behind it, which kernel family suits
//! it, its limits and memory, and a count (and, on request, a log) of the kernels queued on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use burn::backend::{CubeDevice, DispatchDevice};
use burn::cubecl::client::Client;
use burn::cubecl::MemoryScope;
use burn::tensor::Device;

use crate::error::GpuError;

/// Dispatches cubecl records before it submits them (its default is 32). A decode step is a few
/// hundred dispatches; batching a whole step into one queue submission saves a submit per 32 of
/// them (0.4–1.7 ms each on the CPU WebGPU adapters). Reads flush earlier. Pass it to
/// `Device::wgpu_options().tasks_max(..)` ([`Gpu::open`] does).
pub const TASKS_PER_SUBMIT: usize = 8192;

/// WebGPU's default `maxComputeWorkgroupsPerDimension`: the most workgroups one dispatch
/// dimension may hold on any adapter.
pub(crate) const MAX_WORKGROUPS_PER_DIM: usize = 65_535;

/// Whether `device` is a device of the cubecl wgpu runtime.
pub(crate) fn is_wgpu(device: &CubeDevice) -> bool {
    matches!(device, CubeDevice::Wgpu(_))
}

/// Whether tensors on `device` run on Burn's wgpu backend (and so can use [`crate::QuantTensor`]s).
pub fn is_wgpu_device(device: &Device) -> bool {
    wgpu_device(device).is_some()
}

/// The cubecl device behind `device`, if it is a wgpu one.
pub(crate) fn wgpu_device(device: &Device) -> Option<&CubeDevice> {
    match device.as_dispatch() {
        DispatchDevice::Cube(d) if is_wgpu(d) => Some(d),
        _ => None,
    }
}

/// The largest storage buffer one kernel binding may take on `device`
/// (`maxStorageBufferBindingSize`, as cubecl reports it).
pub fn max_binding_bytes(device: &Device) -> Option<u64> {
    let client: Client = wgpu_device(device)?.client();
    Some(client.properties().memory.max_page_size)
}

/// The workgroups of `groups` folded into the two dimensions of a dispatch (x at most
/// [`MAX_WORKGROUPS_PER_DIM`]): a kernel numbers its workgroup `y · x_count + x` and returns at
/// once from those past `groups`.
pub(crate) fn fold_groups(groups: usize) -> [usize; 2] {
    let x = groups.clamp(1, MAX_WORKGROUPS_PER_DIM);
    [x, groups.div_ceil(x).max(1)]
}

/// What Burrow needs to know of the adapter behind a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adapter {
    /// As the adapter reports it (empty in a browser, where wgpu learns no name).
    pub name: String,
    /// A CPU implementation of WebGPU or Vulkan (lavapipe, llvmpipe, SwiftShader, WARP).
    pub cpu: bool,
    /// The device was created with subgroup operations, so kernels may use them.
    pub subgroups: bool,
    /// The device was created with `shader-f16`, so kernels may declare f16 values.
    pub shader_f16: bool,
    /// WGSL has `packed_4x8_integer_dot_product` (dot4I8Packed, pack4xI8): naga always, browsers
    /// as they say (Chrome 123+).
    pub dp4a: bool,
}

impl Adapter {
    /// What the name of the adapter behind `device` tells (for a device Burrow did not open: the
    /// name is all cubecl keeps; subgroups are then taken to be absent).
    pub fn of(device: &Device) -> Option<Adapter> {
        let client: Client = wgpu_device(device)?.client();
        let name = client.properties().identity.name.clone();
        Some(Adapter { cpu: cpu_adapter_name(&name), name, subgroups: false, shader_f16: false, dp4a: false })
    }

    fn from_setup(setup: &burn::backend::wgpu::WgpuSetup) -> Adapter {
        use burn::backend::wgpu::wgpu;
        let info = setup.adapter.get_info();
        Adapter {
            cpu: info.device_type == wgpu::DeviceType::Cpu || cpu_adapter_name(&info.name),
            name: info.name,
            subgroups: setup.device.features().contains(wgpu::Features::SUBGROUP),
            shader_f16: setup.device.features().contains(wgpu::Features::SHADER_F16),
            dp4a: setup.instance.wgsl_language_features().contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct),
        }
    }
}

/// Whether an adapter of this name is a CPU implementation.
fn cpu_adapter_name(name: &str) -> bool {
    let name = name.to_lowercase();
    ["llvmpipe", "lavapipe", "swiftshader", "warp", "software"].iter().any(|n| name.contains(n))
}

/// A wgpu device Burrow opened, and its adapter.
#[derive(Clone, Debug)]
pub struct Gpu {
    pub device: Device,
    pub adapter: Adapter,
}

impl Gpu {
    /// Opens the default wgpu adapter (natively: a real GPU first, lavapipe where there is none).
    ///
    /// # Errors
    ///
    /// [`GpuError::Device`] if there is no usable adapter.
    #[cfg(not(target_family = "wasm"))]
    pub fn open() -> Result<Gpu, GpuError> {
        let (device, setup) = Device::wgpu_options()
            .tasks_max(TASKS_PER_SUBMIT)
            .init_with_setup()
            .map_err(|e| GpuError::Device(e.to_string()))?;
        Ok(Gpu { device, adapter: Adapter::from_setup(&setup) })
    }

    /// [`Gpu::open`] for a browser. wgpu's WebGPU backend learns neither the adapter's name nor
    /// its type: `cpu_hint` is what the page read from `GPUAdapter.info` (a fallback adapter,
    /// SwiftShader), `None` if it could not tell.
    ///
    /// # Errors
    ///
    /// [`GpuError::Device`] if there is no usable adapter.
    pub async fn open_async(cpu_hint: Option<bool>) -> Result<Gpu, GpuError> {
        let (device, setup) = Device::wgpu_options()
            .tasks_max(TASKS_PER_SUBMIT)
            .init_with_setup_async()
            .await
            .map_err(|e| GpuError::Device(e.to_string()))?;
        let mut adapter = Adapter::from_setup(&setup);
        adapter.cpu = cpu_hint.unwrap_or(adapter.cpu);
        Ok(Gpu { device, adapter })
    }

    /// The default adapter with a device requested with WebGPU's default limits (what every
    /// adapter, a phone's among them, guarantees: 256 invocations and 16 KiB of workgroup memory a
    /// workgroup, 8 storage buffers a stage, 128 MiB a binding, 256 MiB a buffer), with the
    /// adapter's features as cubecl asks for them (its own kernels assume them; Burrow's use at
    /// most subgroups); with the wgpu device, to compile shaders on. For tests: a kernel or model
    /// that runs here runs within any adapter's limits.
    ///
    /// # Errors
    ///
    /// [`GpuError::Device`] if there is no adapter or it refuses the device.
    #[cfg(not(target_family = "wasm"))]
    pub fn open_with_default_limits() -> Result<(Gpu, burn::backend::wgpu::wgpu::Device), GpuError> {
        use burn::backend::wgpu::{wgpu, WgpuSetup};
        let failed = |e: &dyn std::fmt::Display| GpuError::Device(e.to_string());
        let waited = || GpuError::Device("a blocking wait failed".into());
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = burn::tensor::try_read_sync(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .ok_or_else(waited)?
            .map_err(|e| failed(&e))?;
        let descriptor = wgpu::DeviceDescriptor {
            required_features: adapter.features().difference(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS),
            required_limits: wgpu::Limits::default(),
            ..Default::default()
        };
        let (device, queue) = burn::tensor::try_read_sync(adapter.request_device(&descriptor)).ok_or_else(waited)?.map_err(|e| failed(&e))?;
        let backend = adapter.get_info().backend;
        let setup = WgpuSetup { instance, adapter, device: device.clone(), queue, backend };
        Ok((Gpu::from_setup(setup)?, device))
    }

    /// Registers a device the caller created (for example with WebGPU's default limits, as tests
    /// do).
    ///
    /// # Errors
    ///
    /// [`GpuError::Device`] if cubecl refuses it.
    pub fn from_setup(setup: burn::backend::wgpu::WgpuSetup) -> Result<Gpu, GpuError> {
        let adapter = Adapter::from_setup(&setup);
        let device = Device::wgpu_options()
            .setup(setup)
            .tasks_max(TASKS_PER_SUBMIT)
            .init()
            .map_err(|e| GpuError::Device(e.to_string()))?;
        Ok(Gpu { device, adapter })
    }
}

/// Which kernels a model runs, as asked for: `auto` decides from the adapter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelChoice {
    #[default]
    Auto,
    Gpu,
    CpuAdapter,
}

impl KernelChoice {
    /// `auto`, `gpu` or `cpu-adapter`.
    ///
    /// # Errors
    ///
    /// The name is none of those.
    pub fn parse(name: &str) -> Result<KernelChoice, String> {
        match name {
            "auto" => Ok(KernelChoice::Auto),
            "gpu" => Ok(KernelChoice::Gpu),
            "cpu-adapter" => Ok(KernelChoice::CpuAdapter),
            other => Err(format!("unknown kernel family '{other}' (available: auto, gpu, cpu-adapter)")),
        }
    }
}

/// The two kernel families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Shaped for GPUs: lanes split each row, workgroups of 64–256 reduce in workgroup memory or
    /// subgroups, fused decode steps (`shaders/matvec.wgsl`, `rms_norm_rows.wgsl`,
    /// `attention_split.wgsl` …).
    Gpu,
    /// Shaped for CPU adapters, where barriers cost milliseconds: a lane per row (or rows), no
    /// workgroup memory (`shaders/qmatvec.wgsl`, `rms_norm.wgsl`, `attention_decode.wgsl` …).
    CpuAdapter,
}

/// The kernels a model runs: a family, and the fast paths its kernels may take (GPU family only,
/// where the device has them; never required).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kernels {
    pub family: Family,
    /// Subgroup reductions.
    pub subgroups: bool,
    /// `shader-f16`: the prefill tiles held as f16 in workgroup memory, twice the tokens a tile.
    pub f16: bool,
    /// `packed_4x8_integer_dot_product`: prefill with 8-bit activations and integer dot products
    /// (as llama.cpp's CPU path) for the weight types whose chunks are 8-bit codes.
    pub dp4a: bool,
}

impl Kernels {
    /// The family `choice` names, or for `auto` the one that suits `adapter`: the CPU-adapter
    /// family on CPU implementations, the GPU family elsewhere.
    pub fn choose(choice: KernelChoice, adapter: &Adapter) -> Kernels {
        let family = match choice {
            KernelChoice::Gpu => Family::Gpu,
            KernelChoice::CpuAdapter => Family::CpuAdapter,
            KernelChoice::Auto if adapter.cpu => Family::CpuAdapter,
            KernelChoice::Auto => Family::Gpu,
        };
        let gpu = family == Family::Gpu;
        Kernels { family, subgroups: gpu && adapter.subgroups, f16: gpu && adapter.shader_f16, dp4a: gpu && adapter.dp4a }
    }

    /// The GPU family, with or without subgroups (and without f16).
    pub fn gpu(subgroups: bool) -> Kernels {
        Kernels { family: Family::Gpu, subgroups, f16: false, dp4a: false }
    }

    /// These kernels with f16 tiles or without (GPU family only).
    pub fn with_f16(self, f16: bool) -> Kernels {
        Kernels { f16: f16 && self.is_gpu(), ..self }
    }

    /// These kernels with 8-bit prefill tiles or without (GPU family only).
    pub fn with_dp4a(self, dp4a: bool) -> Kernels {
        Kernels { dp4a: dp4a && self.is_gpu(), ..self }
    }

    /// These kernels with every fast path off: what any adapter runs.
    pub fn without_fast_paths(self) -> Kernels {
        Kernels { subgroups: false, f16: false, dp4a: false, ..self }
    }

    /// The CPU-adapter family.
    pub fn cpu_adapter() -> Kernels {
        Kernels { family: Family::CpuAdapter, subgroups: false, f16: false, dp4a: false }
    }

    /// Prompt tokens the GPU family's prefill multiplies per tile (each tile reads the weights
    /// once; the smallest tile any weight type takes: the 8-bit tiles take 128, the f32 ones 64),
    /// or the CPU-adapter family's register tile.
    pub fn prefill_tile(&self) -> usize {
        use crate::kernel::Form;
        match self.family {
            Family::Gpu => Form::Tiles { f16: self.f16 }.token_tile(),
            Family::CpuAdapter => Form::Matmul.token_tile(),
        }
    }

    pub fn is_gpu(&self) -> bool {
        self.family == Family::Gpu
    }

    /// `gpu` or `cpu-adapter`, as the command line and the JSON reports name them.
    pub fn name(&self) -> &'static str {
        match self.family {
            Family::Gpu => "gpu",
            Family::CpuAdapter => "cpu-adapter",
        }
    }
}

/// What a wgpu device's memory pools hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Bytes of device memory the pools have allocated.
    pub reserved_bytes: u64,
    /// Bytes the live tensors and buffers use of it.
    pub in_use_bytes: u64,
    /// Device allocations (GPU buffers) the pools hold: a step that creates a buffer raises it.
    pub buffers: u64,
}

/// The memory of `device` (`None` if it is not a wgpu device). Waits for the device's queue.
pub fn device_memory(device: &Device) -> Option<DeviceMemory> {
    let client: Client = wgpu_device(device)?.client();
    let report = client.memory_report(MemoryScope::Device);
    let usage = report.usage();
    let buffers = report
        .streams
        .iter()
        .flat_map(|s| {
            let own = s.pools.dynamic.iter().chain([&s.pools.persistent, &s.pools.dedicated]);
            own.chain(s.auxiliary.iter().flat_map(|a| {
                a.pools.dynamic.iter().chain([&a.pools.persistent, &a.pools.dedicated])
            }))
            .map(|pool| pool.pages)
            .collect::<Vec<_>>()
        })
        .sum();
    Some(DeviceMemory { reserved_bytes: usage.bytes_reserved, in_use_bytes: usage.bytes_in_use, buffers })
}

/// Runs `make` with every allocation it makes on `device` given a GPU buffer of its own, of exactly
/// its size, returned to the driver when freed; elsewhere (another backend) runs it as it is. For
/// the KV cache: cubecl's pools round each tensor up to a page size (SmolLM2 at 1000 tokens: 19 MB
/// more than its 46 MB).
pub fn exact_fit<R: Send>(device: &Device, make: impl FnOnce() -> R + Send) -> R {
    match wgpu_device(device) {
        Some(d) => {
            let client: Client = d.client();
            client.memory_dedicated_allocation((), |()| make())
        }
        None => make(),
    }
}

/// Kernel launches through [`crate::kernel::dispatch`] since the process started.
static LAUNCHES: AtomicU64 = AtomicU64::new(0);

/// How many of Burrow's kernels have been queued since the process started (a decode step's
/// count is the difference across it).
pub fn launches() -> u64 {
    LAUNCHES.load(Ordering::Relaxed)
}

/// One kernel launch: which kernel, its workgroup size and how many workgroups, and the bytes of
/// weight matrices its workgroups read between them (0 for kernels that read no weights).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dispatch {
    pub kernel: String,
    pub workgroup_size: usize,
    pub workgroups: usize,
    pub weight_bytes: u64,
}

/// The launches recorded since [`record_dispatches`] turned recording on, or `None` while it is
/// off (it is off unless asked: a step records nothing).
static LOG: Mutex<Option<Vec<Dispatch>>> = Mutex::new(None);

/// Starts (`true`, with an empty log) or stops recording every launch, for reports of a step's
/// structure (`burrow bench`).
pub fn record_dispatches(on: bool) {
    let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    *log = on.then(Vec::new);
}

/// The launches recorded so far (emptying the log; recording goes on).
pub fn take_dispatches() -> Vec<Dispatch> {
    let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    log.as_mut().map(std::mem::take).unwrap_or_default()
}

/// Counts a launch, and logs it while recording.
pub(crate) fn count_launch(kernel: impl FnOnce() -> String, workgroup_size: usize, count: [usize; 2], weight_bytes: u64) {
    LAUNCHES.fetch_add(1, Ordering::Relaxed);
    let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(log) = log.as_mut() {
        log.push(Dispatch { kernel: kernel(), workgroup_size, workgroups: count[0] * count[1], weight_bytes });
    }
}
