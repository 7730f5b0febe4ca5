#!/usr/bin/env python3
"""Make the vision fixtures in tests/vision-fixtures/ (issue 16, first family: SmolVLM / llama.cpp `idefics3`).

A tiny random-weight GGUF pair as llama.cpp's mtmd loads SmolVLM: a language model (`general.architecture =
llama`, gpt2 BPE vocab with SmolVLM's special tokens, untied output) and an `mmproj` file (`general.architecture =
clip`, `clip.projector_type = idefics3`: SigLIP ViT, pixel-shuffle connector, linear projection), 8 test images,
and references:

  * llama.cpp (libmtmd + libllama of llama-cpp-python 0.3.36, bundled llama.cpp 0c1e57098, CPU, 2 threads): the
    chunk layout of mtmd_tokenize, the image embeddings (mtmd_encode_chunk + mtmd_get_output_embd), stb_image's
    decode of the JPEG, and, for one image inside a SmolVLM chat prompt, the logits at the last prompt position
    (mtmd_helper_eval_chunks) and 8 greedy tokens with their margins;
  * numpy: llama.cpp's idefics3 preprocessing reimplemented (Pillow-style fixed-point Lanczos resizes, tiling,
    normalization), written out as the per-image pixel tensors; and an independent float64 forward pass of the
    encoder + pixel shuffle + projection and of the language model.

Checks (the script fails otherwise): the numpy pixels equal llama.cpp's own (the ViT's im2col input, captured
with an eval callback, f16) for every tile; each numpy resize equals Pillow's done one axis at a time; numpy's
embeddings match mtmd's within 3e-3 (1e-3 with ggml's f16 roundings emulated); the chat logits match within
5e-3 and the greedy tokens are the same.

Before the references are made, output.weight is margin-conditioned (cyclic projections, as in
scripts/fixtures_quant_types.py) so that every greedy choice of the chat prompt wins by >= 1.0; a pass-1 model
with the unconditioned weights (in --work) gives the chat prompt's token layout for that.

Deterministic: fixed seeds, fixed image content; running it twice gives identical files.

Requires the bench venv (scripts/bench/native.sh builds llama-cpp-python 0.3.36) with gguf 0.19.0, numpy and
Pillow (for writing the PNG/JPEG test images and for cross-checking the resize):

    .cache/bench/venv/bin/pip install gguf==0.19.0 numpy pillow
    .cache/bench/venv/bin/python scripts/fixtures_vision.py [--shared ../shared]

The tokenizer's first 512 tokens and 253 merges are copied from shared/fixtures/llama-q8_0.gguf (the shared
fixtures' gpt2 vocab); see tests/vision-fixtures/README.md for everything else.
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
OUT = os.path.join(ROOT, "tests", "vision-fixtures")

LM_FILE = "smolvlm-tiny-lm-f32.gguf"
MMPROJ_FILE = "smolvlm-tiny-mmproj-f32.gguf"

# ---------------------------------------------------------------------------------------------------------------
# configs

LM = {"arch": "llama", "n_embd": 128, "n_ff": 256, "n_head": 4, "n_head_kv": 2, "head_dim": 32, "n_layer": 2,
      "n_ctx_train": 512, "rms_eps": 1e-5, "rope_base": 100000.0, "n_rot": 32, "rope_type": "norm",
      "tied_embeddings": False}
LM_STD = 0.07
NORM_STD = 0.1
MARGIN = 1.0

V = {"image_size": 32, "patch_size": 4, "n_embd": 64, "n_ff": 128, "n_layer": 2, "n_head": 4, "eps": 1e-6,
     "scale_factor": 2, "preproc_image_size": 96, "projection_dim": LM["n_embd"],
     # distinct per-channel values (real SmolVLM files have 0.5, 0.5, 0.5) so that a channel-order bug shows
     "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
V["n_patches_side"] = V["image_size"] // V["patch_size"]          # 8
V["n_pos"] = V["n_patches_side"] ** 2                               # 64
V["tokens_per_tile"] = V["n_pos"] // V["scale_factor"] ** 2         # 16
V["merged_dim"] = V["n_embd"] * V["scale_factor"] ** 2              # 256

# tokenizer: the shared fixtures' 3 specials + 256 bytes + 253 merges, with the specials renamed as SmolVLM's,
# then "\n\n" (a merge: mtmd looks the token up by its text) and SmolVLM's image/chat special tokens.
SPECIAL_RENAME = {0: "<|endoftext|>", 1: "<|im_start|>", 2: "<|im_end|>"}
EXTRA_SPECIALS = (["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"]
                  + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)])
BOS, PAD = 1, 0

MARKER = "<__media__>"
CHAT_PROMPT = "User:" + MARKER + "Can you describe this image?<end_of_utterance>\nAssistant:"
CHAT_IMAGE = "wide_100x37.png"
N_GREEDY = 8

TOL_EMBD = 3e-3
TOL_EMBD_EMULATED = 1e-3
TOL_LOGITS = 5e-3


# ---------------------------------------------------------------------------------------------------------------
# helpers


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def sig(x, digits=5):
    return float(f"{x:.{digits}g}")


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def sha256_file(path):
    with open(path, "rb") as f:
        return sha256_bytes(f.read())


def write_bin(name, arr, dtype):
    data = np.ascontiguousarray(arr, dtype=dtype).tobytes()
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    return {"file": name, "dtype": {"<f4": "f32", "|u1": "u8"}[np.dtype(dtype).str],
            "shape": [int(d) for d in np.shape(arr)], "sha256": sha256_bytes(data)}


# ---------------------------------------------------------------------------------------------------------------
# weights


def lm_tensor_shapes(n_vocab):
    """(name, numpy shape) in file order (the shared fixtures' order); numpy shape = reversed GGUF ne."""
    e, f, hd = LM["n_embd"], LM["n_ff"], LM["head_dim"]
    out = [("token_embd.weight", (n_vocab, e))]
    for i in range(LM["n_layer"]):
        p = f"blk.{i}."
        out += [(p + "attn_norm.weight", (e,)), (p + "attn_q.weight", (LM["n_head"] * hd, e)),
                (p + "attn_k.weight", (LM["n_head_kv"] * hd, e)), (p + "attn_v.weight", (LM["n_head_kv"] * hd, e)),
                (p + "attn_output.weight", (e, LM["n_head"] * hd)), (p + "ffn_norm.weight", (e,)),
                (p + "ffn_gate.weight", (f, e)), (p + "ffn_up.weight", (f, e)), (p + "ffn_down.weight", (e, f))]
    out += [("output_norm.weight", (e,)), ("output.weight", (n_vocab, e))]
    return out


def lm_weights(n_vocab):
    rng = rng_for("smolvlm-tiny-lm")
    w = {}
    for name, shape in lm_tensor_shapes(n_vocab):
        if len(shape) == 1:
            w[name] = (1 + rng.standard_normal(shape) * NORM_STD).astype(np.float32)
        else:
            w[name] = (rng.standard_normal(shape) * LM_STD).astype(np.float32)
    return w


def mmproj_tensor_shapes():
    """(name, numpy shape, init) in file order. init: ("normal", std) | ("norm_w",) | ("bias", std)."""
    e, f, p = V["n_embd"], V["n_ff"], V["patch_size"]
    out = [("v.patch_embd.weight", (e, 3, p, p), ("normal", 1 / math.sqrt(3 * p * p))),
           ("v.patch_embd.bias", (e,), ("normal", 0.1)),
           ("v.position_embd.weight", (V["n_pos"], e), ("normal", 0.5))]
    for i in range(V["n_layer"]):
        b = f"v.blk.{i}."
        out += [(b + "ln1.weight", (e,), ("norm_w",)), (b + "ln1.bias", (e,), ("normal", 0.1)),
                (b + "attn_q.weight", (e, e), ("normal", 1 / math.sqrt(e))), (b + "attn_q.bias", (e,), ("normal", 0.1)),
                (b + "attn_k.weight", (e, e), ("normal", 1 / math.sqrt(e))), (b + "attn_k.bias", (e,), ("normal", 0.1)),
                (b + "attn_v.weight", (e, e), ("normal", 1 / math.sqrt(e))), (b + "attn_v.bias", (e,), ("normal", 0.1)),
                (b + "attn_out.weight", (e, e), ("normal", 1 / math.sqrt(e))),
                (b + "attn_out.bias", (e,), ("normal", 0.1)),
                (b + "ln2.weight", (e,), ("norm_w",)), (b + "ln2.bias", (e,), ("normal", 0.1)),
                (b + "ffn_up.weight", (f, e), ("normal", 1 / math.sqrt(e))), (b + "ffn_up.bias", (f,), ("normal", 0.1)),
                (b + "ffn_down.weight", (e, f), ("normal", 1 / math.sqrt(f))),
                (b + "ffn_down.bias", (e,), ("normal", 0.1))]
    out += [("v.post_ln.weight", (e,), ("norm_w",)), ("v.post_ln.bias", (e,), ("normal", 0.1)),
            ("mm.model.fc.weight", (V["projection_dim"], V["merged_dim"]), ("normal", 1 / math.sqrt(V["merged_dim"])))]
    return out


def mmproj_weights():
    rng = rng_for("smolvlm-tiny-mmproj")
    w = {}
    for name, shape, init in mmproj_tensor_shapes():
        if init[0] == "norm_w":
            w[name] = (1 + rng.standard_normal(shape) * NORM_STD).astype(np.float32)
        else:
            w[name] = (rng.standard_normal(shape) * init[1]).astype(np.float32)
    return w


# ---------------------------------------------------------------------------------------------------------------
# tokenizer and GGUF files


def build_vocab(shared):
    import gguf
    r = gguf.GGUFReader(os.path.join(shared, "fixtures", "llama-q8_0.gguf"))
    tokens = list(r.fields["tokenizer.ggml.tokens"].contents())
    types = list(r.fields["tokenizer.ggml.token_type"].contents())
    merges = list(r.fields["tokenizer.ggml.merges"].contents())
    assert len(tokens) == 512 and len(merges) == 253 and tokens[3 + 10] == "Ċ" and "ĊĊ" not in tokens
    for i, t in SPECIAL_RENAME.items():
        tokens[i] = t
    tokens.append("ĊĊ")
    types.append(1)
    merges.append("Ċ Ċ")
    for t in EXTRA_SPECIALS:
        tokens.append(t)
        types.append(3)  # CONTROL, as convert_hf_to_gguf.py marks SmolVLM's added special tokens
    return tokens, types, merges


def write_lm_gguf(path, w, vocab):
    import gguf
    tokens, types, merges = vocab
    wr = gguf.GGUFWriter(path, "llama")
    wr.add_name("tiny-random-smolvlm-lm")
    wr.add_context_length(LM["n_ctx_train"])
    wr.add_embedding_length(LM["n_embd"])
    wr.add_block_count(LM["n_layer"])
    wr.add_feed_forward_length(LM["n_ff"])
    wr.add_head_count(LM["n_head"])
    wr.add_head_count_kv(LM["n_head_kv"])
    wr.add_layer_norm_rms_eps(LM["rms_eps"])
    wr.add_rope_freq_base(LM["rope_base"])
    wr.add_rope_dimension_count(LM["n_rot"])
    wr.add_vocab_size(len(tokens))
    wr.add_file_type(0)
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("default")
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(BOS)
    wr.add_eos_token_id(tokens.index("<end_of_utterance>"))
    wr.add_pad_token_id(PAD)
    wr.add_add_bos_token(True)
    wr.add_add_eos_token(False)
    for name, _ in lm_tensor_shapes(len(tokens)):
        wr.add_tensor(name, w[name])
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def write_mmproj_gguf(path, w):
    import gguf
    wr = gguf.GGUFWriter(path, "clip")
    wr.add_name("tiny-random-smolvlm-mmproj")
    wr.add_file_type(0)
    wr.add_bool("clip.has_vision_encoder", True)
    wr.add_string("clip.projector_type", "idefics3")
    wr.add_bool("clip.use_gelu", True)
    wr.add_uint32("clip.vision.projection_dim", V["projection_dim"])
    wr.add_uint32("clip.vision.image_size", V["image_size"])
    wr.add_uint32("clip.vision.patch_size", V["patch_size"])
    wr.add_uint32("clip.vision.embedding_length", V["n_embd"])
    wr.add_uint32("clip.vision.feed_forward_length", V["n_ff"])
    wr.add_uint32("clip.vision.block_count", V["n_layer"])
    wr.add_uint32("clip.vision.attention.head_count", V["n_head"])
    wr.add_float32("clip.vision.attention.layer_norm_epsilon", V["eps"])
    wr.add_array("clip.vision.image_mean", V["image_mean"])
    wr.add_array("clip.vision.image_std", V["image_std"])
    wr.add_uint32("clip.vision.projector.scale_factor", V["scale_factor"])
    wr.add_uint32("clip.vision.preproc_image_size", V["preproc_image_size"])
    for name, _, _ in mmproj_tensor_shapes():
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
    import gguf
    r = gguf.GGUFReader(path)
    out = {}
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name.startswith("tokenizer.ggml.") and f.name in (
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
    """Smooth gradients, hard-edged rectangles (so the Lanczos resizes ring and clip) and mild noise."""
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


def make_images():
    """name -> (file bytes, description, the raster as written (H, W, C) uint8)."""
    from PIL import Image
    images = {}

    def png(name, arr, mode, desc):
        im = Image.fromarray(arr, mode)
        buf = io.BytesIO()
        im.save(buf, "PNG", optimize=False, compress_level=9)
        images[name] = (buf.getvalue(), desc, arr)

    for name, (w, h), desc in [
            ("wide_100x37.png", (100, 37), "RGB, odd aspect: resized to 96x36 (35 rounded up to even), grid 3x2"),
            ("tall_47x120.png", (47, 120), "RGB portrait: resized to 38x96 (37 rounded up to even), grid 2x3"),
            ("exact_96x64.png", (96, 64), "RGB already 96x64: both first resizes are plain copies, grid 3x2"),
            ("large_160x160.png", (160, 160), "RGB downscaled 5/3 to 96x96, grid 3x3"),
            ("tiny_13x9.png", (13, 9), "RGB upscaled to 96x66, then stretched to 96x96, grid 3x3")]:
        png(name, base_pattern(rng_for(name), w, h), "RGB", desc)

    g = base_pattern(rng_for("gray_70x40.png"), 70, 40)
    gray = ((g[..., 0].astype(np.int32) * 3 + g[..., 1].astype(np.int32) * 5 + g[..., 2] * 2) // 10).astype(np.uint8)
    png("gray_70x40.png", gray, "L", "8-bit grayscale PNG (colour type 0): stb replicates the gray value into R, G, B; "
        "resized to 96x54, grid 3x2")

    rgb = base_pattern(rng_for("rgba_40x64.png"), 40, 64)
    alpha = np.zeros((64, 40), np.uint8)
    alpha[:, :14] = 255                                            # opaque
    alpha[:, 14:27] = np.linspace(32, 224, 13).astype(np.uint8)    # translucent
    alpha[:, 27:] = 0                                              # fully transparent, colours still random
    rgba = np.dstack([rgb, alpha])
    png("rgba_40x64.png", rgba, "RGBA", "RGBA PNG (colour type 6), right third fully transparent with random RGB "
        "underneath, middle translucent: stb drops alpha; resized to 60x96, grid 2x3")

    # JPEG with EXIF Orientation 6 (display: rotate 90 degrees clockwise). The stored raster is 60x30.
    name = "exif_rot6_60x30.jpg"
    arr = base_pattern(rng_for(name), 60, 30)
    arr[2:8, 2:20] = [255, 0, 0]  # a red bar near the stored top-left corner: shows which way is up
    im = Image.fromarray(arr, "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, exif=exif.tobytes())  # Pillow default subsampling 4:2:0, baseline
    images[name] = (buf.getvalue(), "baseline JPEG 4:2:0, quality 90, EXIF Orientation = 6; stored raster 60x30 "
                    "(upright view would be 30x60). stb ignores EXIF: processed as 60x30 -> 96x48, grid 3x2", arr)
    return images


# ---------------------------------------------------------------------------------------------------------------
# llama.cpp idefics3 preprocessing, reimplemented (tools/mtmd/mtmd-image.cpp, llama.cpp 0c1e57098)

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


def precompute_weights(in_size, out_size):
    """Pillow's precompute_coeffs (Lanczos, support 3) as mtmd-image.cpp has it: (bounds [(xmin, xcnt)], int32
    fixed-point weights [out_size][ksize])."""
    scale = filterscale = in_size / out_size
    if filterscale < 1.0:
        filterscale = 1.0
    support = 3.0 * filterscale
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
        ws = [lanczos((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for v in ws:
            ww += v
        if ww != 0.0:
            ws = [v / ww for v in ws]
        for x, v in enumerate(ws):
            weights[xx, x] = int(v * fxp + (-0.5 if v < 0 else 0.5))  # truncation toward zero
        bounds.append((xmin, xmax))
    return bounds, weights


def resample_axis(src, out_size, axis):
    """One separable pass over `axis` (1 = horizontal, 0 = vertical) of an (H, W, 3) uint8 image."""
    a = np.moveaxis(src.astype(np.int64), axis, 0)
    bounds, weights = precompute_weights(a.shape[0], out_size)
    out = np.empty((out_size,) + a.shape[1:], np.uint8)
    for i, (xmin, xcnt) in enumerate(bounds):
        acc = np.full(a.shape[1:], 1 << (PRECISION_BITS - 1), np.int64)
        for k in range(xcnt):
            acc += a[xmin + k] * weights[i, k]
        assert np.all(np.abs(acc) < 2 ** 31), "int32 accumulator would overflow"
        out[i] = np.clip(acc >> PRECISION_BITS, 0, 255)  # arithmetic shift, like the C int32 >>
    return np.moveaxis(out, 0, axis)


def resize(img, w, h):
    """img_tool::resize(..., RESIZE_ALGO_LANCZOS, PAD_NONE): copy if same size, else horizontal then vertical."""
    H, W = img.shape[:2]
    if (w, h) == (W, H):
        return img.copy()
    if not (0 < w <= 65536 and 0 < h <= 65536):
        raise ValueError(f"resize target {w}x{h} is out of range")
    out = img
    if w != W:
        out = resample_axis(out, w, 1)
    if h != H:
        out = resample_axis(out, h, 0)
    return out


def idefics3_plan(W, H):
    L, tile = V["preproc_image_size"], V["image_size"]
    aspect = W / H
    if W >= H:
        rw, rh = L, int(L / aspect)
        rh += rh % 2
    else:
        rw, rh = int(L * aspect), L
        rw += rw % 2
    gx, gy = (rw + tile - 1) // tile, (rh + tile - 1) // tile
    return (rw, rh), (gx, gy), (gx * tile, gy * tile)


def normalize(u8):
    x = u8.astype(np.float32) / np.float32(255.0)
    mean = np.array(V["image_mean"], np.float32)
    std = np.array(V["image_std"], np.float32)
    return ((x - mean) / std).astype(np.float32)


def preprocess(rgb):
    """rgb: (H, W, 3) uint8 as stb_image decoded it. Returns the plan and the entries in *prompt order*: tiles
    row-major, then the global (overview) image; each (role, uint8 tile, float32 normalized tile)."""
    H, W = rgb.shape[:2]
    (rw, rh), (gx, gy), (fw, fh) = idefics3_plan(W, H)
    tile = V["image_size"]
    resized = resize(rgb, rw, rh)
    refined = resize(resized, fw, fh)
    overview = resize(refined, tile, tile)
    entries = []
    for y in range(gy):
        for x in range(gx):
            t = refined[y * tile:(y + 1) * tile, x * tile:(x + 1) * tile]
            entries.append((f"tile r{y + 1} c{x + 1}", t, normalize(t)))
    entries.append(("global", overview, normalize(overview)))
    plan = {"input_size": [W, H], "resized_size": [rw, rh], "grid": [gx, gy], "refined_size": [fw, fh],
            "overview_size": [tile, tile]}
    return plan, entries, (resized, refined, overview)


def pil_resize_check(rgb, stages):
    """Each resize done with Pillow's Image.resize(LANCZOS), one axis at a time in llama.cpp's order (horizontal,
    then vertical), must be identical. (Pillow's own two-axis resize may run the vertical pass first: Pillow 13.0.0
    does for 47x120 -> 38x96, and then differs from llama.cpp by up to 23 levels.) Returns (max diff one axis at a
    time, max diff of Pillow's two-axis resize)."""
    from PIL import Image
    resized, refined, overview = stages
    worst_axes, worst_pil = 0, 0
    for src, dst in ((rgb, resized), (resized, refined), (refined, overview)):
        if src.shape == dst.shape:
            continue
        h, w = dst.shape[:2]
        im = Image.fromarray(src, "RGB")
        if w != src.shape[1]:
            im = im.resize((w, src.shape[0]), Image.LANCZOS)
        if h != src.shape[0]:
            im = im.resize((w, h), Image.LANCZOS)
        worst_axes = max(worst_axes, int(np.abs(np.asarray(im).astype(int) - dst.astype(int)).max()))
        both = np.asarray(Image.fromarray(src, "RGB").resize((w, h), Image.LANCZOS))
        worst_pil = max(worst_pil, int(np.abs(both.astype(int) - dst.astype(int)).max()))
    return worst_axes, worst_pil


# ---------------------------------------------------------------------------------------------------------------
# float64 numpy forward passes


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


def patches_of(pix):
    """(S, S, 3) HWC -> (n_pos, 3*p*p): patches in row-major order (py, px), each flattened as (c, ky, kx) like the
    conv kernel (E, 3, p, p), which is also the layout of ggml_im2col's output rows."""
    p, n = V["patch_size"], V["n_patches_side"]
    x = pix.astype(np.float64).transpose(2, 0, 1)                           # (3, S, S)
    return x.reshape(3, n, p, n, p).transpose(1, 3, 0, 2, 4).reshape(n * n, 3 * p * p)


def encode_tile(w, pix, emulate_ggml=False):
    """pix: (S, S, 3) float (normalized, HWC). Returns (tokens_per_tile, projection_dim) float64.

    emulate_ggml: round where llama.cpp's CPU graph rounds to f16: ggml_conv_2d's im2col writes the patches as f16
    (for an F32 or F16 kernel), and the matmul with an f16 src0 converts the kernel to f16 too (products summed in
    f32); GELU comes from an f16 table. Without it: plain float64, no rounding anywhere."""
    p, n, e, s = V["patch_size"], V["n_patches_side"], V["n_embd"], V["scale_factor"]
    nh = V["n_head"]
    dh = e // nh
    patches = patches_of(pix)
    kernel = w["v.patch_embd.weight"].reshape(e, -1)
    if emulate_ggml:
        patches, kernel = f16(patches), f16(kernel)
    h = patches @ kernel.T + w["v.patch_embd.bias"]
    h = h + w["v.position_embd.weight"]
    for i in range(V["n_layer"]):
        b = f"v.blk.{i}."
        t = layer_norm(h, w[b + "ln1.weight"], w[b + "ln1.bias"], V["eps"])
        q = (t @ w[b + "attn_q.weight"].T + w[b + "attn_q.bias"]).reshape(-1, nh, dh)
        k = (t @ w[b + "attn_k.weight"].T + w[b + "attn_k.bias"]).reshape(-1, nh, dh)
        v = (t @ w[b + "attn_v.weight"].T + w[b + "attn_v.bias"]).reshape(-1, nh, dh)
        heads = []
        for hh in range(nh):
            sc = q[:, hh] @ k[:, hh].T / math.sqrt(dh)
            sc = np.exp(sc - sc.max(-1, keepdims=True))
            heads.append(sc / sc.sum(-1, keepdims=True) @ v[:, hh])
        h = h + np.concatenate(heads, -1) @ w[b + "attn_out.weight"].T + w[b + "attn_out.bias"]
        t = layer_norm(h, w[b + "ln2.weight"], w[b + "ln2.bias"], V["eps"])
        u = gelu_tanh(t @ w[b + "ffn_up.weight"].T + w[b + "ffn_up.bias"], emulate_ggml)
        h = h + u @ w[b + "ffn_down.weight"].T + w[b + "ffn_down.bias"]
    h = layer_norm(h, w["v.post_ln.weight"], w["v.post_ln.bias"], V["eps"])
    # pixel shuffle as clip_graph::build_patch_merge_permute orders it: output token (yg, xg), row-major; its
    # vector is [patch (xg*s+dx, yg*s+dy) for dy in 0..s-1 for dx in 0..s-1], each n_embd long
    g = h.reshape(n // s, s, n // s, s, e)                                   # (yg, dy, xg, dx, c)
    merged = g.transpose(0, 2, 1, 3, 4).reshape((n // s) ** 2, s * s * e)    # (yg*xg, dy*dx*c)
    return merged @ w["mm.model.fc.weight"].T


def rms_norm(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + LM["rms_eps"]) * w


def rope_norm(x, pos):
    n_rot = LM["n_rot"]
    inv = LM["rope_base"] ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
    ang = pos[:, None].astype(np.float64) * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    out = x.copy()
    x0, x1 = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
    out[..., 0:n_rot:2] = x0 * c - x1 * s
    out[..., 1:n_rot:2] = x0 * s + x1 * c
    return out


def lm_forward(w, inputs, emulate_f16_kv=False, return_hidden=False):
    """inputs: (n, n_embd) float64 (token embeddings or image embeddings). Causal, positions 0..n-1.
    Returns the logits (n, n_vocab) (and the final normed hidden states)."""
    n = len(inputs)
    nh, nkv, hd = LM["n_head"], LM["n_head_kv"], LM["head_dim"]
    pos = np.arange(n)
    x = inputs.astype(np.float64)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(LM["n_layer"]):
        p = f"blk.{i}."
        h = rms_norm(x, w[p + "attn_norm.weight"])
        q = rope_norm((h @ w[p + "attn_q.weight"].T).reshape(n, nh, hd), pos)
        k = rope_norm((h @ w[p + "attn_k.weight"].T).reshape(n, nkv, hd), pos)
        v = (h @ w[p + "attn_v.weight"].T).reshape(n, nkv, hd)
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
        h = rms_norm(x, w[p + "ffn_norm.weight"])
        g = h @ w[p + "ffn_gate.weight"].T
        u = h @ w[p + "ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "ffn_down.weight"].T
    h = rms_norm(x, w["output_norm.weight"])
    logits = h @ w["output.weight"].T
    return (logits, h) if return_hidden else logits


def greedy_exact(w, first, n=N_GREEDY):
    """Greedy tokens (plain float64) after the prompt inputs `first` (n, n_embd)."""
    seq, out = first, []
    for _ in range(n):
        a = int(np.argmax(lm_forward(w, seq)[-1]))
        out.append(a)
        seq = np.concatenate([seq, w["token_embd.weight"][[a]]])
    return out


def path_hidden(w, first, path, emulate_f16_kv=False):
    """Final normed hidden states from which the greedy choices along `path` are made (teacher-forced)."""
    seq = np.concatenate([first, w["token_embd.weight"][path[:-1]]])
    return lm_forward(w, seq, emulate_f16_kv, return_hidden=True)[1][len(first) - 1:]


def condition_output(w32, path, hidden_sets):
    """Cyclic projections on output.weight rows (as scripts/fixtures_quant_types.py does): for every set of hidden
    states along `path`, the path's token beats every other logit by >= MARGIN. output.weight is untied, so the
    hidden states do not depend on it and the path stays the same."""
    out = w32["output.weight"].astype(np.float64)
    target, check = MARGIN + 5e-3, MARGIN + 4e-3
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
    assert min(margins) >= MARGIN, margins
    return new, change, min(margins)


def margin(row):
    s = np.sort(np.asarray(row))
    return float(s[-1] - s[-2])


# ---------------------------------------------------------------------------------------------------------------
# llama.cpp via ctypes (libllama + libmtmd of llama-cpp-python)


class GgmlTensor(ctypes.Structure):
    """struct ggml_tensor of ggml/include/ggml.h (llama.cpp 0c1e57098), to read graph nodes in an eval callback."""
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
                ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64),
                ("extra", ctypes.c_void_p), ("padding", ctypes.c_char * 8)]


GGML_TYPE_F16 = 1


class LlamaCpp:
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

    def _make_eval_cb(self):
        """Keeps a copy of the ViT's im2col output (the f16 patches, (n_pos, 3*p*p)) of the last encode."""
        k = 3 * V["patch_size"] ** 2
        self.im2col = []

        @self.l.ggml_backend_sched_eval_callback
        def cb(t, ask, user_data):
            if ask:
                return True
            g = GgmlTensor.from_address(t)
            ne = list(g.ne)
            if g.type == GGML_TYPE_F16 and ne[0] == k and ne[1] * ne[2] * ne[3] == V["n_pos"] and g.data:
                n = k * V["n_pos"]
                a = np.ctypeslib.as_array(ctypes.cast(g.data, ctypes.POINTER(ctypes.c_uint16)), shape=(n,))
                self.im2col.append(a.copy().view(np.float16).reshape(V["n_pos"], k))
            return True
        return cb

    def load(self, lm_path, mmproj_path, flash_attn_clip):
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
        self._eval_cb = self._make_eval_cb()
        cp.cb_eval = self._eval_cb
        self.mctx = m.mtmd_init_from_file(mmproj_path.encode(), self.model, cp)
        assert self.mctx, "mtmd_init_from_file failed:\n" + "".join(self.log[-30:])

    def new_lctx(self):
        l = self.l
        cp = l.llama_context_default_params()
        cp.n_ctx = 512
        cp.n_batch = 512
        cp.n_ubatch = 512
        cp.n_threads = 2
        cp.n_threads_batch = 2
        cp.flash_attn_type = l.LLAMA_FLASH_ATTN_TYPE_DISABLED
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

    def chunk_list(self, chunks):
        m = self.m
        out = []
        for i in range(m.mtmd_input_chunks_size(chunks)):
            c = m.mtmd_input_chunks_get(chunks, i)
            ty = m.mtmd_input_chunk_get_type(c)
            if ty == m.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                p = m.mtmd_input_chunk_get_tokens_text(c, ctypes.byref(n))
                out.append(("text", c, [int(p[j]) for j in range(n.value)]))
            else:
                assert ty == m.MTMD_INPUT_CHUNK_TYPE_IMAGE
                out.append(("image", c, int(m.mtmd_input_chunk_get_n_tokens(c))))
        return out

    def encode(self, chunk, n_tokens):
        self.im2col.clear()
        rc = self.m.mtmd_encode_chunk(self.mctx, chunk)
        assert rc == 0
        p = self.m.mtmd_get_output_embd(self.mctx)
        return np.ctypeslib.as_array(p, shape=(n_tokens * LM["n_embd"],)).copy().reshape(n_tokens, LM["n_embd"])

    def eval_and_greedy(self, chunks, n_greedy):
        l, m = self.l, self.m
        ctx = self.new_lctx()
        new_n_past = l.llama_pos(0)
        rc = m.mtmd_helper_eval_chunks(self.mctx, ctx, chunks, 0, 0, 512, True, ctypes.byref(new_n_past))
        assert rc == 0, "mtmd_helper_eval_chunks failed:\n" + "".join(self.log[-30:])
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
        l.llama_free(ctx)
        return int(new_n_past.value), rows

    def free(self):
        self.m.mtmd_free(self.mctx)
        self.l.llama_model_free(self.model)


# ---------------------------------------------------------------------------------------------------------------


def chat_inputs(layout, w, embd):
    """The LM input vectors of a chat chunk layout: token embeddings for text, `embd` rows for the image chunks."""
    parts = []
    for c in layout:
        if c["type"] == "text":
            parts.append(w["token_embd.weight"][c["tokens"]])
        else:
            k, n = c["entry"], c["n_tokens"]
            parts.append(np.asarray(embd[k * n:(k + 1) * n], np.float64))
    return np.concatenate(parts)


def image_layout(lc, chunks, ents, pieces, check_pixels, name):
    """Walks mtmd's chunks: the JSON layout, and mtmd's embeddings of the image chunks (prompt order). With
    check_pixels, asserts that llama.cpp's im2col patches equal f16 of ours for every image chunk."""
    layout, embd, img_i = [], [], 0
    for kind, c, val in lc.chunk_list(chunks):
        if kind == "text":
            layout.append({"type": "text", "tokens": val})
            for t in val:
                pieces[t] = lc.piece(t)
        else:
            assert val == V["tokens_per_tile"]
            layout.append({"type": "image", "n_tokens": val, "entry": img_i, "role": ents[img_i][0]})
            embd.append(lc.encode(c, val))
            if check_pixels:
                ours = patches_of(ents[img_i][2]).astype(np.float16)
                assert lc.im2col and all(np.array_equal(g, ours) for g in lc.im2col), f"{name} {img_i}: pixels differ"
            img_i += 1
    assert img_i == len(ents), (name, img_i, len(ents))
    return layout, np.concatenate(embd)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--work", default=os.path.join(ROOT, ".cache", "vision-fixtures"),
                    help="where the unpublished pass-1 language model goes")
    args = ap.parse_args()
    for d in (OUT, os.path.join(OUT, "images"), os.path.join(OUT, "ref"), args.work):
        os.makedirs(d, exist_ok=True)
    import llama_cpp
    version = llama_cpp.__version__

    # 1. weights; the mmproj file; a pass-1 LM (unconditioned output.weight) to learn the chat layout with
    vocab = build_vocab(args.shared)
    tokens = vocab[0]
    n_vocab = len(tokens)
    w0 = lm_weights(n_vocab)
    wv = mmproj_weights()
    wv64 = {k: v.astype(np.float64) for k, v in wv.items()}
    lm_path, mm_path = os.path.join(OUT, LM_FILE), os.path.join(OUT, MMPROJ_FILE)
    pass1 = os.path.join(args.work, "pass1-" + LM_FILE)
    write_mmproj_gguf(mm_path, wv)
    write_lm_gguf(pass1, w0, vocab)

    # 2. images
    images = make_images()
    for name, (data, _, _) in images.items():
        with open(os.path.join(OUT, "images", name), "wb") as f:
            f.write(data)

    # 3. margin conditioning of output.weight along the chat prompt's greedy path
    lc = LlamaCpp()
    lc.load(pass1, mm_path, llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    bm, rgb = lc.bitmap(os.path.join(OUT, "images", CHAT_IMAGE))
    _, ents, _ = preprocess(rgb)
    chunks = lc.tokenize(CHAT_PROMPT, bm)
    clayout, cembd = image_layout(lc, chunks, ents, {}, False, CHAT_IMAGE)
    lc.m.mtmd_input_chunks_free(chunks)
    lc.m.mtmd_bitmap_free(bm)
    lc.free()
    cref = np.concatenate([encode_tile(wv64, e[2]) for e in ents])
    w064 = {k: v.astype(np.float64) for k, v in w0.items()}
    first_ref, first_mtmd = chat_inputs(clayout, w064, cref), chat_inputs(clayout, w064, cembd)
    path = greedy_exact(w064, first_ref)
    hidden_sets = [path_hidden(w064, first_ref, path), path_hidden(w064, first_mtmd, path),
                   path_hidden(w064, first_mtmd, path, emulate_f16_kv=True)]
    wl, change, min_margin = condition_output(w0, path, hidden_sets)
    wl64 = {k: v.astype(np.float64) for k, v in wl.items()}
    assert greedy_exact(wl64, first_ref) == path
    conditioning = {"note": ("small deterministic changes to output.weight rows (cyclic projections) so that along "
                             "the chat prompt's greedy path (plain float64, unchanged by them) every choice beats "
                             f"every other token by >= {MARGIN}, with the hidden states of the numpy image "
                             "embeddings and of mtmd's (plain and with f16-KV rounding)"),
                    "path": path, "margin": MARGIN, "max_abs_change_output_weight": sig(change, 4),
                    "min_margin_exact": sig(min_margin, 4)}
    print(f"conditioned output.weight: max |change| {change:.4g}, path {path}, min margin {min_margin:.4f}",
          file=sys.stderr)
    write_lm_gguf(lm_path, wl, vocab)

    # 4. llama.cpp references and the numpy checks, image by image
    lc = LlamaCpp()
    lc.load(lm_path, mm_path, llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    entries_json, pieces, chat = [], {}, None
    for name in sorted(images):
        data, desc, written = images[name]
        bm, rgb = lc.bitmap(os.path.join(OUT, "images", name))
        stem = name.rsplit(".", 1)[0]
        if name.endswith(".png"):
            expect = written if written.ndim == 3 else np.repeat(written[..., None], 3, axis=2)
            assert np.array_equal(rgb, expect[..., :3]), f"{name}: stb decode differs from the PNG's RGB"
            decoded = {"note": "identical to the PNG's RGB samples (alpha dropped, gray replicated); not stored"}
        else:
            from PIL import Image
            pil = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            d = np.abs(pil.astype(int) - rgb.astype(int))
            decoded = write_bin(f"ref/{stem}.rgb.u8", rgb, np.uint8)
            decoded["note"] = ("stb_image's decode (H, W, 3); Pillow 13.0.0 (libjpeg-turbo) decodes the same file "
                               f"with max |diff| {int(d.max())} ({int((d > 0).any(-1).sum())} of "
                               f"{d.shape[0] * d.shape[1]} pixels differ); vs the raster before JPEG coding: "
                               f"max |diff| {int(np.abs(written.astype(int) - rgb.astype(int)).max())}")

        plan, ents, stages = preprocess(rgb)
        pil_axes, pil_both = pil_resize_check(rgb, stages)
        assert pil_axes == 0, f"{name}: numpy Lanczos differs from Pillow's (one axis at a time) by {pil_axes}"
        chunks = lc.tokenize(MARKER, bm)
        layout, embd = image_layout(lc, chunks, ents, pieces, True, name)
        lc.m.mtmd_input_chunks_free(chunks)

        # numpy: the encoder on numpy-preprocessed tiles
        ref = np.concatenate([encode_tile(wv64, e[2]) for e in ents])
        ref_emul = np.concatenate([encode_tile(wv64, e[2], emulate_ggml=True) for e in ents])
        d_plain = float(np.abs(embd - ref).max())
        d_emul = float(np.abs(embd - ref_emul).max())
        print(f"{name}: {plan['input_size']} -> {plan['resized_size']} -> grid {plan['grid']}; "
              f"{len(ents)} entries, {embd.shape[0]} image tokens; max |mtmd - numpy f64| {d_plain:.3g} "
              f"(ggml f16 roundings emulated: {d_emul:.3g}); |embd| max {np.abs(embd).max():.3g}; "
              f"Pillow two-axis resize differs by {pil_both}", file=sys.stderr)
        if d_emul > TOL_EMBD_EMULATED or d_plain > TOL_EMBD:
            raise RuntimeError(f"{name}: numpy embeddings disagree with mtmd by {d_plain} ({d_emul} emulated)")

        n_text = sum(len(x["tokens"]) for x in layout if x["type"] == "text")
        entries_json.append({
            "image": f"images/{name}", "description": desc, "image_sha256": sha256_bytes(data),
            "decoded_rgb": decoded,
            "preprocess": plan,
            "n_entries": len(ents),
            "entry_roles": [e[0] for e in ents],
            "pixels": write_bin(f"ref/{stem}.pixels.f32", np.stack([e[2] for e in ents]), "<f4"),
            "pixels_checked_against_llama_cpp_im2col": True,
            "pillow_two_axis_resize_max_diff": pil_both,
            "prompt": MARKER, "add_special": True, "parse_special": True,
            "chunks": layout,
            "n_image_tokens": int(embd.shape[0]),
            "n_text_tokens": n_text,
            "n_tokens_total": int(embd.shape[0]) + n_text,
            "embd_mtmd": write_bin(f"ref/{stem}.embd.f32", embd, "<f4"),
            "embd_numpy_f64": write_bin(f"ref/{stem}.embd_ref.f32", ref, "<f4"),
            "max_abs_mtmd_vs_numpy": sig(d_plain, 3),
            "max_abs_mtmd_vs_numpy_ggml_f16_emulated": sig(d_emul, 3),
            "max_abs_embd": sig(float(np.abs(embd).max()), 4),
        })

        if name == CHAT_IMAGE:
            chunks = lc.tokenize(CHAT_PROMPT, bm)
            clayout2, cembd2 = image_layout(lc, chunks, ents, pieces, True, name)
            assert clayout2 == clayout and np.array_equal(cembd2, embd)
            n_past, rows = lc.eval_and_greedy(chunks, N_GREEDY)
            lc.m.mtmd_input_chunks_free(chunks)
            first_ref, first_mtmd = chat_inputs(clayout, wl64, ref), chat_inputs(clayout, wl64, embd)
            assert n_past == len(first_ref)
            rows = np.asarray(rows)
            greedy = [int(np.argmax(r)) for r in rows]

            def path_logits(first, emul):  # teacher-forced along llama.cpp's greedy path
                seq = np.concatenate([first, wl64["token_embd.weight"][greedy[:-1]]])
                return lm_forward(wl64, seq, emulate_f16_kv=emul)[len(first) - 1:]
            ex = path_logits(first_ref, False)
            ex_greedy = greedy_exact(wl64, first_ref)
            cmp = {"max_abs_prompt_last": sig(float(np.abs(rows[0] - ex[0]).max()), 3),
                   "max_abs_all_steps": sig(float(np.abs(rows - ex).max()), 3),
                   "max_abs_all_steps_lm_only": sig(float(np.abs(rows - path_logits(first_mtmd, False)).max()), 3),
                   "max_abs_all_steps_lm_only_f16_kv_emulated":
                       sig(float(np.abs(rows - path_logits(first_mtmd, True)).max()), 3),
                   "greedy_agree": sum(int(a == b) for a, b in zip(greedy, ex_greedy))}
            print(f"chat: {n_past} positions; greedy {greedy}; margins "
                  f"{[round(margin(r), 3) for r in rows]}; vs numpy {cmp}", file=sys.stderr)
            if cmp["max_abs_all_steps"] > TOL_LOGITS or ex_greedy != greedy:
                raise RuntimeError(f"numpy LM disagrees with llama.cpp: {cmp}, {ex_greedy} vs {greedy}")
            chat = {
                "image": f"images/{name}", "prompt": CHAT_PROMPT, "add_special": True, "parse_special": True,
                "chunks": clayout, "n_positions": n_past,
                "logits_sig_digits": 5,
                "logits_last": [sig(x) for x in rows[0]],
                "logits_last_top1_minus_top2": sig(margin(rows[0])),
                "greedy": {"tokens": greedy, "pieces": [lc.piece(t) for t in greedy],
                           "top1_minus_top2": [sig(margin(r)) for r in rows],
                           "top10": [[[int(i), sig(r[i])] for i in np.argsort(-r, kind="stable")[:10]]
                                     for r in rows]},
                "exact_f64": {
                    "note": ("numpy float64 LM (no rounding) fed with the numpy float64 image embeddings "
                             "(embd_numpy_f64), teacher-forced along llama.cpp's greedy path; *_lm_only: the same LM "
                             "fed with mtmd's embeddings"),
                    "logits_last": [sig(x) for x in ex[0]],
                    "greedy_tokens": ex_greedy,
                    "llamacpp_vs_exact": cmp},
            }
        lc.m.mtmd_bitmap_free(bm)
    lc.free()

    # 5. llama.cpp with the clip flash-attention setting left at its default (auto -> enabled on CPU), on record
    lc = LlamaCpp()
    lc.load(lm_path, mm_path, llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO)
    fa_enabled = any("flash attention is enabled" in x for x in lc.log)
    for entry in entries_json:
        bm, rgb = lc.bitmap(os.path.join(OUT, entry["image"]))
        chunks = lc.tokenize(MARKER, bm)
        _, embd = image_layout(lc, chunks, preprocess(rgb)[1], {}, False, entry["image"])
        mt = np.fromfile(os.path.join(OUT, entry["embd_mtmd"]["file"]), "<f4").reshape(embd.shape)
        ref = np.fromfile(os.path.join(OUT, entry["embd_numpy_f64"]["file"]), "<f4").reshape(embd.shape)
        entry["flash_attn_auto"] = {"clip_flash_attn_enabled": fa_enabled,
                                    "max_abs_vs_embd_mtmd": sig(float(np.abs(embd - mt).max()), 3),
                                    "max_abs_vs_numpy": sig(float(np.abs(embd - ref).max()), 3)}
        lc.m.mtmd_input_chunks_free(chunks)
        lc.m.mtmd_bitmap_free(bm)
    lc.free()

    out = {
        "schema_version": 1,
        "generator": "scripts/fixtures_vision.py",
        "reference": {"engine": "llama.cpp libmtmd + libllama (CPU backend) via llama-cpp-python ctypes",
                      "llama_cpp_python": version, "llama_cpp_commit": "0c1e57098bba43ac29e6e3b677cdceebdd22334f",
                      "gguf_py": "0.19.0", "n_threads": 2,
                      "mtmd_context_params": {"use_gpu": False, "n_threads": 2, "flash_attn_type": "disabled",
                                              "warmup": True, "image_min_tokens": -1, "image_max_tokens": -1},
                      "llama_context_params": {"n_ctx": 512, "n_batch": 512, "n_ubatch": 512, "n_threads": 2,
                                               "flash_attn_type": "disabled", "kv_cache_type": "f16"},
                      "image_loading": "mtmd_helper_bitmap_init_from_file (stb_image, 3 channels requested)",
                      "tokenize": "mtmd_tokenize(text with the marker, add_special true, parse_special true)",
                      "embeddings": "mtmd_encode_chunk + mtmd_get_output_embd, one image chunk at a time",
                      "logits": ("mtmd_helper_eval_chunks(n_past 0, seq 0, n_batch 512, logits_last true), then "
                                 "one llama_decode (llama_batch_get_one) per greedy token")},
        "lm": {"file": LM_FILE, "sha256": sha256_file(lm_path), "size_bytes": os.path.getsize(lm_path),
               "hparams": dict(LM, n_vocab=n_vocab),
               "weights": {"seed": "numpy default_rng(zlib.crc32(b'smolvlm-tiny-lm'))", "std": LM_STD,
                           "norm_weights": f"1 + N(0, {NORM_STD})", "conditioning": conditioning},
               "special_tokens": {t: i for i, t in enumerate(tokens) if i < 3 or i >= 512},
               "bos": BOS, "eos": tokens.index("<end_of_utterance>"), "pad": PAD,
               "kv": gguf_kv(lm_path), "tensors": gguf_tensor_list(lm_path)},
        "mmproj": {"file": MMPROJ_FILE, "sha256": sha256_file(mm_path), "size_bytes": os.path.getsize(mm_path),
                   "hparams": V,
                   "weights": {"seed": "numpy default_rng(zlib.crc32(b'smolvlm-tiny-mmproj'))",
                               "init": {n: list(i) for n, _, i in mmproj_tensor_shapes()}},
                   "kv": gguf_kv(mm_path), "tensors": gguf_tensor_list(mm_path)},
        "token_pieces": {str(k): pieces[k] for k in sorted(pieces)},
        "binary_files": ("raw, no header, C order, f32 little-endian; shape and dtype given next to each file name. "
                         "decoded_rgb (JPEG only): (H, W, 3) u8 as stb_image returned it. pixels: "
                         "(n_entries, S, S, 3) f32, entries in prompt order (tiles row-major, then the global "
                         "image), each HWC interleaved RGB exactly as clip_image_f32 holds it (llama.cpp makes it "
                         "planar CHW for the conv). embd_*: (n_image_tokens, n_embd_text) f32, the image chunks "
                         "concatenated in prompt order."),
        "images": entries_json,
        "chat": chat,
    }
    with open(os.path.join(OUT, "vision.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
