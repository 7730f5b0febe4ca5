"""Code shared by the reference-data generators, so that each of them keeps only what is its own:

  * scripts/fixtures_vision.py (SmolVLM / idefics3), scripts/fixtures_vision_qwen2vl.py (Qwen2.5-VL) and
    scripts/fixtures_vision_types.py (the SmolVLM projector in F16 / Q8_0): the test-image pattern and PNG
    writing, the Pillow-style fixed-point resampler of llama.cpp's mtmd-image.cpp (Lanczos and bicubic), GGUF
    writing and reading helpers, ggml's f16 and GELU-table roundings, the ctypes wrapper of libllama + libmtmd
    (llama-cpp-python 0.3.36, bundled llama.cpp 0c1e57098) with `struct ggml_tensor` for eval callbacks, and
    the records the two vision manifests (vision.json, qwen2vl/qwen2vl.json) have in common;
  * those and scripts/fixtures_quant_types.py: the llama weight layout and random draw, the float64
    llama-style decoder forward pass (RMSNorm, GQA attention with optional f16-KV emulation, SwiGLU), the
    margin conditioning of output.weight (cyclic projections), the sha256 / significant-digit / margin helpers.

Seeds, file names and model hyperparameters stay in the generators, which pass them in; their outputs are
byte-identical to what they made when each carried its own copy of this code. Not a script: the generators
import it (they run as `python scripts/<generator>.py`, which puts scripts/ on sys.path).
"""
import argparse
import ctypes
import hashlib
import io
import json
import math
import os
import sys
import zlib

import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# ---------------------------------------------------------------------------------------------------------------
# helpers


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def sig(x, digits=5):
    return float(f"{x:.{digits}g}")


def margin(row):
    """Top-1 minus top-2 of a logit row."""
    s = np.sort(np.asarray(row))
    return float(s[-1] - s[-2])


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def sha256_file(path):
    with open(path, "rb") as f:
        return sha256_bytes(f.read())


def write_bin(out_dir, name, arr, dtype):
    """Writes `arr` raw (C order) as `dtype` ("<f4" or np.uint8) to out_dir/name; returns its JSON record."""
    data = np.ascontiguousarray(arr, dtype=dtype).tobytes()
    with open(os.path.join(out_dir, name), "wb") as f:
        f.write(data)
    return {"file": name, "dtype": {"<f4": "f32", "|u1": "u8"}[np.dtype(dtype).str],
            "shape": [int(d) for d in np.shape(arr)], "sha256": sha256_bytes(data)}


def write_json(path, obj):
    """The vision manifests' format: UTF-8, indent 1, a final newline."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def write_manifest(path, generator, reference, lm, mmproj, pieces, binary_files, images, chat):
    """A vision family's manifest (vision.json, qwen2vl/qwen2vl.json), schema_version 1."""
    write_json(path, {
        "schema_version": 1,
        "generator": generator,
        "reference": reference,
        "lm": lm,
        "mmproj": mmproj,
        "token_pieces": {str(k): pieces[k] for k in sorted(pieces)},
        "binary_files": binary_files,
        "images": images,
        "chat": chat,
    })


# ---------------------------------------------------------------------------------------------------------------
# llama weights


def llama_tensor_shapes(hp, n_vocab):
    """(name, numpy shape) of a llama model (no biases, separate output.weight) in the shared fixtures' file order;
    numpy shape = reversed GGUF ne."""
    e, f, hd = hp["n_embd"], hp["n_ff"], hp["head_dim"]
    out = [("token_embd.weight", (n_vocab, e))]
    for i in range(hp["n_layer"]):
        p = f"blk.{i}."
        out += [(p + "attn_norm.weight", (e,)), (p + "attn_q.weight", (hp["n_head"] * hd, e)),
                (p + "attn_k.weight", (hp["n_head_kv"] * hd, e)), (p + "attn_v.weight", (hp["n_head_kv"] * hd, e)),
                (p + "attn_output.weight", (e, hp["n_head"] * hd)), (p + "ffn_norm.weight", (e,)),
                (p + "ffn_gate.weight", (f, e)), (p + "ffn_up.weight", (f, e)), (p + "ffn_down.weight", (e, f))]
    out += [("output_norm.weight", (e,)), ("output.weight", (n_vocab, e))]
    return out


def mmproj_random_weights(shapes, rng, norm_std):
    """f32 weights drawn in `shapes` order, [(name, shape, init)]: init ("norm_w",): 1 + N(0, norm_std); else
    (kind, std): N(0, std)."""
    w = {}
    for name, shape, init in shapes:
        if init[0] == "norm_w":
            w[name] = (1 + rng.standard_normal(shape) * norm_std).astype(np.float32)
        else:
            w[name] = (rng.standard_normal(shape) * init[1]).astype(np.float32)
    return w


