#!/usr/bin/env python3
"""Make the Qwen2.5-VL vision fixtures in tests/vision-fixtures/qwen2vl/ (issue 16, second family).

A tiny random-weight GGUF pair as llama.cpp's mtmd loads Qwen2.5-VL: a language model (`general.architecture =
qwen2vl`: Qwen2 with q/k/v biases and M-RoPE, gpt2 BPE vocab with Qwen's chat and vision special tokens, untied
output) and an `mmproj` file (`general.architecture = clip`, `clip.projector_type = qwen2.5vl_merger`: a ViT with
the conv3d patch embedding split into two 2-D kernels, RMSNorm, SwiGLU MLPs, 2-D vision RoPE, window attention on
all layers but every `n_wa_pattern`-th, then the 2x2 patch merger MLP into the LM width), and references:

  * llama.cpp (libmtmd + libllama of llama-cpp-python 0.3.36, bundled llama.cpp 0c1e57098, CPU, 2 threads): the
    chunk layout of mtmd_tokenize, the M-RoPE positions of image and text tokens (mtmd's decoder positions, and
    the positions the language model's graph received, captured with an eval callback), the image embeddings
    (mtmd_encode_chunk + mtmd_get_output_embd), stb_image's decode of the JPEG, and, for one image inside a
    Qwen chat prompt, the logits at the last prompt position (mtmd_helper_eval_chunks) and 8 greedy tokens with
    their margins;
  * numpy: llama.cpp's Qwen2.5-VL preprocessing reimplemented (smart resize in float32, Pillow-style fixed-point
    bicubic resize into a black letterbox (PAD_CEIL), normalization), written out as the per-image pixel tensors;
    and an independent float64 forward pass of the encoder + merger and of the M-RoPE language model.

Checks (the script fails otherwise): the numpy pixels equal llama.cpp's own (the ViT's im2col input, captured with
an eval callback, f16) for every image, with the test budget and with llama.cpp's default budget; the vision
RoPE positions, window permutation and window mask llama.cpp builds equal numpy's; each numpy resize equals
Pillow's done one axis at a time; numpy's embeddings match mtmd's within 3e-3 (1e-3 with ggml's f16 roundings
emulated); the positions the language model received equal numpy's; the chat logits match within 5e-3 and the
greedy tokens are the same.

Before the references are made, output.weight is margin-conditioned (cyclic projections, as in
scripts/fixtures_vision.py) so that every greedy choice of the chat prompt wins by >= 1.0; a pass-1 model with
the unconditioned weights (in --work) gives the chat prompt's token layout for that.

Deterministic: fixed seeds, fixed image content; running it twice gives identical files.

Requires the bench venv (scripts/bench/native.sh builds llama-cpp-python 0.3.36) with gguf 0.19.0, numpy and Pillow:

    .cache/bench/venv/bin/pip install gguf==0.19.0 numpy pillow
    .cache/bench/venv/bin/python scripts/fixtures_vision_qwen2vl.py [--shared ../shared]

The tokenizer's first 512 tokens and 253 merges are copied from shared/fixtures/llama-q8_0.gguf (the shared
fixtures' gpt2 vocab). Eight of the nine test images are SmolVLM's, read from tests/vision-fixtures/images/ (their
sha256 is checked); see tests/vision-fixtures/qwen2vl/README.md for everything else.

The code it shares with the other generators (resampler, GGUF helpers, float64 decoder, margin conditioning, the
ctypes libllama/libmtmd wrapper) is in scripts/fixtures_common.py.
"""
import ctypes
import io
import json
import math
import os
import sys

import numpy as np

import fixtures_common as fc
from fixtures_common import (BICUBIC, ROOT, GGML_TYPE_F16, GGML_TYPE_F32, GgmlTensor, f16, gelu_tanh, resize_pillow,
                             rms_norm, rng_for, sha256_bytes, sha256_file, sig, tensor_array)

OUT = os.path.join(ROOT, "tests", "vision-fixtures", "qwen2vl")
SMOLVLM_DIR = os.path.join(ROOT, "tests", "vision-fixtures")

LM_FILE = "qwen2vl-tiny-lm-f32.gguf"
MMPROJ_FILE = "qwen2vl-tiny-mmproj-f32.gguf"

# ---------------------------------------------------------------------------------------------------------------
# configs

# Qwen2.5-VL-3B's language model shrunk: head_dim 128 -> 32, mrope_section [16, 24, 24] -> [4, 6, 6] (+ the 4th,
# always 0, that the conversion appends); they count rotary pairs (t, h, w) and sum to head_dim / 2.
LM = {"arch": "qwen2vl", "n_embd": 128, "n_ff": 256, "n_head": 4, "n_head_kv": 2, "head_dim": 32, "n_layer": 2,
      "n_ctx_train": 512, "rms_eps": 1e-6, "rope_base": 1000000.0, "rope_sections": [4, 6, 6, 0],
      "rope_type": "mrope (neox pairs, sections t/h/w)", "qkv_bias": True, "tied_embeddings": False}
LM_STD = 0.07
BIAS_STD = 0.1
NORM_STD = 0.1
MARGIN = 1.0

V = {"patch_size": 14, "n_merge": 2, "n_embd": 64, "n_ff": 96, "n_layer": 4, "n_head": 4, "eps": 1e-6,
     "n_wa_pattern": 2, "image_size": 560, "projection_dim": LM["n_embd"], "temporal_patch_size": 2,
     # Qwen2.5-VL's preprocessor values (OpenAI CLIP's): distinct per channel, so a channel-order bug shows
     "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
     # not in the GGUF: llama.cpp 0.3.36 uses its default window of 112 pixels for qwen2.5vl (hparams.attn_window_size
     # is only read for other projectors), Qwen2.5-VL's window_size too
     "attn_window_px": 112}
V["d_head"] = V["n_embd"] // V["n_head"]                                       # 16
V["align"] = V["patch_size"] * V["n_merge"]                                    # 28
V["grid_window"] = V["attn_window_px"] // V["patch_size"] // V["n_merge"]      # 4 merged tokens a window side
V["merged_dim"] = V["n_embd"] * V["n_merge"] ** 2                              # 256

# llama.cpp's token budget for qwen2vl/qwen2.5vl (clip.cpp: set_limit_image_tokens(8, 4096)): image_min/max_pixels
# = tokens * (patch * merge)^2. GGUF keys do not change it for this projector; mtmd_context_params.image_min_tokens
# / image_max_tokens (llama-mtmd-cli --image-min-tokens / --image-max-tokens) do. The references use a max of 32
# tokens so that the larger images are scaled down; the layouts and pixels with the default budget are checked too.
DEFAULT_MIN_TOKENS, DEFAULT_MAX_TOKENS = 8, 4096
TEST_MAX_TOKENS = 32

