// copy.wgsl: dst[i] = src[i] over vec4<u32>s, lanes striding over the whole buffer (consecutive
// lanes, consecutive 16-byte words): the machine's copy bandwidth, measured the way the decode
// matvecs are (`burrow bench --bandwidth`), the ceiling their weight reads are compared against.
// A benchmark kernel, in no model.
//
// Bindings (group 0), all read_write (cubecl binds every buffer so):
//   0  src: array<vec4<u32>>
//   1  dst: array<vec4<u32>>  as long as src
//   2  p:   uniform           [vec4s to copy]
// Workgroup: WORKGROUP_SIZE lanes. Dispatch: any number of workgroups along x.
// Tested by burrow bench's bandwidth run, which checks a copied word (crates/cli/src/main.rs).

@group(0) @binding(0) var<storage, read_write> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let stride = groups.x * {{workgroup_size}}u;
    for (var i = gid.x; i < p(0); i += stride) {
        dst[i] = src[i];
    }
}