def llama_random_weights(shapes, rng, std, norm_std):
    """f32 weights drawn in `shapes` order: N(0, std) for matrices, 1 + N(0, norm_std) for the 1-D norms."""
    w = {}
    for name, shape in shapes:
        if len(shape) == 1:
            w[name] = (1 + rng.standard_normal(shape) * norm_std).astype(np.float32)
        else:
            w[name] = (rng.standard_normal(shape) * std).astype(np.float32)
    return w


# ---------------------------------------------------------------------------------------------------------------
# GGUF files


def shared_gpt2_vocab(shared, rename):
    """The shared fixtures' gpt2 vocabulary (shared/fixtures/llama-q8_0.gguf: 3 specials, 256 bytes, 253 merges)
    as (tokens, token types, merges) lists, with the specials renamed ({id: text})."""
    import gguf
    r = gguf.GGUFReader(os.path.join(shared, "fixtures", "llama-q8_0.gguf"))
    tokens = list(r.fields["tokenizer.ggml.tokens"].contents())
    types = list(r.fields["tokenizer.ggml.token_type"].contents())
    merges = list(r.fields["tokenizer.ggml.merges"].contents())
    assert len(tokens) == 512 and len(merges) == 253 and tokens[3 + 10] == "Ċ"
    for i, t in rename.items():
        tokens[i] = t
    return tokens, types, merges


def add_lm_shape_kv(wr, hp):
    """The LM hyperparameter keys both vision LMs write first (after general.name), in this order."""
    wr.add_context_length(hp["n_ctx_train"])
    wr.add_embedding_length(hp["n_embd"])
    wr.add_block_count(hp["n_layer"])
    wr.add_feed_forward_length(hp["n_ff"])
    wr.add_head_count(hp["n_head"])
    wr.add_head_count_kv(hp["n_head_kv"])


def add_gpt2_vocab_kv(wr, vocab, pre, bos, eos, pad, add_bos):
    """vocab_size, file_type 0 (F32) and the gpt2 tokenizer keys, in this order."""
    tokens, types, merges = vocab
    wr.add_vocab_size(len(tokens))
    wr.add_file_type(0)
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre(pre)
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(bos)
    wr.add_eos_token_id(eos)
    wr.add_pad_token_id(pad)
    wr.add_add_bos_token(add_bos)
    wr.add_add_eos_token(False)


def add_clip_vision_kv(wr, v):
    """The clip.vision.* shape keys both mmproj files write, in this order."""
    wr.add_uint32("clip.vision.projection_dim", v["projection_dim"])
    wr.add_uint32("clip.vision.image_size", v["image_size"])
    wr.add_uint32("clip.vision.patch_size", v["patch_size"])
    wr.add_uint32("clip.vision.embedding_length", v["n_embd"])
    wr.add_uint32("clip.vision.feed_forward_length", v["n_ff"])
    wr.add_uint32("clip.vision.block_count", v["n_layer"])
    wr.add_uint32("clip.vision.attention.head_count", v["n_head"])


def close_gguf(wr, w=None, names=()):
    """Adds the tensors `names` from `w` (in that order), then writes the file and closes it."""
    for name in names:
        wr.add_tensor(name, w[name])
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def gguf_tensor_list(path):
    import gguf
    r = gguf.GGUFReader(path)
    return [[t.name, t.tensor_type.name, [int(d) for d in t.shape]] for t in r.tensors]


def gguf_kv(path):
    """Every KV but GGUF.* and the tokenizer's token / type / merge lists; floats as their f32 values."""
    import gguf
    r = gguf.GGUFReader(path)
    out = {}
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name in (
                "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
            continue
        v = f.contents()
        if isinstance(v, float):
            v = float(np.float32(v))
        if isinstance(v, list) and v and isinstance(v[0], float):
            v = [float(np.float32(x)) for x in v]
        out[f.name] = v
    return out


# ---------------------------------------------------------------------------------------------------------------
# test images


def base_pattern(rng, w, h):
    """Smooth gradients, hard-edged rectangles (so the Lanczos / bicubic resizes ring and clip) and mild noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    img[..., 0] = 255 * x / max(w - 1, 1)
    img[..., 1] = 255 * y / max(h - 1, 1)
    img[..., 2] = 127.5 + 127.5 * np.sin(2 * np.pi * (x / max(w, 1) + 2 * y / max(h, 1)))
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = min(w, x0 + 1 + int(rng.integers(0, max(1, w // 2)))), min(h, y0 + 1 + int(rng.integers(0, max(1, h // 2))))
        img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    img += rng.normal(0, 12, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def png_bytes(arr, mode):
    """The PNG file of `arr` (Pillow, mode "RGB" / "L" / "RGBA"), no optimization, zlib level 9."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG", optimize=False, compress_level=9)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# Pillow-style fixed-point resampling as llama.cpp's img_tool::resize_pillow has it (tools/mtmd/mtmd-image.cpp,