# tokenizer: the shared fixtures' 3 specials (renamed Qwen-style) + 256 bytes + 253 merges, then Qwen's vision
# special tokens as control tokens. mtmd wraps each image in <|vision_start|> ... <|vision_end|>; <|image_pad|> is
# what transformers' processor repeats in the text, llama.cpp puts embeddings there instead and never uses it.
SPECIAL_RENAME = {0: "<|endoftext|>", 1: "<|im_start|>", 2: "<|im_end|>"}
EXTRA_SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
BOS, EOS, PAD = 0, 2, 0    # as Qwen2.5's GGUFs: bos <|endoftext|> (not added), eos <|im_end|>

MARKER = "<__media__>"
CHAT_PROMPT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + MARKER
               + "Describe this image.<|im_end|>\n<|im_start|>assistant\n")
CHAT_IMAGE = "photo_256x144.png"
N_GREEDY = 8
N_CTX = 512

# (name, directory) in processing order: SmolVLM's eight, read in place, and one new image
SMOLVLM_IMAGES = ["exact_96x64.png", "exif_rot6_60x30.jpg", "gray_70x40.png", "large_160x160.png",
                  "rgba_40x64.png", "tall_47x120.png", "tiny_13x9.png", "wide_100x37.png"]

TOL_EMBD = 3e-3
TOL_EMBD_EMULATED = 1e-3
TOL_LOGITS = 5e-3


# ---------------------------------------------------------------------------------------------------------------
# weights


def lm_tensor_shapes(n_vocab):
    """(name, numpy shape, init) in file order; numpy shape = reversed GGUF ne."""
    e, f, hd = LM["n_embd"], LM["n_ff"], LM["head_dim"]
    nq, nkv = LM["n_head"] * hd, LM["n_head_kv"] * hd
    out = [("token_embd.weight", (n_vocab, e), "w")]
    for i in range(LM["n_layer"]):
        p = f"blk.{i}."
        out += [(p + "attn_norm.weight", (e,), "norm"),
                (p + "attn_q.weight", (nq, e), "w"), (p + "attn_q.bias", (nq,), "bias"),
                (p + "attn_k.weight", (nkv, e), "w"), (p + "attn_k.bias", (nkv,), "bias"),
                (p + "attn_v.weight", (nkv, e), "w"), (p + "attn_v.bias", (nkv,), "bias"),
                (p + "attn_output.weight", (e, nq), "w"), (p + "ffn_norm.weight", (e,), "norm"),
                (p + "ffn_gate.weight", (f, e), "w"), (p + "ffn_up.weight", (f, e), "w"),
                (p + "ffn_down.weight", (e, f), "w")]
    out += [("output_norm.weight", (e,), "norm"), ("output.weight", (n_vocab, e), "w")]
    return out


def lm_weights(n_vocab):
    rng = rng_for("qwen2vl-tiny-lm")
    w = {}
    for name, shape, init in lm_tensor_shapes(n_vocab):
        scale = {"w": LM_STD, "bias": BIAS_STD, "norm": NORM_STD}[init]
        w[name] = ((1 if init == "norm" else 0) + rng.standard_normal(shape) * scale).astype(np.float32)
    return w


def mmproj_tensor_shapes():
    """(name, numpy shape, init) in file order. init: ("normal", std) | ("norm_w",)."""
    e, f, p, m = V["n_embd"], V["n_ff"], V["patch_size"], V["merged_dim"]
    # the two temporal halves of the conv3d kernel add up for a still image: fan-in 2 * 3 * p * p
    kstd = 1 / math.sqrt(2 * 3 * p * p)
    out = [("v.patch_embd.weight", (e, 3, p, p), ("normal", kstd)),
           ("v.patch_embd.weight.1", (e, 3, p, p), ("normal", kstd))]
    for i in range(V["n_layer"]):
        b = f"v.blk.{i}."
        out += [(b + "ln1.weight", (e,), ("norm_w",)),
                (b + "attn_q.weight", (e, e), ("normal", 1 / math.sqrt(e))), (b + "attn_q.bias", (e,), ("normal", 0.1)),
                (b + "attn_k.weight", (e, e), ("normal", 1 / math.sqrt(e))), (b + "attn_k.bias", (e,), ("normal", 0.1)),
                (b + "attn_v.weight", (e, e), ("normal", 1 / math.sqrt(e))), (b + "attn_v.bias", (e,), ("normal", 0.1)),
                (b + "attn_out.weight", (e, e), ("normal", 1 / math.sqrt(e))),
                (b + "attn_out.bias", (e,), ("normal", 0.1)),
                (b + "ln2.weight", (e,), ("norm_w",)),
                (b + "ffn_gate.weight", (f, e), ("normal", 1 / math.sqrt(e))),
                (b + "ffn_gate.bias", (f,), ("normal", 0.1)),
                (b + "ffn_up.weight", (f, e), ("normal", 1 / math.sqrt(e))), (b + "ffn_up.bias", (f,), ("normal", 0.1)),
                (b + "ffn_down.weight", (e, f), ("normal", 1 / math.sqrt(f))),
                (b + "ffn_down.bias", (e,), ("normal", 0.1))]
    out += [("v.post_ln.weight", (e,), ("norm_w",)),
            ("mm.0.weight", (m, m), ("normal", 1 / math.sqrt(m))), ("mm.0.bias", (m,), ("normal", 0.1)),
            ("mm.2.weight", (V["projection_dim"], m), ("normal", 1 / math.sqrt(m))),
            ("mm.2.bias", (V["projection_dim"],), ("normal", 0.1))]
    return out


def mmproj_weights():
    return fc.mmproj_random_weights(mmproj_tensor_shapes(), rng_for("qwen2vl-tiny-mmproj"), NORM_STD)


# ---------------------------------------------------------------------------------------------------------------
# tokenizer and GGUF files


def build_vocab(shared):
    tokens, types, merges = fc.shared_gpt2_vocab(shared, SPECIAL_RENAME)
    for t in EXTRA_SPECIALS:
        tokens.append(t)
        types.append(3)  # CONTROL, as convert_hf_to_gguf.py marks Qwen's added special tokens
    return tokens, types, merges


def write_lm_gguf(path, w, vocab):
    """The keys convert_hf_to_gguf.py (conversion/qwenvl.py Qwen2VLModel + TextModel) writes for Qwen2.5-VL's
    language model: no rope.dimension_count (llama.cpp defaults it to head_dim), the M-RoPE sections padded to 4."""
    import gguf
    wr = gguf.GGUFWriter(path, "qwen2vl")
    wr.add_name("tiny-random-qwen2.5-vl-lm")
    fc.add_lm_shape_kv(wr, LM)
    wr.add_rope_dimension_sections(LM["rope_sections"])
    wr.add_rope_freq_base(LM["rope_base"])
    wr.add_layer_norm_rms_eps(LM["rms_eps"])
    fc.add_gpt2_vocab_kv(wr, vocab, "qwen2", BOS, EOS, PAD, False)
    fc.close_gguf(wr, w, [name for name, _, _ in lm_tensor_shapes(len(vocab[0]))])


