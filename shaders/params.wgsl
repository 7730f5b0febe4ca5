// params.wgsl: the kernel's u32 parameters, appended to every kernel. Each kernel declares its
// last binding as `params: array<vec4<u32>, {{param_vec4s}}>` (a uniform: cubecl passes launch
// parameters as cached uniform metadata, see crates/gpu/src/kernel.rs).

// Parameter i (the uniform packs them four to a vec4).
fn p(i: u32) -> u32 {
    return params[i / 4u][i % 4u];
}