# llama.cpp 0c1e57098): separable, 8-bit, int32 fixed-point coefficients

PRECISION_BITS = 32 - 8 - 2


def lanczos(x):
    if -3.0 <= x < 3.0:
        def sinc(v):
            if v == 0.0:
                return 1.0
            pv = v * 3.141592653589793238462643383279502884
            return math.sin(pv) / pv
        return sinc(x) * sinc(x / 3.0)
    return 0.0


def bicubic(x):
    """Pillow's bicubic (a = -0.5), as img_tool::resize_pillow has it."""
    a = -0.5
    if x < 0.0:
        x = -x
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


# (kernel, support)
LANCZOS = (lanczos, 3.0)
BICUBIC = (bicubic, 2.0)


def precompute_weights(in_size, out_size, filt):
    """Pillow's precompute_coeffs as mtmd-image.cpp has it, for filt = LANCZOS or BICUBIC: (bounds [(xmin, xcnt)],
    int32 fixed-point weights [out_size][ksize])."""
    kernel, filter_support = filt
    scale = filterscale = in_size / out_size
    if filterscale < 1.0:
        filterscale = 1.0
    support = filter_support * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    bounds, weights = [], np.zeros((out_size, ksize), np.int64)
    fxp = math.ldexp(1.0, PRECISION_BITS)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = int(center - support + 0.5)  # C cast: truncation toward zero
        if xmin < 0:
            xmin = 0
        xmax = int(center + support + 0.5)
        if xmax > in_size:
            xmax = in_size
        xmax -= xmin
        ws = [kernel((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for v in ws:
            ww += v
        if ww != 0.0:
            ws = [v / ww for v in ws]
        for x, v in enumerate(ws):
            weights[xx, x] = int(v * fxp + (-0.5 if v < 0 else 0.5))  # truncation toward zero
        bounds.append((xmin, xmax))
    return bounds, weights


def resample_axis(src, out_size, axis, filt):
    """One separable pass over `axis` (1 = horizontal, 0 = vertical) of an (H, W, 3) uint8 image."""
    a = np.moveaxis(src.astype(np.int64), axis, 0)
    bounds, weights = precompute_weights(a.shape[0], out_size, filt)
    out = np.empty((out_size,) + a.shape[1:], np.uint8)
    for i, (xmin, xcnt) in enumerate(bounds):
        acc = np.full(a.shape[1:], 1 << (PRECISION_BITS - 1), np.int64)
        for k in range(xcnt):
            acc += a[xmin + k] * weights[i, k]
        assert np.all(np.abs(acc) < 2 ** 31), "int32 accumulator would overflow"
        out[i] = np.clip(acc >> PRECISION_BITS, 0, 255)  # arithmetic shift, like the C int32 >>
    return np.moveaxis(out, 0, axis)


def resize_pillow(img, w, h, filt):
    """img_tool::resize_pillow: horizontal pass (if the width changes), then vertical (if the height changes)."""
    if not (0 < w <= 65536 and 0 < h <= 65536):
        raise ValueError(f"resize target {w}x{h} is out of range")
    out = img
    if w != img.shape[1]:
        out = resample_axis(out, w, 1, filt)
    if h != img.shape[0]:
        out = resample_axis(out, h, 0, filt)
    return out


def pil_resize_diffs(src, dst, resample):
    """`dst` against Pillow's Image.resize(resample) of `src`: (max diff with Pillow one axis at a time in
    llama.cpp's order, horizontal then vertical; max diff of Pillow's own two-axis resize). (0, 0) when the sizes
    agree (no resize)."""
    from PIL import Image
    if src.shape == dst.shape:
        return 0, 0
    h, w = dst.shape[:2]
    im = Image.fromarray(src, "RGB")
    if w != src.shape[1]:
        im = im.resize((w, src.shape[0]), resample)
    if h != src.shape[0]:
        im = im.resize((w, h), resample)
    axes = int(np.abs(np.asarray(im).astype(int) - dst.astype(int)).max())
    both = np.asarray(Image.fromarray(src, "RGB").resize((w, h), resample))
    return axes, int(np.abs(both.astype(int) - dst.astype(int)).max())


def normalize(u8, mean, std):
    """clip's normalization in float32: (x / 255 - mean) / std per channel."""
    x = u8.astype(np.float32) / np.float32(255.0)
    mean = np.array(mean, np.float32)
    std = np.array(std, np.float32)
    return ((x - mean) / std).astype(np.float32)


def patches_of(pix, p):
    """(H, W, 3) HWC -> (gh*gw, 3*p*p): p x p patches row-major (py, px), each flattened as (c, ky, kx) like the
    conv kernel (E, 3, p, p), which is also the layout of ggml_im2col's output rows."""
    H, W = pix.shape[:2]
    gh, gw = H // p, W // p
    x = pix.astype(np.float64).transpose(2, 0, 1)                           # (3, H, W)
    return x.reshape(3, gh, p, gw, p).transpose(1, 3, 0, 2, 4).reshape(gh * gw, 3 * p * p)


# ---------------------------------------------------------------------------------------------------------------
# float64 numpy math, with ggml's CPU roundings where asked


def f16(x):
    return x.astype(np.float16).astype(np.float64)


_GELU_F16_TABLE = None


def gelu_f16_table():
    """ggml-cpu's ggml_table_gelu_f16: for every f16 bit pattern x, f16(0.5f*x*(1.0f + tanhf(SQRT_2_OVER_PI*x*
    (1.0f + GELU_COEF_A*x*x)))) in float32 with the C library's tanhf (numpy's float32 tanh differs in the last
    bit, which matters where 1 + tanh cancels)."""
    global _GELU_F16_TABLE
    if _GELU_F16_TABLE is None:
        libm = ctypes.CDLL("libm.so.6")
        libm.tanhf.restype, libm.tanhf.argtypes = ctypes.c_float, [ctypes.c_float]
        f32 = np.float32
        x = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
        with np.errstate(all="ignore"):
            inner = f32(0.79788456080286535587989211986876) * x * (f32(1) + f32(0.044715) * x * x)
            t = np.array([libm.tanhf(float(v)) if np.isfinite(v) else 0.0 for v in inner], np.float32)
            y = f32(0.5) * x * (f32(1) + t)
        _GELU_F16_TABLE = y.astype(np.float16)
    return _GELU_F16_TABLE


def gelu_tanh(x, emulate_f16=False):
    if emulate_f16:  # ggml CPU: GELU looked up in an f16 table (input and output rounded to f16), |x| >= 10 exact
        idx = x.astype(np.float32).astype(np.float16).view(np.uint16)
        y = gelu_f16_table()[idx].astype(np.float64)
        return np.where(x <= -10, 0.0, np.where(x >= 10, x, y))
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * x * (1 + 0.044715 * x * x)))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope_norm(x, pos, n_rot, base):
    """x: (n_tok, n_heads, head_dim); RoPE NORM: rotate adjacent pairs (2i, 2i+1) by pos * base^(-2i/n_rot)."""
    inv = base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
    ang = pos[:, None].astype(np.float64) * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    out = x.copy()
    x0, x1 = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
    out[..., 0:n_rot:2] = x0 * c - x1 * s
    out[..., 1:n_rot:2] = x0 * s + x1 * c
    return out


def decoder_forward(hp, w, inputs, rope, emulate_f16_kv=False, return_hidden=False):
    """A llama-style decoder in float64: RMSNorm, causal GQA attention (q/k/v biases where `w` has them, no
    output bias), SwiGLU, final norm and a separate output.weight. hp: n_head, n_head_kv, head_dim, n_layer,
    rms_eps; inputs: (n, n_embd) (token or image embeddings) in sequence order; rope(x) turns q or k,
    (n, heads, head_dim). With emulate_f16_kv, K, V, Q (for QK^T) and the softmax probabilities (for PV) are
    rounded to f16, as llama.cpp does with an f16 KV cache and no flash attention.
    Returns the logits (n, n_vocab) (and the final normed hidden states)."""
    n = len(inputs)
    nh, nkv, hd, eps = hp["n_head"], hp["n_head_kv"], hp["head_dim"], hp["rms_eps"]
    x = inputs.astype(np.float64)
    mask = np.triu(np.full((n, n), -np.inf), 1)

    def lin(h, name):
        y = h @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y
    for i in range(hp["n_layer"]):
        p = f"blk.{i}."
        h = rms_norm(x, w[p + "attn_norm.weight"], eps)
        q = rope(lin(h, p + "attn_q").reshape(n, nh, hd))
        k = rope(lin(h, p + "attn_k").reshape(n, nkv, hd))
        v = lin(h, p + "attn_v").reshape(n, nkv, hd)
        if emulate_f16_kv:
            q, k, v = f16(q), f16(k), f16(v)
        heads = []
        for hh in range(nh):
            kv = hh // (nh // nkv)
            s = q[:, hh, :] @ k[:, kv, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            pr = s / s.sum(axis=-1, keepdims=True)
            if emulate_f16_kv:
                pr = f16(pr)
            heads.append(pr @ v[:, kv, :])
        x = x + np.concatenate(heads, axis=-1) @ w[p + "attn_output.weight"].T
        h = rms_norm(x, w[p + "ffn_norm.weight"], eps)
        g = h @ w[p + "ffn_gate.weight"].T
        u = h @ w[p + "ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "ffn_down.weight"].T
    h = rms_norm(x, w["output_norm.weight"], eps)
    logits = h @ w["output.weight"].T
    return (logits, h) if return_hidden else logits


def llama_forward(hp, w, inputs, emulate_f16_kv=False, return_hidden=False):
    """decoder_forward with RoPE NORM (hp: n_rot, rope_base) at positions 0..n-1."""
    pos = np.arange(len(inputs))
    return decoder_forward(hp, w, inputs, lambda x: rope_norm(x, pos, hp["n_rot"], hp["rope_base"]),
                           emulate_f16_kv, return_hidden)


def condition_output(w32, path, hidden_sets, min_margin):
    """Cyclic projections on output.weight rows: for every set of hidden states along `path` (the final normed
    states from which each choice is made, teacher-forced), the path's token beats every other logit by
    >= min_margin. output.weight must not feed back into them (untied, no imatrix), so they stay valid while it
    changes and the path stays the same. Returns (the weights with the new output.weight in f32, max |change|,
    the smallest margin reached)."""
    out = w32["output.weight"].astype(np.float64)
    target, check = min_margin + 5e-3, min_margin + 4e-3  # a little slack for the f32 rounding of the weights
    cons = [(hs[t], float(hs[t] @ hs[t]), a) for hs in hidden_sets for t, a in enumerate(path)]
    for _ in range(1000):
        worst = 0.0
        for h, hh, a in cons:
            for _inner in range(50):
                gap = out[a] @ h - out @ h
                gap[a] = np.inf
                bad = np.nonzero(gap < check)[0]
                if len(bad) == 0:
                    break
                worst = max(worst, float(check - gap.min()))
                for j in bad:
                    g = float((out[a] - out[j]) @ h)
                    if g < target:
                        st = (target - g) / (2 * hh)
                        out[a] += st * h
                        out[j] -= st * h
        if worst == 0.0:
            break
    else:
        raise RuntimeError("margin conditioning did not converge")
    new = dict(w32)
    new["output.weight"] = out.astype(np.float32)
    change = float(np.abs(new["output.weight"] - w32["output.weight"]).max())
    o64 = new["output.weight"].astype(np.float64)
    margins = [float(r[a] - np.max(np.delete(r, a))) for hs in hidden_sets for r, a in zip(hs @ o64.T, path)]
    assert min(margins) >= min_margin, margins
    return new, change, min(margins)


# ---------------------------------------------------------------------------------------------------------------
# llama.cpp via ctypes (libllama + libmtmd of llama-cpp-python)


class GgmlTensor(ctypes.Structure):
    """struct ggml_tensor of ggml/include/ggml.h (llama.cpp 0c1e57098), to read graph nodes in an eval callback."""
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
                ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64),
                ("extra", ctypes.c_void_p), ("padding", ctypes.c_char * 8)]


GGML_TYPE_F32, GGML_TYPE_F16 = 0, 1


def tensor_array(t, ctype, dtype):
    """A copy of a contiguous GgmlTensor's data, flat, as `dtype`."""
    n = t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3]
    return np.ctypeslib.as_array(ctypes.cast(t.data, ctypes.POINTER(ctype)), shape=(n,)).copy().view(dtype)


