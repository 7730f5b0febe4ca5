// online_softmax.wgsl: the running-maximum softmax over a range of the KV cache that
// attention.wgsl and attention_decode.wgsl share. It is a statement block, not a function: each
// kernel has it substituted for its `online_softmax` template key (crates/gpu/src/ops.rs). As a
// function returning a struct (or filling one through a pointer), lavapipe decoded SmolLM2 2x
// slower (3.2 against 6.9 tok/s).
// q, k and v are read as vec4s (head_dim is a multiple of 4; k4 and v4 from kv/f32.wgsl or
// kv/f16.wgsl): a quarter of the loads, which is what the CPU adapters pay for. The kernel declares, before it: hd4 (head_dim / 4, the constant
// HD4), qv (the query, `array<vec4<f32>, HD4>`), kb (the head group's cache rows at k[kb ..] /
// v[kb ..], in vec4s), the positions lo .. hi, scale and softcap (0: none) as values, and
// `var m = LOWEST; var l = 0.0; var acc: array<vec4<f32>, HD4>;` (zero). After it: m is the largest score, l the
// sum of e^(s − m) and acc = Σ_j e^(s_j − m) · v[j, :], with s_j = softcap(q · k_j · scale).
// One pass: numerically stable without a second pass.
// Tested through both kernels (crates/gpu/tests/ops.rs).
    for (var j = lo; j < hi; j++) {
        let row = kb + j * hd4;
        var s4 = vec4<f32>(0.0);
        for (var d = 0u; d < hd4; d++) {
            s4 += qv[d] * k4(row + d);
        }
        var s = (s4.x + s4.y + s4.z + s4.w) * scale;
        if (softcap > 0.0) {
            s = tanh(s / softcap) * softcap;
        }
        if (s > m) {
            let r = exp(m - s);
            l *= r;
            for (var d = 0u; d < hd4; d++) {
                acc[d] *= r;
            }
            m = s;
        }
        let e = exp(s - m);
        l += e;
        for (var d = 0u; d < hd4; d++) {
            acc[d] += e * v4(row + d);
        }
    }