def write_mmproj_gguf(path, w):
    """The keys conversion/qwenvl.py (Qwen2VLVisionModel) + MmprojModel write for Qwen2.5-VL."""
    import gguf
    wr = gguf.GGUFWriter(path, "clip")
    wr.add_name("tiny-random-qwen2.5-vl-mmproj")
    wr.add_file_type(0)
    wr.add_bool("clip.has_vision_encoder", True)
    fc.add_clip_vision_kv(wr, V)
    wr.add_array("clip.vision.image_mean", V["image_mean"])
    wr.add_array("clip.vision.image_std", V["image_std"])
    wr.add_string("clip.projector_type", "qwen2.5vl_merger")
    wr.add_bool("clip.use_silu", True)
    wr.add_uint32("clip.vision.n_wa_pattern", V["n_wa_pattern"])
    wr.add_float32("clip.vision.attention.layer_norm_epsilon", V["eps"])
    fc.close_gguf(wr, w, [name for name, _, _ in mmproj_tensor_shapes()])


# ---------------------------------------------------------------------------------------------------------------
# test images


def make_new_images():
    """name -> (file bytes, description): the images this family adds (fixtures_common.base_pattern, as
    scripts/fixtures_vision.py draws its images)."""
    arr = fc.base_pattern(rng_for(CHAT_IMAGE), 256, 144)
    return {CHAT_IMAGE: (fc.png_bytes(arr, "RGB"), "RGB 16:9: scaled down by the max-pixel budget to 196x112 "
                                                   "(merged grid 7x4, two attention windows), letterboxed by one "
                                                   "row; the chat image")}


def image_descriptions():
    d = {
        "exact_96x64.png": "RGB 96x64: min-pixel branch, scaled up to 112x84 (4x3 merged tokens), letterboxed",
        "exif_rot6_60x30.jpg": ("JPEG with EXIF Orientation 6, stored 60x30; stb ignores EXIF: processed as 60x30 -> "
                                "112x56 (4x2)"),
        "gray_70x40.png": "8-bit grayscale PNG, gray replicated into R, G, B; scaled up to 112x84 (4x3)",
        "large_160x160.png": ("RGB 160x160: max-pixel branch with the test budget, scaled down to 140x140 (5x5, four "
                              "windows, three of them partial); 168x168 (6x6) with llama.cpp's default budget"),
        "rgba_40x64.png": "RGBA PNG: stb drops alpha (colours under alpha 0 kept); scaled up to 84x112 (3x4)",
        "tall_47x120.png": "RGB portrait: the rounding branch (56x112 = exactly the minimum), 2x4, letterboxed",
        "tiny_13x9.png": "RGB 13x9: scaled up 8.6x to 112x84 (4x3)",
        "wide_100x37.png": "RGB, odd aspect: scaled up to 140x56 (5x2, two windows), letterboxed by 2 rows each side",
    }
    return d


# ---------------------------------------------------------------------------------------------------------------
# llama.cpp qwen2.5vl preprocessing, reimplemented (tools/mtmd/mtmd-image.cpp, llama.cpp 0c1e57098):
# mtmd_image_preprocessor_dyn_size with RESIZE_ALGO_BICUBIC and the default PAD_CEIL.

F32 = np.float32


def smart_resize(W, H, min_pixels, max_pixels):
    """img_tool::calc_size_preserved_ratio (align = patch * merge, no longest edge), in float32 as the C++ computes
    it. Returns ((w, h), branch)."""
    align = V["align"]
    fa = F32(align)

    def round_by(x):   # std::round(float): half away from zero (x > 0 here)
        return int(math.floor(float(F32(F32(x) / fa)) + 0.5)) * align

    def ceil_by(x):
        return int(math.ceil(float(F32(F32(x) / fa)))) * align

    def floor_by(x):
        return int(math.floor(float(F32(F32(x) / fa)))) * align

    w = max(align, round_by(W))
    h = max(align, round_by(H))
    if max_pixels > 0 and h * w > max_pixels:
        beta = np.sqrt(F32(F32(H) * F32(W)) / F32(max_pixels))
        h = max(align, floor_by(F32(H) / beta))
        w = max(align, floor_by(F32(W) / beta))
        return (w, h), "max_pixels"
    if min_pixels > 0 and h * w < min_pixels:
        beta = np.sqrt(F32(min_pixels) / F32(F32(H) * F32(W)))
        h = ceil_by(F32(H) * beta)
        w = ceil_by(F32(W) * beta)
        return (w, h), "min_pixels"
    return (w, h), "round"