class LlamaCpp:
    """A language model + mmproj pair loaded in libllama + libmtmd, CPU, 2 threads, llama.cpp's log kept in
    `self.log`. The mtmd (clip) graph always runs with an eval callback that calls `on_vision_node(tensor)` for
    every node; the language model's graph gets one (calling `on_lm_node`) only where a subclass defines it.
    Subclasses capture what they check there, reset it in `clear_capture` (called before every encode), and give
    `chunk_list` (the chunks of a tokenized prompt)."""
    n_ctx = 512
    on_lm_node = None

    def __init__(self):
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd
        self.l, self.m = llama_cpp, mtmd
        self.log = []

        @llama_cpp.llama_log_callback
        def cb(level, text, user_data):
            self.log.append(text.decode("utf-8", "replace") if text else "")
        self._cb = cb
        llama_cpp.llama_log_set(cb, None)
        mtmd.mtmd_log_set(cb, None)
        mtmd.mtmd_helper_log_set(cb, None)
        llama_cpp.llama_backend_init()

    def on_vision_node(self, g):
        pass

    def clear_capture(self):
        pass

    def _eval_cb(self, on_node):
        @self.l.ggml_backend_sched_eval_callback
        def cb(t, ask, user_data):
            if ask:
                return True
            on_node(GgmlTensor.from_address(t))
            return True
        return cb

    def load(self, lm_path, mmproj_path, flash_attn_clip, **mtmd_params):
        """mtmd_params: further mtmd_context_params fields to set."""
        l, m = self.l, self.m
        mp = l.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.model = l.llama_model_load_from_file(lm_path.encode(), mp)
        assert self.model, "llama_model_load_from_file failed:\n" + "".join(self.log[-30:])
        self.vocab = l.llama_model_get_vocab(self.model)
        cp = m.mtmd_context_params_default()
        cp.use_gpu = False
        cp.n_threads = 2
        cp.print_timings = False
        cp.flash_attn_type = flash_attn_clip
        for k, v in mtmd_params.items():
            setattr(cp, k, v)
        self.clear_capture()
        self._vision_cb = self._eval_cb(self.on_vision_node)
        cp.cb_eval = self._vision_cb
        self.mctx = m.mtmd_init_from_file(mmproj_path.encode(), self.model, cp)
        assert self.mctx, "mtmd_init_from_file failed:\n" + "".join(self.log[-30:])

    def new_lctx(self):
        l = self.l
        cp = l.llama_context_default_params()
        cp.n_ctx = self.n_ctx
        cp.n_batch = self.n_ctx
        cp.n_ubatch = self.n_ctx
        cp.n_threads = 2
        cp.n_threads_batch = 2
        cp.flash_attn_type = l.LLAMA_FLASH_ATTN_TYPE_DISABLED
        if self.on_lm_node is not None:
            self._lm_cb = self._eval_cb(self.on_lm_node)
            cp.cb_eval = self._lm_cb
        ctx = l.llama_init_from_model(self.model, cp)
        assert ctx
        return ctx

    def piece(self, tok):
        buf = ctypes.create_string_buffer(256)
        n = self.l.llama_token_to_piece(self.vocab, tok, buf, 256, 0, True)
        return buf.raw[:n].decode("utf-8", "replace")

    def bitmap(self, path):
        bm = self.m.mtmd_helper_bitmap_init_from_file(self.mctx, path.encode(), False)
        assert bm, f"could not load {path}"
        nx, ny = self.m.mtmd_bitmap_get_nx(bm), self.m.mtmd_bitmap_get_ny(bm)
        n = self.m.mtmd_bitmap_get_n_bytes(bm)
        data = self.m.mtmd_bitmap_get_data(bm)
        rgb = np.ctypeslib.as_array(ctypes.cast(data, ctypes.POINTER(ctypes.c_uint8)), shape=(n,)).copy()
        return bm, rgb.reshape(ny, nx, 3)

    def tokenize(self, text, bm):
        m = self.m
        raw = text.encode()
        t = m.mtmd_input_text(raw, len(raw), True, True)
        chunks = m.mtmd_input_chunks_init()
        arr = (ctypes.c_void_p * 1)(bm)
        rc = m.mtmd_tokenize(self.mctx, chunks, ctypes.byref(t), arr, 1)
        assert rc == 0, f"mtmd_tokenize failed: {rc}"
        return chunks

    def text_record(self, toks, pieces):
        """A text chunk's layout record; its tokens' pieces go into `pieces`."""
        for t in toks:
            pieces[t] = self.piece(t)
        return {"type": "text", "tokens": toks}

    def text_tokens(self, chunk):
        n = ctypes.c_size_t()
        p = self.m.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
        return [int(p[j]) for j in range(n.value)]

    def encode(self, chunk, n_tokens):
        """mtmd_encode_chunk + mtmd_get_output_embd: (n_tokens, n_embd of the LM) float32."""
        self.clear_capture()
        rc = self.m.mtmd_encode_chunk(self.mctx, chunk)
        assert rc == 0, "mtmd_encode_chunk failed:\n" + "".join(self.log[-30:])
        n_embd = self.l.llama_model_n_embd(self.model)
        p = self.m.mtmd_get_output_embd(self.mctx)
        return np.ctypeslib.as_array(p, shape=(n_tokens * n_embd,)).copy().reshape(n_tokens, n_embd)

    def after_decode(self):
        """Called after the prompt's mtmd_helper_eval_chunks and after every greedy llama_decode."""

    def eval_and_greedy(self, chunks, n_greedy):
        """mtmd_helper_eval_chunks (n_past 0, seq 0, n_batch n_ctx, logits_last), then greedy: argmax, one
        llama_decode (llama_batch_get_one) per token, n_greedy logit rows in all (the last token is chosen, not
        evaluated). Returns (the prompt's n_past, the rows as float64)."""
        l, m = self.l, self.m
        ctx = self.new_lctx()
        new_n_past = l.llama_pos(0)
        rc = m.mtmd_helper_eval_chunks(self.mctx, ctx, chunks, 0, 0, self.n_ctx, True, ctypes.byref(new_n_past))
        assert rc == 0, "mtmd_helper_eval_chunks failed:\n" + "".join(self.log[-30:])
        self.after_decode()
        n_vocab = l.llama_vocab_n_tokens(self.vocab)
        rows = []

        def last_logits():
            p = l.llama_get_logits_ith(ctx, -1)
            return np.ctypeslib.as_array(p, shape=(n_vocab,)).astype(np.float64).copy()

        cur = last_logits()
        for step in range(n_greedy):
            rows.append(cur)
            a = int(np.argmax(cur))
            if step < n_greedy - 1:
                tok = (l.llama_token * 1)(a)
                rc = l.llama_decode(ctx, l.llama_batch_get_one(tok, 1))
                assert rc == 0
                cur = last_logits()
                self.after_decode()
        l.llama_free(ctx)
        return int(new_n_past.value), rows

    def free(self):
        self.m.mtmd_free(self.mctx)
        self.l.llama_model_free(self.model)


