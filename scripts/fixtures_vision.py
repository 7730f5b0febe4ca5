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

The code it shares with the other generators (resampler, GGUF helpers, float64 decoder, margin conditioning, the
ctypes libllama/libmtmd wrapper) is in scripts/fixtures_common.py.
"""
import ctypes
import io
import math
import os
import sys

import numpy as np

import fixtures_common as fc
from fixtures_common import (LANCZOS, ROOT, GGML_TYPE_F16, f16, gelu_tanh, layer_norm, resize_pillow, rng_for,
                             sha256_bytes)

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
# weights


def lm_tensor_shapes(n_vocab):
    """(name, numpy shape) in file order (the shared fixtures' order); numpy shape = reversed GGUF ne."""
    return fc.llama_tensor_shapes(LM, n_vocab)


def lm_weights(n_vocab):
    return fc.llama_random_weights(lm_tensor_shapes(n_vocab), rng_for("smolvlm-tiny-lm"), LM_STD, NORM_STD)


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
    return fc.mmproj_random_weights(mmproj_tensor_shapes(), rng_for("smolvlm-tiny-mmproj"), NORM_STD)


# ---------------------------------------------------------------------------------------------------------------
# tokenizer and GGUF files


def build_vocab(shared):
    tokens, types, merges = fc.shared_gpt2_vocab(shared, SPECIAL_RENAME)
    assert "ĊĊ" not in tokens
    tokens.append("ĊĊ")
    types.append(1)
    merges.append("Ċ Ċ")
    for t in EXTRA_SPECIALS:
        tokens.append(t)
        types.append(3)  # CONTROL, as convert_hf_to_gguf.py marks SmolVLM's added special tokens
    return tokens, types, merges


def write_lm_gguf(path, w, vocab):
    import gguf
    tokens = vocab[0]
    wr = gguf.GGUFWriter(path, "llama")
    wr.add_name("tiny-random-smolvlm-lm")
    fc.add_lm_shape_kv(wr, LM)
    wr.add_layer_norm_rms_eps(LM["rms_eps"])
    wr.add_rope_freq_base(LM["rope_base"])
    wr.add_rope_dimension_count(LM["n_rot"])
    fc.add_gpt2_vocab_kv(wr, vocab, "default", BOS, tokens.index("<end_of_utterance>"), PAD, True)
    fc.close_gguf(wr, w, [name for name, _ in lm_tensor_shapes(len(tokens))])


def write_mmproj_gguf(path, w):
    import gguf
    wr = gguf.GGUFWriter(path, "clip")
    wr.add_name("tiny-random-smolvlm-mmproj")
    wr.add_file_type(0)
    wr.add_bool("clip.has_vision_encoder", True)
    wr.add_string("clip.projector_type", "idefics3")
    wr.add_bool("clip.use_gelu", True)
    fc.add_clip_vision_kv(wr, V)
    wr.add_float32("clip.vision.attention.layer_norm_epsilon", V["eps"])
    wr.add_array("clip.vision.image_mean", V["image_mean"])
    wr.add_array("clip.vision.image_std", V["image_std"])
    wr.add_uint32("clip.vision.projector.scale_factor", V["scale_factor"])
    wr.add_uint32("clip.vision.preproc_image_size", V["preproc_image_size"])
    fc.close_gguf(wr, w, [name for name, _, _ in mmproj_tensor_shapes()])


# ---------------------------------------------------------------------------------------------------------------
# test images


def make_images():
    """name -> (file bytes, description, the raster as written (H, W, C) uint8)."""
    from PIL import Image
    images = {}

    def png(name, arr, mode, desc):
        images[name] = (fc.png_bytes(arr, mode), desc, arr)

    for name, (w, h), desc in [
            ("wide_100x37.png", (100, 37), "RGB, odd aspect: resized to 96x36 (35 rounded up to even), grid 3x2"),
            ("tall_47x120.png", (47, 120), "RGB portrait: resized to 38x96 (37 rounded up to even), grid 2x3"),
            ("exact_96x64.png", (96, 64), "RGB already 96x64: both first resizes are plain copies, grid 3x2"),
            ("large_160x160.png", (160, 160), "RGB downscaled 5/3 to 96x96, grid 3x3"),
            ("tiny_13x9.png", (13, 9), "RGB upscaled to 96x66, then stretched to 96x96, grid 3x3")]:
        png(name, fc.base_pattern(rng_for(name), w, h), "RGB", desc)

    g = fc.base_pattern(rng_for("gray_70x40.png"), 70, 40)
    gray = ((g[..., 0].astype(np.int32) * 3 + g[..., 1].astype(np.int32) * 5 + g[..., 2] * 2) // 10).astype(np.uint8)
    png("gray_70x40.png", gray, "L", "8-bit grayscale PNG (colour type 0): stb replicates the gray value into R, G, B; "
        "resized to 96x54, grid 3x2")

    rgb = fc.base_pattern(rng_for("rgba_40x64.png"), 40, 64)
    alpha = np.zeros((64, 40), np.uint8)
    alpha[:, :14] = 255                                            # opaque
    alpha[:, 14:27] = np.linspace(32, 224, 13).astype(np.uint8)    # translucent
    alpha[:, 27:] = 0                                              # fully transparent, colours still random
    rgba = np.dstack([rgb, alpha])
    png("rgba_40x64.png", rgba, "RGBA", "RGBA PNG (colour type 6), right third fully transparent with random RGB "
        "underneath, middle translucent: stb drops alpha; resized to 60x96, grid 2x3")

    # JPEG with EXIF Orientation 6 (display: rotate 90 degrees clockwise). The stored raster is 60x30.
    name = "exif_rot6_60x30.jpg"
    arr = fc.base_pattern(rng_for(name), 60, 30)
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


def resize(img, w, h):
    """img_tool::resize(..., RESIZE_ALGO_LANCZOS, PAD_NONE): copy if same size, else horizontal then vertical
    (Pillow-style fixed-point Lanczos, fixtures_common.resize_pillow)."""
    H, W = img.shape[:2]
    if (w, h) == (W, H):
        return img.copy()
    return resize_pillow(img, w, h, LANCZOS)


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
    return fc.normalize(u8, V["image_mean"], V["image_std"])


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
    diffs = [fc.pil_resize_diffs(src, dst, Image.LANCZOS)
             for src, dst in ((rgb, resized), (resized, refined), (refined, overview))]
    return max(d[0] for d in diffs), max(d[1] for d in diffs)


# ---------------------------------------------------------------------------------------------------------------
# float64 numpy forward passes


def patches_of(pix):
    """(S, S, 3) HWC -> (n_pos, 3*p*p): patches in row-major order (py, px), each flattened as (c, ky, kx) like the
    conv kernel (E, 3, p, p), which is also the layout of ggml_im2col's output rows."""
    return fc.patches_of(pix, V["patch_size"])


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


def lm_forward(w, inputs, emulate_f16_kv=False, return_hidden=False):
    """inputs: (n, n_embd) float64 (token embeddings or image embeddings). Causal, positions 0..n-1.
    Returns the logits (n, n_vocab) (and the final normed hidden states)."""
    return fc.llama_forward(LM, w, inputs, emulate_f16_kv, return_hidden)


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


# ---------------------------------------------------------------------------------------------------------------
# llama.cpp via ctypes (libllama + libmtmd of llama-cpp-python)


class LlamaCpp(fc.LlamaCpp):
    """fc.LlamaCpp that keeps a copy of the ViT's im2col output (the f16 patches, (n_pos, 3*p*p)) of the last
    encode in `im2col`."""

    def clear_capture(self):
        self.im2col = []

    def on_vision_node(self, g):
        k = 3 * V["patch_size"] ** 2
        ne = list(g.ne)
        if g.type == GGML_TYPE_F16 and ne[0] == k and ne[1] * ne[2] * ne[3] == V["n_pos"] and g.data:
            self.im2col.append(fc.tensor_array(g, ctypes.c_uint16, np.float16).reshape(V["n_pos"], k))

    def chunk_list(self, chunks):
        """[(kind, chunk, value)]: text -> token list; image -> its number of tokens."""
        m = self.m
        out = []
        for i in range(m.mtmd_input_chunks_size(chunks)):
            c = m.mtmd_input_chunks_get(chunks, i)
            ty = m.mtmd_input_chunk_get_type(c)
            if ty == m.MTMD_INPUT_CHUNK_TYPE_TEXT:
                out.append(("text", c, self.text_tokens(c)))
            else:
                assert ty == m.MTMD_INPUT_CHUNK_TYPE_IMAGE
                out.append(("image", c, int(m.mtmd_input_chunk_get_n_tokens(c))))
        return out


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
            layout.append(lc.text_record(val, pieces))
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
    args = fc.vision_args(__doc__, OUT, os.path.join(ROOT, ".cache", "vision-fixtures"))
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
    wl, change, min_margin = fc.condition_output(w0, path, hidden_sets, MARGIN)
    wl64 = {k: v.astype(np.float64) for k, v in wl.items()}
    assert greedy_exact(wl64, first_ref) == path
    conditioning = fc.conditioning_record(path, change, min_margin, MARGIN)
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
            decoded = fc.write_bin(OUT, f"ref/{stem}.rgb.u8", rgb, np.uint8)
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
        d_plain, d_emul = fc.embd_diffs(embd, ref, ref_emul)
        print(f"{name}: {plan['input_size']} -> {plan['resized_size']} -> grid {plan['grid']}; "
              f"{len(ents)} entries, {embd.shape[0]} image tokens; max |mtmd - numpy f64| {d_plain:.3g} "
              f"(ggml f16 roundings emulated: {d_emul:.3g}); |embd| max {np.abs(embd).max():.3g}; "
              f"Pillow two-axis resize differs by {pil_both}", file=sys.stderr)
        fc.check_embd_diffs(name, d_plain, d_emul, TOL_EMBD, TOL_EMBD_EMULATED)

        n_text = sum(len(x["tokens"]) for x in layout if x["type"] == "text")
        entries_json.append({
            "image": f"images/{name}", "description": desc, "image_sha256": sha256_bytes(data),
            "decoded_rgb": decoded,
            "preprocess": plan,
            "n_entries": len(ents),
            "entry_roles": [e[0] for e in ents],
            "pixels": fc.write_bin(OUT, f"ref/{stem}.pixels.f32", np.stack([e[2] for e in ents]), "<f4"),
            "pixels_checked_against_llama_cpp_im2col": True,
            "pillow_two_axis_resize_max_diff": pil_both,
            "prompt": MARKER, "add_special": True, "parse_special": True,
            "chunks": layout,
            "n_image_tokens": int(embd.shape[0]),
            "n_text_tokens": n_text,
            "n_tokens_total": int(embd.shape[0]) + n_text,
            **fc.embd_records(OUT, stem, embd, ref, d_plain, d_emul),
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
            chat = {
                "image": f"images/{name}", "prompt": CHAT_PROMPT, "add_special": True, "parse_special": True,
                "chunks": clayout, "n_positions": n_past,
                **fc.chat_logits_record(f"chat: {n_past} positions", lc, rows, greedy, ex, ex_greedy, path_logits,
                                        first_mtmd, TOL_LOGITS),
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
        entry["flash_attn_auto"] = fc.flash_attn_record(OUT, entry, embd, fa_enabled)
        lc.m.mtmd_input_chunks_free(chunks)
        lc.m.mtmd_bitmap_free(bm)
    lc.free()

    fc.write_manifest(
        os.path.join(OUT, "vision.json"), "scripts/fixtures_vision.py",
        reference=fc.reference_record(
            version, {"use_gpu": False, "n_threads": 2, "flash_attn_type": "disabled", "warmup": True,
                      "image_min_tokens": -1, "image_max_tokens": -1},
            "mtmd_encode_chunk + mtmd_get_output_embd, one image chunk at a time"),
        lm=fc.lm_record(lm_path, dict(LM, n_vocab=n_vocab),
                        {"seed": "numpy default_rng(zlib.crc32(b'smolvlm-tiny-lm'))", "std": LM_STD,
                         "norm_weights": f"1 + N(0, {NORM_STD})", "conditioning": conditioning},
                        tokens, BOS, tokens.index("<end_of_utterance>"), PAD),
        mmproj=fc.mmproj_record(mm_path, V, "smolvlm-tiny-mmproj", mmproj_tensor_shapes()),
        pieces=pieces,
        binary_files=("raw, no header, C order, f32 little-endian; shape and dtype given next to each file name. "
                      "decoded_rgb (JPEG only): (H, W, 3) u8 as stb_image returned it. pixels: "
                      "(n_entries, S, S, 3) f32, entries in prompt order (tiles row-major, then the global "
                      "image), each HWC interleaved RGB exactly as clip_image_f32 holds it (llama.cpp makes it "
                      "planar CHW for the conv). embd_*: (n_image_tokens, n_embd_text) f32, the image chunks "
                      "concatenated in prompt order."),
        images=entries_json, chat=chat)


if __name__ == "__main__":
    main()