def letterbox_plan(W, H, tw, th):
    """img_tool::resize with PAD_CEIL: the content size (aspect kept, ceil, capped at the target) and its offset
    in the black canvas; a plain copy when the sizes already agree."""
    if (W, H) == (tw, th):
        return (W, H), (0, 0)
    scale = min(F32(F32(tw) / F32(W)), F32(F32(th) / F32(H)))
    nw = min(int(math.ceil(float(F32(F32(W) * scale)))), tw)
    nh = min(int(math.ceil(float(F32(F32(H) * scale)))), th)
    return (nw, nh), ((tw - nw) // 2, (th - nh) // 2)


def budget_pixels(min_tokens, max_tokens):
    area = V["align"] ** 2
    return min_tokens * area, max_tokens * area


def normalize(u8):
    return fc.normalize(u8, V["image_mean"], V["image_std"])


def preprocess(rgb, min_pixels, max_pixels):
    """rgb: (H, W, 3) uint8 as stb_image decoded it. Returns the plan, the u8 canvas and its normalized pixels
    (H', W', 3) f32, HWC as clip_image_f32 holds them, and the resized content (for the Pillow check)."""
    H, W = rgb.shape[:2]
    (tw, th), branch = smart_resize(W, H, min_pixels, max_pixels)
    (nw, nh), (ox, oy) = letterbox_plan(W, H, tw, th)
    content = rgb.copy() if (nw, nh) == (W, H) else resize_pillow(rgb, nw, nh, BICUBIC)
    canvas = np.zeros((th, tw, 3), np.uint8)
    canvas[oy:oy + nh, ox:ox + nw] = content
    p, m = V["patch_size"], V["n_merge"]
    plan = {"input_size": [W, H], "smart_resize_branch": branch, "target_size": [tw, th],
            "content_size": [nw, nh], "content_offset": [ox, oy],
            "grid_thw": [1, th // p, tw // p], "merged_grid": [tw // p // m, th // p // m]}
    return plan, canvas, normalize(canvas), content


def pil_resize_check(rgb, content):
    """The bicubic resize done with Pillow, one axis at a time in llama.cpp's order (horizontal, then vertical),
    must be identical. Returns (max diff one axis at a time, max diff of Pillow's own two-axis resize)."""
    from PIL import Image
    return fc.pil_resize_diffs(rgb, content, Image.BICUBIC)


# ---------------------------------------------------------------------------------------------------------------
# the encoder's token order, windows and positions


def merge_order(gh, gw):
    """Patch indices (row-major in the gh x gw patch grid) in the order the encoder holds them: 2x2 merge blocks
    row-major, inside a block (dy, dx) row-major (clip_graph_qwen2vl's "second conv dimension" permutes)."""
    m = V["n_merge"]
    out = []
    for by in range(gh // m):
        for bx in range(gw // m):
            for dy in range(m):
                for dx in range(m):
                    out.append((by * m + dy) * gw + bx * m + dx)
    return np.array(out)


def windows_of(ph, pw):
    """llama.cpp's windows over the ph x pw merged grid (clip.cpp, PROJECTOR_TYPE_QWEN25VL inputs): squares of
    grid_window merged tokens from the top left, row-major, the last ones in a row/column partial. Returns
    (window_idx[src] = dst, inv_window_idx[dst] = src, windows [(x, y, w, h)])."""
    gwin = V["grid_window"]
    idx, inv, wins, dst = [0] * (ph * pw), [0] * (ph * pw), [], 0
    for y in range(0, ph, gwin):
        for x in range(0, pw, gwin):
            wh, ww = min(gwin, ph - y), min(gwin, pw - x)
            for dy in range(wh):
                for dx in range(ww):
                    src = (y + dy) * pw + (x + dx)
                    idx[src] = dst
                    inv[dst] = src
                    dst += 1
            wins.append((x, y, ww, wh))
    return np.array(idx), np.array(inv), wins


def llama_vision_inputs(gh, gw):
    """What clip.cpp sets as the graph's inputs for an image of gh x gw patches: the rope positions [4][n] (y, x,
    y, x) in window order, inv_window_idx, window_idx and the window mask (True = attend), in window order."""
    m = V["n_merge"]
    ph, pw = gh // m, gw // m
    idx, inv, wins = windows_of(ph, pw)
    n = gh * gw
    mpow = m * m
    pos = np.zeros((4, n), np.int64)
    ptr = 0
    for y in range(0, gh, m):
        for x in range(0, gw, m):
            for dy in range(2):
                for dx in range(2):
                    remap = idx[ptr // mpow] * mpow + ptr % mpow
                    pos[:, remap] = [y + dy, x + dx, y + dy, x + dx]
                    ptr += 1
    mask = np.zeros((n, n), bool)
    start = 0
    for (_, _, ww, wh) in wins:
        end = start + ww * wh
        mask[start * mpow:end * mpow, start * mpow:end * mpow] = True
        start = end
    return pos, inv, idx, mask, wins


# ---------------------------------------------------------------------------------------------------------------
# float64 numpy forward passes


def patches_of(pix):
    """(H, W, 3) HWC -> (gh*gw, 3*p*p): patches row-major (py, px), each flattened as (c, ky, kx) like the conv
    kernel (E, 3, p, p), which is also the layout of ggml_im2col's output rows."""
    return fc.patches_of(pix, V["patch_size"])


def vision_rope(x, ys, xs):
    """ggml_rope_multi(GGML_ROPE_TYPE_VISION, n_dims = d_head/2, sections d_head/4 x 4) as ggml-cpu computes it:
    rotary pair j rotates dims (j, j + d_head/2); pairs j < d_head/4 turn by y * base^(-4j/d_head), the others by
    x * base^(-4(j - d_head/4)/d_head) (the section's theta restarts). This is Qwen2.5-VL's VisionRotaryEmbedding
    with rotate_half. x: (n, heads, d_head)."""
    d = x.shape[-1]
    half, quarter = d // 2, d // 4
    inv = 10000.0 ** (-4.0 * np.arange(quarter) / d)
    ang = np.concatenate([ys[:, None] * inv[None, :], xs[:, None] * inv[None, :]], axis=1)   # (n, d/2)
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[..., :half], x[..., half:]
    return np.concatenate([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)


def encode_image(w, pix, emulate_ggml=False):
    """pix: (H, W, 3) float (normalized, HWC). Returns (n_merged, projection_dim) float64, merged tokens row-major.

    Computed in merge-block order with a same-window mask (attention does not care about the order of the tokens
    it sees), not in llama.cpp's window order: an independent check of its permutations.

    emulate_ggml: round where llama.cpp's CPU graph rounds to f16: ggml_conv_2d's im2col writes the patches as f16
    and the matmul with an f16 src0 converts the kernel to f16 too (products summed in f32); the merger's GELU comes
    from an f16 table."""
    p, m, e, nh, dh = V["patch_size"], V["n_merge"], V["n_embd"], V["n_head"], V["d_head"]
    H, W = pix.shape[:2]
    gh, gw = H // p, W // p
    patches = patches_of(pix)
    k0 = w["v.patch_embd.weight"].reshape(e, -1)
    k1 = w["v.patch_embd.weight.1"].reshape(e, -1)
    if emulate_ggml:
        patches, k0, k1 = f16(patches), f16(k0), f16(k1)
    h = patches @ k0.T + patches @ k1.T                      # the two temporal halves of the conv3d, one frame
    order = merge_order(gh, gw)
    h = h[order]
    ys, xs = order // gw, order % gw
    # window of each token: merge block (by, bx) -> window (by // gwin, bx // gwin)
    gwin = V["grid_window"]
    win = (ys // m // gwin) * 100000 + (xs // m // gwin)
    same_window = win[:, None] == win[None, :]
    n = len(order)
    for i in range(V["n_layer"]):
        b = f"v.blk.{i}."
        full = (i + 1) % V["n_wa_pattern"] == 0
        t = rms_norm(h, w[b + "ln1.weight"], V["eps"])
        q = (t @ w[b + "attn_q.weight"].T + w[b + "attn_q.bias"]).reshape(n, nh, dh)
        k = (t @ w[b + "attn_k.weight"].T + w[b + "attn_k.bias"]).reshape(n, nh, dh)
        v = (t @ w[b + "attn_v.weight"].T + w[b + "attn_v.bias"]).reshape(n, nh, dh)
        q, k = vision_rope(q, ys, xs), vision_rope(k, ys, xs)
        heads = []
        for hh in range(nh):
            sc = q[:, hh] @ k[:, hh].T / math.sqrt(dh)
            if not full:
                sc = np.where(same_window, sc, -np.inf)
            sc = np.exp(sc - sc.max(-1, keepdims=True))
            heads.append(sc / sc.sum(-1, keepdims=True) @ v[:, hh])
        h = h + np.concatenate(heads, -1) @ w[b + "attn_out.weight"].T + w[b + "attn_out.bias"]
        t = rms_norm(h, w[b + "ln2.weight"], V["eps"])
        g = t @ w[b + "ffn_gate.weight"].T + w[b + "ffn_gate.bias"]
        u = t @ w[b + "ffn_up.weight"].T + w[b + "ffn_up.bias"]
        h = h + (g / (1 + np.exp(-g)) * u) @ w[b + "ffn_down.weight"].T + w[b + "ffn_down.bias"]
    h = rms_norm(h, w["v.post_ln.weight"], V["eps"])                     # the merger's ln_q
    merged = h.reshape(n // (m * m), m * m * e)                          # each 2x2 block: (dy, dx) row-major
    u = gelu_tanh(merged @ w["mm.0.weight"].T + w["mm.0.bias"], emulate_ggml)
    return u @ w["mm.2.weight"].T + w["mm.2.bias"]


def mrope(x, pos4):
    """ggml_rope_multi(GGML_ROPE_TYPE_MROPE, n_dims = head_dim, sections) as ggml-cpu computes it: neox pairs
    (j, j + head_dim/2) turn by p * base^(-2j/head_dim), where p is the token's position of the section pair j
    falls in: [0, s0) t, [s0, s0+s1) section 1 (h, the row), then section 2 (w, the column), then section 3.
    x: (n, heads, head_dim); pos4: (n, 4)."""
    hd = x.shape[-1]
    half = hd // 2
    s = LM["rope_sections"]
    sec = np.zeros(half, int)
    sec[s[0]:s[0] + s[1]] = 1
    sec[s[0] + s[1]:s[0] + s[1] + s[2]] = 2
    sec[s[0] + s[1] + s[2]:] = 3
    inv = LM["rope_base"] ** (-2.0 * np.arange(half) / hd)
    p = pos4[:, sec].astype(np.float64)                                   # (n, half)
    ang = p * inv[None, :]
    c, sn = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[..., :half], x[..., half:]
    return np.concatenate([x0 * c - x1 * sn, x0 * sn + x1 * c], axis=-1)


def lm_forward(w, inputs, pos4, emulate_f16_kv=False, return_hidden=False):
    """inputs: (n, n_embd) float64 (token or image embeddings); pos4: (n, 4) M-RoPE positions. Causal in sequence
    order (llama.cpp's M-RoPE mask: position t, then (y, x) among equal t, is the same order for one image).
    Returns the logits (n, n_vocab) (and the final normed hidden states)."""
    return fc.decoder_forward(LM, w, inputs, lambda x: mrope(x, pos4), emulate_f16_kv, return_hidden)


def text_pos(p):
    return [p, p, p, 0]


def greedy_exact(w, first, pos4, n_past, n=N_GREEDY):
    """Greedy tokens (plain float64) after the prompt inputs `first` (n, n_embd) at positions pos4; generated
    tokens continue at n_past."""
    seq, pos, out = first, pos4, []
    for step in range(n):
        a = int(np.argmax(lm_forward(w, seq, pos)[-1]))
        out.append(a)
        seq = np.concatenate([seq, w["token_embd.weight"][[a]]])
        pos = np.concatenate([pos, np.array([text_pos(n_past + step)], np.int64)])
    return out


def path_inputs(w, first, pos4, n_past, path):
    """Teacher-forced inputs along `path`: the prompt, then every path token but the last."""
    seq = np.concatenate([first, w["token_embd.weight"][path[:-1]]])
    pos = np.concatenate([pos4, np.array([text_pos(n_past + i) for i in range(len(path) - 1)], np.int64)])
    return seq, pos


def path_hidden(w, first, pos4, n_past, path, emulate_f16_kv=False):
    """Final normed hidden states from which the greedy choices along `path` are made (teacher-forced)."""
    seq, pos = path_inputs(w, first, pos4, n_past, path)
    return lm_forward(w, seq, pos, emulate_f16_kv, return_hidden=True)[1][len(first) - 1:]


# ---------------------------------------------------------------------------------------------------------------
# llama.cpp via ctypes (libllama + libmtmd of llama-cpp-python)


class LlamaCpp(fc.LlamaCpp):
    """fc.LlamaCpp for Qwen2.5-VL: loads with a token budget and checks that mtmd uses M-RoPE; keeps what the
    vision graph received (`vis`) and the positions the language model's graphs received; gives the decoder
    positions of image chunks."""
    n_ctx = N_CTX

    def __init__(self):
        super().__init__()
        ggml = ctypes.CDLL(os.path.join(os.path.dirname(self.l.__file__), "lib", "libggml-base.so"))
        ggml.ggml_op_name.restype, ggml.ggml_op_name.argtypes = ctypes.c_char_p, [ctypes.c_int]
        self.op_name = lambda op: ggml.ggml_op_name(op).decode()

    def clear_capture(self):
        """Of the last encode: the im2col outputs (the f16 patches, (n_patches, 3*p*p)), the rope positions, the
        get_rows indices (inv_window_idx, then window_idx) and the soft_max masks."""
        self.vis = {"im2col": [], "rope_pos": [], "get_rows": [], "masks": []}

    def on_vision_node(self, g):
        k = 3 * V["patch_size"] ** 2
        op = self.op_name(g.op)
        if op == "IM2COL" and g.type == GGML_TYPE_F16 and g.ne[0] == k:
            a = tensor_array(g, ctypes.c_uint16, np.float16)
            self.vis["im2col"].append(a.reshape(-1, k))
        elif op == "ROPE":
            s = GgmlTensor.from_address(g.src[1])
            self.vis["rope_pos"].append(tensor_array(s, ctypes.c_int32, np.int32).reshape(4, -1))
        elif op == "GET_ROWS":
            s = GgmlTensor.from_address(g.src[1])
            self.vis["get_rows"].append(tensor_array(s, ctypes.c_int32, np.int32))
        elif op == "SOFT_MAX" and g.src[1]:
            s = GgmlTensor.from_address(g.src[1])
            assert s.type == GGML_TYPE_F32
            self.vis["masks"].append(tensor_array(s, ctypes.c_float, np.float32).reshape(s.ne[1], s.ne[0]) == 0)

    def on_lm_node(self, g):
        """Keeps the positions tensor every ROPE node of the language model reads ([4][n_tokens], section-major)."""
        if self.op_name(g.op) == "ROPE":
            s = GgmlTensor.from_address(g.src[1])
            self.lm_rope.append(tensor_array(s, ctypes.c_int32, np.int32).reshape(4, -1))

    def load(self, lm_path, mmproj_path, flash_attn_clip, max_tokens):
        # the warmup would reserve a 46x46-token graph (1288 px square); buffers are sized on the first encode
        super().load(lm_path, mmproj_path, flash_attn_clip, warmup=False, image_min_tokens=-1,
                     image_max_tokens=max_tokens)
        assert self.m.mtmd_decode_use_mrope(self.mctx)

    def new_lctx(self):
        self.lm_rope = []
        return super().new_lctx()

    def chunk_list(self, chunks):
        """[(kind, chunk, value)]: text -> token list; image -> dict(n_tokens, nx, ny, n_pos, decoder positions
        at the chunk's n_past)."""
        m = self.m
        out, n_past = [], 0
        for i in range(m.mtmd_input_chunks_size(chunks)):
            c = m.mtmd_input_chunks_get(chunks, i)
            ty = m.mtmd_input_chunk_get_type(c)
            if ty == m.MTMD_INPUT_CHUNK_TYPE_TEXT:
                toks = self.text_tokens(c)
                assert m.mtmd_input_chunk_get_n_pos(c) == len(toks)
                out.append(("text", c, toks))
            else:
                assert ty == m.MTMD_INPUT_CHUNK_TYPE_IMAGE
                it = m.mtmd_input_chunk_get_tokens_image(c)
                nt = int(m.mtmd_image_tokens_get_n_tokens(it))
                pos = (m.mtmd_decoder_pos * nt)()
                m.mtmd_helper_image_get_decoder_pos(it, n_past, pos)
                out.append(("image", c, {
                    "n_tokens": nt, "nx": int(m.mtmd_image_tokens_get_nx(it)),
                    "ny": int(m.mtmd_image_tokens_get_ny(it)), "n_pos": int(m.mtmd_input_chunk_get_n_pos(c)),
                    "n_past": n_past, "decoder_pos": [[int(q.t), int(q.x), int(q.y), int(q.z)] for q in pos]}))
                assert out[-1][2]["n_pos"] == int(m.mtmd_image_tokens_get_n_pos(it))
            n_past += int(m.mtmd_input_chunk_get_n_pos(c))
        return out

    def graph_positions(self):
        """The positions of each LM graph computed since the last call, [n_tokens][4] (t, y, x, z) each; every
        graph has 2 ROPE nodes (Q, K) a layer, all reading the same positions."""
        per = 2 * LM["n_layer"]
        assert len(self.lm_rope) % per == 0
        out = []
        for i in range(0, len(self.lm_rope), per):
            grp = self.lm_rope[i:i + per]
            assert all(np.array_equal(g, grp[0]) for g in grp)
            out.append(grp[0].T.astype(np.int64))
        self.lm_rope.clear()
        return out

    def after_decode(self):
        self.decoded_pos.append(self.graph_positions())

    def eval_and_greedy(self, chunks, n_greedy):
        """fc.LlamaCpp.eval_and_greedy, and the positions the LM graphs received: (n_past, rows, the prompt's
        positions [n][4], each evaluated greedy token's position)."""
        self.decoded_pos = []
        n_past, rows = super().eval_and_greedy(chunks, n_greedy)
        prompt_pos = np.concatenate(self.decoded_pos[0])
        step_pos = []
        for graphs in self.decoded_pos[1:]:
            (g,) = graphs
            step_pos.append(g[0].tolist())
        return n_past, rows, prompt_pos, step_pos


# ---------------------------------------------------------------------------------------------------------------


def prompt_inputs(layout, w, embd):
    """The LM inputs of a chunk layout: token embeddings for text, `embd` for the image; and the M-RoPE positions
    mtmd gives them (text: [p, p, p, 0]; image: mtmd's decoder positions (t, y, x, z)); and the final n_past."""
    parts, pos, n_past = [], [], 0
    for c in layout:
        if c["type"] == "text":
            parts.append(w["token_embd.weight"][c["tokens"]])
            pos += [text_pos(n_past + i) for i in range(len(c["tokens"]))]
            n_past += len(c["tokens"])
        else:
            parts.append(np.asarray(embd, np.float64))
            pos += c["positions"]
            n_past += c["n_pos"]
    return np.concatenate(parts), np.array(pos, np.int64), n_past


def expected_image_positions(nx, ny, pos_0):
    """mtmd_image_tokens_get_decoder_pos for MTMD_POS_TYPE_MROPE, in the LM graph's section order: t = pos_0,
    section 1 = pos_0 + row, section 2 = pos_0 + col, section 3 = 0; tokens row-major."""
    return [[pos_0, pos_0 + i // nx, pos_0 + i % nx, 0] for i in range(nx * ny)]


def check_vision_inputs(lc, name, plan):
    """llama.cpp's own vision inputs for this image equal what numpy expects."""
    _, gh, gw = plan["grid_thw"]
    pos, inv, idx, mask, wins = llama_vision_inputs(gh, gw)
    rp = lc.vis["rope_pos"]
    assert rp and all(np.array_equal(r, pos) for r in rp), f"{name}: vision rope positions differ"
    gr = lc.vis["get_rows"]
    assert len(gr) == 2 and np.array_equal(gr[0], inv) and np.array_equal(gr[1], idx), f"{name}: window permutation"
    n_windowed = sum(1 for i in range(V["n_layer"]) if (i + 1) % V["n_wa_pattern"] != 0)
    ms = lc.vis["masks"]
    assert len(ms) == n_windowed and all(np.array_equal(mk, mask) for mk in ms), f"{name}: window mask differs"
    return wins


def image_layout(lc, chunks, pix, pieces, check, name, plan):
    """Walks mtmd's chunks: the JSON layout and mtmd's embeddings of the (one) image chunk. With check, asserts
    that llama.cpp's im2col patches equal f16 of ours and that its vision inputs are numpy's."""
    layout, embd, wins = [], None, None
    for kind, c, val in lc.chunk_list(chunks):
        if kind == "text":
            layout.append(lc.text_record(val, pieces))
        else:
            assert embd is None
            nx, ny = plan["merged_grid"]
            assert (val["nx"], val["ny"], val["n_tokens"]) == (nx, ny, nx * ny), (name, val, plan)
            assert val["n_pos"] == max(nx, ny)
            # mtmd_decoder_pos is (t, x, y, z); the LM graph takes sections (t, y, x, z)
            positions = [[t, y, x, z] for t, x, y, z in val["decoder_pos"]]
            assert positions == expected_image_positions(nx, ny, val["n_past"]), f"{name}: decoder positions"
            layout.append({"type": "image", "n_tokens": val["n_tokens"], "nx": nx, "ny": ny, "n_pos": val["n_pos"],
                           "positions": positions})
            embd = lc.encode(c, val["n_tokens"])
            if check:
                ours = patches_of(pix).astype(np.float16)
                im = lc.vis["im2col"]
                assert len(im) == 2 and all(np.array_equal(g, ours) for g in im), f"{name}: pixels differ"
                wins = check_vision_inputs(lc, name, plan)
    assert embd is not None
    return layout, embd, wins


def main():
    args = fc.vision_args(__doc__, OUT, os.path.join(ROOT, ".cache", "vision-fixtures-qwen2vl"))
    import llama_cpp
    version = llama_cpp.__version__
    min_px, max_px = budget_pixels(DEFAULT_MIN_TOKENS, TEST_MAX_TOKENS)
    dmin_px, dmax_px = budget_pixels(DEFAULT_MIN_TOKENS, DEFAULT_MAX_TOKENS)

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

    # 2. images: SmolVLM's, checked against their manifest, and the new one
    with open(os.path.join(SMOLVLM_DIR, "vision.json"), encoding="utf-8") as f:
        smol = {os.path.basename(e["image"]): e for e in json.load(f)["images"]}
    images = {}   # name -> (path relative to OUT, absolute path, description)
    descs = image_descriptions()
    for name in SMOLVLM_IMAGES:
        path = os.path.join(SMOLVLM_DIR, "images", name)
        assert sha256_file(path) == smol[name]["image_sha256"], f"{name} changed since the SmolVLM fixtures"
        images[name] = ("../images/" + name, path, descs[name])
    for name, (data, desc) in make_new_images().items():
        path = os.path.join(OUT, "images", name)
        with open(path, "wb") as f:
            f.write(data)
        images[name] = ("images/" + name, path, desc)

    # 3. margin conditioning of output.weight along the chat prompt's greedy path
    lc = LlamaCpp()
    lc.load(pass1, mm_path, llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED, TEST_MAX_TOKENS)
    bm, rgb = lc.bitmap(images[CHAT_IMAGE][1])
    plan, _, pix, _ = preprocess(rgb, min_px, max_px)
    chunks = lc.tokenize(CHAT_PROMPT, bm)
    clayout, cembd, _ = image_layout(lc, chunks, pix, {}, False, CHAT_IMAGE, plan)
    lc.m.mtmd_input_chunks_free(chunks)
    lc.m.mtmd_bitmap_free(bm)
    lc.free()
    cref = encode_image(wv64, pix)
    w064 = {k: v.astype(np.float64) for k, v in w0.items()}
    first_ref, cpos, cn_past = prompt_inputs(clayout, w064, cref)
    first_mtmd = prompt_inputs(clayout, w064, cembd)[0]
    path = greedy_exact(w064, first_ref, cpos, cn_past)
    hidden_sets = [path_hidden(w064, first_ref, cpos, cn_past, path),
                   path_hidden(w064, first_mtmd, cpos, cn_past, path),
                   path_hidden(w064, first_mtmd, cpos, cn_past, path, emulate_f16_kv=True)]
    wl, change, min_margin = fc.condition_output(w0, path, hidden_sets, MARGIN)
    wl64 = {k: v.astype(np.float64) for k, v in wl.items()}
    assert greedy_exact(wl64, first_ref, cpos, cn_past) == path
    conditioning = fc.conditioning_record(path, change, min_margin, MARGIN)
    write_lm_gguf(lm_path, wl, vocab)

    # 4. llama.cpp references and the numpy checks, image by image (test budget)
    lc = LlamaCpp()
    lc.load(lm_path, mm_path, llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED, TEST_MAX_TOKENS)
    assert any(f"image_max_pixels:   {max_px} (custom value)" in x for x in lc.log), "budget not applied"
    assert any(f"image_min_pixels:   {min_px}" in x for x in lc.log)
    entries_json, pieces, chat = [], {}, None
    for name in sorted(images):
        rel, path, desc = images[name]
        with open(path, "rb") as f:
            data = f.read()
        bm, rgb = lc.bitmap(path)
        stem = name.rsplit(".", 1)[0]
        if name.endswith(".png"):
            from PIL import Image
            expect = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            assert np.array_equal(rgb, expect), f"{name}: stb decode differs from the PNG's RGB"
            decoded = {"note": "identical to the PNG's RGB samples (alpha dropped, gray replicated); not stored"}
        else:
            decoded = fc.write_bin(OUT, f"ref/{stem}.rgb.u8", rgb, np.uint8)
            smol_rgb = np.fromfile(os.path.join(SMOLVLM_DIR, smol[name]["decoded_rgb"]["file"]), np.uint8)
            assert np.array_equal(smol_rgb, rgb.ravel()), f"{name}: stb decodes it differently than before"
            decoded["note"] = ("stb_image's decode (H, W, 3), the stored raster: stb ignores the EXIF orientation "
                               "(same bytes as ../ref/exif_rot6_60x30.rgb.u8)")

        plan, canvas, pix, content = preprocess(rgb, min_px, max_px)
        pil_axes, pil_both = pil_resize_check(rgb, content)
        assert pil_axes == 0, f"{name}: numpy bicubic differs from Pillow's (one axis at a time) by {pil_axes}"
        chunks = lc.tokenize(MARKER, bm)
        layout, embd, wins = image_layout(lc, chunks, pix, pieces, True, name, plan)
        lc.m.mtmd_input_chunks_free(chunks)

        ref = encode_image(wv64, pix)
        ref_emul = encode_image(wv64, pix, emulate_ggml=True)
        d_plain, d_emul = fc.embd_diffs(embd, ref, ref_emul)
        print(f"{name}: {plan['input_size']} -> {plan['target_size']} ({plan['smart_resize_branch']}, content "
              f"{plan['content_size']} at {plan['content_offset']}), merged {plan['merged_grid']}, {len(wins)} windows; "
              f"max |mtmd - numpy f64| {d_plain:.3g} (f16 roundings emulated: {d_emul:.3g}); |embd| max "
              f"{np.abs(embd).max():.3g}; Pillow two-axis differs by {pil_both}", file=sys.stderr)
        fc.check_embd_diffs(name, d_plain, d_emul, TOL_EMBD, TOL_EMBD_EMULATED)

        n_text = sum(len(x["tokens"]) for x in layout if x["type"] == "text")
        n_img = int(embd.shape[0])
        img_chunk = next(x for x in layout if x["type"] == "image")
        entries_json.append({
            "image": rel, "description": desc, "image_sha256": sha256_bytes(data),
            "decoded_rgb": decoded,
            "preprocess": plan,
            "pixels": fc.write_bin(OUT, f"ref/{stem}.pixels.f32", pix, "<f4"),
            "pixels_checked_against_llama_cpp_im2col": True,
            "pillow_two_axis_resize_max_diff": pil_both,
            "windows": [list(x) for x in wins],
            "prompt": MARKER, "add_special": True, "parse_special": True,
            "chunks": layout,
            "n_image_tokens": n_img,
            "n_image_positions": img_chunk["n_pos"],
            "n_text_tokens": n_text,
            "n_tokens_total": n_img + n_text,
            "n_positions_total": img_chunk["n_pos"] + n_text,
            **fc.embd_records(OUT, stem, embd, ref, d_plain, d_emul),
        })

        if name == CHAT_IMAGE:
            chunks = lc.tokenize(CHAT_PROMPT, bm)
            clayout2, cembd2, _ = image_layout(lc, chunks, pix, pieces, True, name, plan)
            assert clayout2 == clayout and np.array_equal(cembd2, embd)
            n_past, rows, graph_pos, step_pos = lc.eval_and_greedy(chunks, N_GREEDY)
            lc.m.mtmd_input_chunks_free(chunks)
            first_ref, cpos, cn_past = prompt_inputs(clayout, wl64, ref)
            first_mtmd = prompt_inputs(clayout, wl64, embd)[0]
            assert n_past == cn_past
            assert np.array_equal(graph_pos, cpos), "the LM graph's positions differ from mtmd's layout"
            assert step_pos == [text_pos(n_past + i) for i in range(N_GREEDY - 1)], step_pos
            rows = np.asarray(rows)
            greedy = [int(np.argmax(r)) for r in rows]

            def path_logits(first, emul):  # teacher-forced along llama.cpp's greedy path
                seq, pos = path_inputs(wl64, first, cpos, n_past, greedy)
                return lm_forward(wl64, seq, pos, emulate_f16_kv=emul)[len(first) - 1:]
            ex = path_logits(first_ref, False)
            ex_greedy = greedy_exact(wl64, first_ref, cpos, n_past)
            chat = {
                "image": rel, "prompt": CHAT_PROMPT, "add_special": True, "parse_special": True,
                "chunks": clayout, "n_tokens": len(cpos), "n_past": n_past,
                "positions": cpos.tolist(),
                "positions_checked_against_llama_cpp_graph": True,
                **fc.chat_logits_record(f"chat: {len(cpos)} tokens, n_past {n_past}", lc, rows, greedy, ex, ex_greedy,
                                        path_logits, first_mtmd, TOL_LOGITS,
                                        {"positions": [text_pos(n_past + i) for i in range(N_GREEDY)]}),
            }
        lc.m.mtmd_bitmap_free(bm)
    lc.free()

    # 5. llama.cpp's default budget (8 to 4096 tokens): layouts, pixels checked, embeddings compared, not stored
    lc = LlamaCpp()
    lc.load(lm_path, mm_path, llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED, -1)
    assert any(f"image_max_pixels:   {dmax_px}" in x for x in lc.log), "default budget"
    for entry in entries_json:
        name = os.path.basename(entry["image"])
        bm, rgb = lc.bitmap(images[name][1])
        plan, _, pix, _ = preprocess(rgb, dmin_px, dmax_px)
        chunks = lc.tokenize(MARKER, bm)
        layout, embd, wins = image_layout(lc, chunks, pix, pieces, True, name, plan)
        ref = encode_image(wv64, pix)
        d = float(np.abs(embd - ref).max())
        if d > TOL_EMBD:
            raise RuntimeError(f"{name} (default budget): numpy embeddings disagree with mtmd by {d}")
        img_chunk = next(x for x in layout if x["type"] == "image")
        entry["default_budget"] = {"preprocess": plan, "windows": [list(x) for x in wins],
                                   "n_image_tokens": img_chunk["n_tokens"], "n_image_positions": img_chunk["n_pos"],
                                   "pixels_checked_against_llama_cpp_im2col": True,
                                   "max_abs_mtmd_vs_numpy": sig(d, 3)}
        lc.m.mtmd_input_chunks_free(chunks)
        lc.m.mtmd_bitmap_free(bm)
    lc.free()

    # 6. llama.cpp with the clip flash-attention setting left at its default (auto -> enabled on CPU), on record
    lc = LlamaCpp()
    lc.load(lm_path, mm_path, llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO, TEST_MAX_TOKENS)
    fa = []
    for entry in entries_json:
        name = os.path.basename(entry["image"])
        bm, rgb = lc.bitmap(images[name][1])
        plan, _, pix, _ = preprocess(rgb, min_px, max_px)
        chunks = lc.tokenize(MARKER, bm)
        _, embd, _ = image_layout(lc, chunks, pix, {}, False, name, plan)
        fa_enabled = any("flash attention is enabled" in x for x in lc.log)
        entry["flash_attn_auto"] = fc.flash_attn_record(OUT, entry, embd, fa_enabled)
        fa.append(fa_enabled)
        lc.m.mtmd_input_chunks_free(chunks)
        lc.m.mtmd_bitmap_free(bm)
    lc.free()

    hp = dict(V, image_min_pixels_default=dmin_px, image_max_pixels_default=dmax_px,
              image_min_pixels=min_px, image_max_pixels=max_px)
    fc.write_manifest(
        os.path.join(OUT, "qwen2vl.json"), "scripts/fixtures_vision_qwen2vl.py",
        reference=fc.reference_record(
            version, {"use_gpu": False, "n_threads": 2, "flash_attn_type": "disabled", "warmup": False,
                      "image_min_tokens": -1, "image_max_tokens": TEST_MAX_TOKENS},
            "mtmd_encode_chunk + mtmd_get_output_embd",
            more_mtmd={"mtmd_context_params_default_budget": {"image_min_tokens": -1, "image_max_tokens": -1}},
            more={"positions": ("image: mtmd_helper_image_get_decoder_pos; chat: also the positions tensor the "
                                "language model's ROPE nodes read, captured with llama_context_params.cb_eval")},
            n_ctx=N_CTX),
        lm=fc.lm_record(lm_path, dict(LM, n_vocab=n_vocab),
                        {"seed": "numpy default_rng(zlib.crc32(b'qwen2vl-tiny-lm'))", "std": LM_STD,
                         "bias_std": BIAS_STD, "norm_weights": f"1 + N(0, {NORM_STD})", "conditioning": conditioning},
                        tokens, BOS, EOS, PAD),
        mmproj=fc.mmproj_record(mm_path, hp, "qwen2vl-tiny-mmproj", mmproj_tensor_shapes()),
        pieces=pieces,
        binary_files=("raw, no header, C order, little-endian; shape and dtype given next to each file name. "
                      "decoded_rgb (JPEG only): (H, W, 3) u8 as stb_image returned it. pixels: (H', W', 3) f32, "
                      "the letterboxed canvas normalized, HWC interleaved RGB exactly as clip_image_f32 holds it "
                      "(llama.cpp makes it planar CHW for the convs). embd_*: (n_image_tokens, n_embd_text) f32, "
                      "merged tokens row-major."),
        images=entries_json, chat=chat)


if __name__ == "__main__":
    main()
