// dot4/q4_codes.wgsl: shared by dot4/q4_0.wgsl and dot4/q4_1.wgsl. Σ code·x over the 32 4-bit
// codes of a Q4_0/Q4_1 block, given as the words q (byte j of q holds code j in its low nibble
// and code j + 16 in its high nibble), and a block of x as 8 vec4s.
// Tested through qmatvec.wgsl (crates/gpu/tests/qmatmul.rs).

fn q4_dot(q: vec4<u32>, v: array<vec4<f32>, 8>) -> f32 {
    return dot(nibbles_f(q.x, 0u), v[0]) + dot(nibbles_f(q.y, 0u), v[1]) + dot(nibbles_f(q.z, 0u), v[2])
        + dot(nibbles_f(q.w, 0u), v[3]) + dot(nibbles_f(q.x, 4u), v[4]) + dot(nibbles_f(q.y, 4u), v[5])
        + dot(nibbles_f(q.z, 4u), v[6]) + dot(nibbles_f(q.w, 4u), v[7]);
}