# ---------------------------------------------------------------------------------------------------------------
# the vision generators' main steps and manifest records


def vision_args(doc, out, work):
    """--shared and --work (default `work`); makes `out`, its images/ and ref/, and the work folder."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--work", default=work, help="where the unpublished pass-1 language model goes")
    args = ap.parse_args()
    for d in (out, os.path.join(out, "images"), os.path.join(out, "ref"), args.work):
        os.makedirs(d, exist_ok=True)
    return args


def embd_diffs(embd, ref, ref_emul):
    """max |mtmd - numpy|, plain and with ggml's f16 roundings emulated in numpy."""
    return float(np.abs(embd - ref).max()), float(np.abs(embd - ref_emul).max())


def check_embd_diffs(name, d_plain, d_emul, tol, tol_emulated):
    if d_emul > tol_emulated or d_plain > tol:
        raise RuntimeError(f"{name}: numpy embeddings disagree with mtmd by {d_plain} ({d_emul} emulated)")


def gguf_record(path, **middle):
    """A manifest's record of a written GGUF: file, sha256, size, the `middle` keys (in order), its KVs, tensors."""
    return {"file": os.path.basename(path), "sha256": sha256_file(path), "size_bytes": os.path.getsize(path),
            **middle, "kv": gguf_kv(path), "tensors": gguf_tensor_list(path)}


