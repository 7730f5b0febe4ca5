//! Every kernel variant Burrow builds (`burrow_gpu::shader_variants`) compiles with naga and makes
//! a compute pipeline on a device requested with WebGPU's default limits (256 invocations and
//! 16 KiB of workgroup memory a workgroup, 8 storage buffers a stage): what every phone meets.
//! The variants that use subgroups or f16 are compiled where the adapter has them (lavapipe has
//! both).
//! One test in its own binary: the device is its own.

use burn::backend::wgpu::wgpu;
use wgpu::naga;
use burrow_gpu::{shader_variants, Gpu};

#[test]
fn every_kernel_variant_compiles_under_default_limits() {
    let (gpu, device) = Gpu::open_with_default_limits().expect("a wgpu adapter (apt-get install -y mesa-vulkan-drivers)");
    let limits = device.limits();
    assert_eq!(limits.max_compute_invocations_per_workgroup, 256);
    assert_eq!(limits.max_compute_workgroup_storage_size, 16 << 10);
    assert_eq!(limits.max_storage_buffers_per_shader_stage, 8);
    let variants = shader_variants();
    assert!(variants.len() > 300, "{} variants", variants.len());
    // The checks can fail: a syntax error, and (wgpu does not check it) a workgroup asking for
    // 20 KiB of workgroup memory.
    assert!(compile(&device, "broken", "fn main( {").is_some(), "a broken shader compiled");
    let too_big = "var<workgroup> big: array<f32, 5120>;\n@compute @workgroup_size(64)\nfn main(@builtin(local_invocation_index) i: u32) { big[i] = 1.0; }";
    assert!(past_limits(too_big, &limits).is_some(), "20 KiB of workgroup memory passed");
    let mut failures = Vec::new();
    let mut compiled = 0;
    assert!(variants.iter().any(|v| v.f16), "no f16 variant");
    for v in variants.iter().filter(|v| (!v.subgroups || gpu.adapter.subgroups) && (!v.f16 || gpu.adapter.shader_f16)) {
        let error = compile(&device, &v.name, &v.wgsl).map(|e| e.to_string()).or_else(|| past_limits(&v.wgsl, &limits));
        if let Some(error) = error {
            failures.push(format!("{}: {error}", v.name));
        }
        compiled += 1;
    }
    eprintln!("{compiled} variants compiled (subgroups: {}, shader-f16: {})", gpu.adapter.subgroups, gpu.adapter.shader_f16);
    assert!(failures.is_empty(), "{} variants failed:\n{}", failures.len(), failures.join("\n"));
}

/// Compiles `wgsl` into a compute pipeline with its layout derived from it; the validation error,
/// if any.
fn compile(device: &wgpu::Device, name: &str, wgsl: &str) -> Option<wgpu::Error> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl(wgsl.into()) });
    let _pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(name),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    burn::tensor::try_read_sync(scope.pop()).flatten()
}

/// What wgpu leaves unchecked: the workgroup memory the shader declares and its invocations per
/// workgroup against `limits`.
fn past_limits(wgsl: &str, limits: &wgpu::Limits) -> Option<String> {
    let module = match naga::front::wgsl::parse_str(wgsl) {
        Ok(m) => m,
        Err(e) => return Some(e.to_string()),
    };
    let mut layouter = naga::proc::Layouter::default();
    if let Err(e) = layouter.update(module.to_ctx()) {
        return Some(e.to_string());
    }
    let bytes: u32 = module
        .global_variables
        .iter()
        .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
        // Tint (Chromium) counts each variable rounded up to 16 bytes.
        .map(|(_, v)| layouter[v.ty].size.next_multiple_of(16))
        .sum();
    let invocations: u32 = module.entry_points.iter().map(|e| e.workgroup_size.iter().product()).max().unwrap_or(0);
    if bytes > limits.max_compute_workgroup_storage_size {
        return Some(format!("{bytes} bytes of workgroup memory"));
    }
    (invocations > limits.max_compute_invocations_per_workgroup).then(|| format!("{invocations} invocations per workgroup"))
}
