// dot4/generic.wgsl: qmatvec.wgsl's unit for types without a dot form of their own (F32, F16,
// Q5_K, Q6_K): 32 values through the type's dequant32, whose array stays in registers because
// it is read at constant indices.
// Tested through qmatvec.wgsl (crates/gpu/tests/qmatmul.rs).

const UNIT_VALUES: u32 = 32u;

// Values 32u .. 32u + 32 of the row at word i against the block of x v.
fn generic_block(i: u32, u: u32, v: array<vec4<f32>, 8>) -> f32 {
    let q = dequant32(4u * i, u);
    return dot(q[0], v[0]) + dot(q[1], v[1]) + dot(q[2], v[2]) + dot(q[3], v[3])
        + dot(q[4], v[4]) + dot(q[5], v[5]) + dot(q[6], v[6]) + dot(q[7], v[7]);
}

// Values 32u .. 32u + 32 of the four rows starting at words r, against the token at xt.
fn dot_unit(r: vec4<u32>, u: u32, xt: u32) -> vec4<f32> {
    let v = x_block(xt, u);
    return vec4<f32>(generic_block(r.x, u, v), generic_block(r.y, u, v), generic_block(r.z, u, v),
        generic_block(r.w, u, v));
}

// Never called: a unit is 32 values, so rows have no tail.
fn dot_tail(r: vec4<u32>, u: u32, xt: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}