def lm_record(path, hparams, weights, tokens, bos, eos, pad):
    """The vision manifests' "lm": the special tokens are the 3 renamed ones and those added after the 512."""
    return gguf_record(path, hparams=hparams, weights=weights,
                       special_tokens={t: i for i, t in enumerate(tokens) if i < 3 or i >= 512},
                       bos=bos, eos=eos, pad=pad)


def mmproj_record(path, hparams, seed_name, shapes):
    """The vision manifests' "mmproj": weights drawn by mmproj_random_weights(shapes, rng_for(seed_name))."""
    return gguf_record(path, hparams=hparams,
                       weights={"seed": f"numpy default_rng(zlib.crc32(b'{seed_name}'))",
                                "init": {n: list(i) for n, _, i in shapes}})


def conditioning_record(path, change, min_margin, target):
    """vision manifests' lm.weights.conditioning (and the log line) after condition_output on the chat path."""
    print(f"conditioned output.weight: max |change| {change:.4g}, path {path}, min margin {min_margin:.4f}",
          file=sys.stderr)
    return {"note": ("small deterministic changes to output.weight rows (cyclic projections) so that along "
                     "the chat prompt's greedy path (plain float64, unchanged by them) every choice beats "
                     f"every other token by >= {target}, with the hidden states of the numpy image "
                     "embeddings and of mtmd's (plain and with f16-KV rounding)"),
            "path": path, "margin": target, "max_abs_change_output_weight": sig(change, 4),
            "min_margin_exact": sig(min_margin, 4)}


