// online_softmax.wgsl: the running-maximum softmax over a range of the KV cache that
// attention.wgsl and attention_decode.wgsl share (appended to both; they declare q, k, v and
// MAX_HEAD_DIM). For the query at q[qb ..] and the cache rows of head group g starting at
// k[kb ..] / v[kb ..], positions lo .. hi: the largest score m, the sum l of e^(s − m) and
// acc[d] = Σ_j e^(s_j − m) · v[j, d], with s_j = softcap(q · k_j · scale) (softcap 0: none).
// One pass: numerically stable without a second pass over the scores.
// Tested through both kernels (crates/gpu/tests/ops.rs).

// Below every score (a finite −∞, so that e^(m − M) never sees ∞ − ∞).
const LOWEST: f32 = -3.4e38;

struct Attended {
    m: f32,
    l: f32,
    acc: array<f32, MAX_HEAD_DIM>,
}

fn attend(qb: u32, kb: u32, hd: u32, lo: u32, hi: u32, scale: f32, softcap: f32) -> Attended {
    var a: Attended;
    a.m = LOWEST;
    for (var j = lo; j < hi; j++) {
        let row = kb + j * hd;
        var s = 0.0;
        for (var d = 0u; d < hd; d++) {
            s += q[qb + d] * k[row + d];
        }
        s *= scale;
        if (softcap > 0.0) {
            s = tanh(s / softcap) * softcap;
        }
        if (s > a.m) {
            let r = exp(a.m - s);
            a.l *= r;
            for (var d = 0u; d < hd; d++) {
                a.acc[d] *= r;
            }
            a.m = s;
        }
        let e = exp(s - a.m);
        a.l += e;
        for (var d = 0u; d < hd; d++) {
            a.acc[d] += e * v[row + d];
        }
    }
    return a;
}