def embd_records(out_dir, stem, embd, ref, d_plain, d_emul):
    """An image entry's embedding files and their comparison, in the manifests' key order."""
    return {"embd_mtmd": write_bin(out_dir, f"ref/{stem}.embd.f32", embd, "<f4"),
            "embd_numpy_f64": write_bin(out_dir, f"ref/{stem}.embd_ref.f32", ref, "<f4"),
            "max_abs_mtmd_vs_numpy": sig(d_plain, 3),
            "max_abs_mtmd_vs_numpy_ggml_f16_emulated": sig(d_emul, 3),
            "max_abs_embd": sig(float(np.abs(embd).max()), 4)}


def chat_logits_record(label, lc, rows, greedy, ex, ex_greedy, path_logits, first_mtmd, tol, greedy_extra=None):
    """Compares llama.cpp's chat logit rows (prompt's last position, then each greedy step) with the float64 LM
    teacher-forced along llama.cpp's greedy path (`ex`: fed the numpy embeddings; path_logits(first_mtmd, emul):
    fed mtmd's, emul = f16-KV rounding), logs it after `label`, raises past `tol` or if the greedy tokens differ,
    and returns the chat record's logit keys (greedy_extra: more keys of "greedy", after "pieces")."""
    cmp = {"max_abs_prompt_last": sig(float(np.abs(rows[0] - ex[0]).max()), 3),
           "max_abs_all_steps": sig(float(np.abs(rows - ex).max()), 3),
           "max_abs_all_steps_lm_only": sig(float(np.abs(rows - path_logits(first_mtmd, False)).max()), 3),
           "max_abs_all_steps_lm_only_f16_kv_emulated":
               sig(float(np.abs(rows - path_logits(first_mtmd, True)).max()), 3),
           "greedy_agree": sum(int(a == b) for a, b in zip(greedy, ex_greedy))}
    print(f"{label}; greedy {greedy}; margins {[round(margin(r), 3) for r in rows]}; vs numpy {cmp}", file=sys.stderr)
    if cmp["max_abs_all_steps"] > tol or ex_greedy != greedy:
        raise RuntimeError(f"numpy LM disagrees with llama.cpp: {cmp}, {ex_greedy} vs {greedy}")
    return {
        "logits_sig_digits": 5,
        "logits_last": [sig(x) for x in rows[0]],
        "logits_last_top1_minus_top2": sig(margin(rows[0])),
        "greedy": {"tokens": greedy, "pieces": [lc.piece(t) for t in greedy], **(greedy_extra or {}),
                   "top1_minus_top2": [sig(margin(r)) for r in rows],
                   "top10": [[[int(i), sig(r[i])] for i in np.argsort(-r, kind="stable")[:10]] for r in rows]},
        "exact_f64": {
            "note": ("numpy float64 LM (no rounding) fed with the numpy float64 image embeddings "
                     "(embd_numpy_f64), teacher-forced along llama.cpp's greedy path; *_lm_only: the same LM "
                     "fed with mtmd's embeddings"),
            "logits_last": [sig(x) for x in ex[0]],
            "greedy_tokens": ex_greedy,
            "llamacpp_vs_exact": cmp},
    }


def flash_attn_record(out_dir, entry, embd, fa_enabled):
    """An image entry's flash_attn_auto: mtmd's embeddings with clip flash attention left at auto vs the stored
    ones."""
    mt = np.fromfile(os.path.join(out_dir, entry["embd_mtmd"]["file"]), "<f4").reshape(embd.shape)
    ref = np.fromfile(os.path.join(out_dir, entry["embd_numpy_f64"]["file"]), "<f4").reshape(embd.shape)
    return {"clip_flash_attn_enabled": fa_enabled,
            "max_abs_vs_embd_mtmd": sig(float(np.abs(embd - mt).max()), 3),
            "max_abs_vs_numpy": sig(float(np.abs(embd - ref).max()), 3)}


def reference_record(version, mtmd_context_params, embeddings, more_mtmd=(), more=(), n_ctx=LlamaCpp.n_ctx):
    """The vision manifests' "reference" (how llama.cpp was run); more_mtmd: keys after mtmd_context_params,
    more: keys before "logits" (pairs)."""
    return {"engine": "llama.cpp libmtmd + libllama (CPU backend) via llama-cpp-python ctypes",
            "llama_cpp_python": version, "llama_cpp_commit": "0c1e57098bba43ac29e6e3b677cdceebdd22334f",
            "gguf_py": "0.19.0", "n_threads": 2,
            "mtmd_context_params": mtmd_context_params,
            **dict(more_mtmd),
            "llama_context_params": {"n_ctx": n_ctx, "n_batch": n_ctx, "n_ubatch": n_ctx, "n_threads": 2,
                                     "flash_attn_type": "disabled", "kv_cache_type": "f16"},
            "image_loading": "mtmd_helper_bitmap_init_from_file (stb_image, 3 channels requested)",
            "tokenize": "mtmd_tokenize(text with the marker, add_special true, parse_special true)",
            "embeddings": embeddings,
            **dict(more),
            "logits": ("mtmd_helper_eval_chunks(n_past 0, seq 0, n_batch 512, logits_last true), then "
                       "one llama_decode (llama_batch_get_one) per greedy token")}
