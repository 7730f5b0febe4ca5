#!/usr/bin/env python3
"""Make tests/vision-fixtures/types/: the tiny SmolVLM projector (mmproj) of tests/vision-fixtures stored in F16
and in Q8_0, with references for some of the test images.

The two files are made from `smolvlm-tiny-mmproj-f32.gguf` (scripts/fixtures_vision.py) as llama.cpp's
converter (`convert_hf_to_gguf.py --outtype f16 / q8_0`, llama.cpp 0c1e57098, `conversion/base.py` and
`conversion/smolvlm.py`) types an idefics3 projector:

  * the 2-D weight matrices (`v.blk.*.attn_{q,k,v,out}.weight`, `v.blk.*.ffn_{up,down}.weight`,
    `mm.model.fc.weight`): F16, resp. Q8_0 (gguf-py's `gguf.quants.quantize`, as the converter calls it);
  * `v.patch_embd.weight` and `v.position_embd.weight`: **F32** in both. SmolVLMModel.tensor_force_quant
    forces every HF tensor with `.embeddings.` in its name to F32, before MmprojModel's rule (patch_embd F16
    only for `--outtype f16`) and the base rule (V_ENC_EMBD_POS always F32) are reached;
  * every 1-D tensor (norms, biases): F32 (the converter's `n_dims <= 1` rule);
  * every KV copied from the F32 file, in its order and with its value type, except `general.file_type`:
    1 (MOSTLY_F16), resp. 7 (MOSTLY_Q8_0), what the converter writes for those output types.

References, for some of the test images, from llama.cpp's own preprocessed tiles (`ref/<stem>.pixels.f32`):

  (a) `embd_ref`: a float64 numpy forward pass (fixtures_vision.encode_tile, no rounding) with each variant's
      weights **dequantized** (`gguf.quants.dequantize`): the exact result for the weights in the file;
  (b) `embd_mtmd`: llama.cpp mtmd's embeddings of the variant (libmtmd of llama-cpp-python 0.3.36, CPU, 2 threads,
      clip flash attention disabled, loaded with the variant and the tiny LM; mtmd_encode_chunk per image chunk,
      as scripts/fixtures_vision.py does). The ViT's im2col input is checked against the stored pixels (f16).

ggml's CPU matmul converts the activations to the weight's dot type: f16 for F16 weights, Q8_0 blocks (scale
f16, 32 int8) for Q8_0 weights, so (b) differs from (a) more than for F32. The script checks this matmul by
matmul: an eval callback sees every GGML_OP_MUL_MAT on a weight of the file while mtmd encodes, and its output
must equal float64 (its own input, rounded that way) x (the dequantized weight) within TOL_TYPED_MATMUL. It
also runs the whole float64 pass with those roundings emulated (and ggml's f16 patches, kernel and GELU table)
and records how many entries that reproduces to 1e-5 (the others differ after an f16 or 8-bit rounding that
flips on an f32-vs-f64 difference). It fails if mtmd is farther than TOL_MTMD from (a).

Deterministic: a second run gives byte-identical files. Requires the bench venv of scripts/fixtures_vision.py:

    .cache/bench/venv/bin/python scripts/fixtures_vision_types.py

Helpers it shares with the other generators (sha256, JSON, GGUF writing, f16 / GELU-table roundings, the ctypes
libmtmd wrapper) are in scripts/fixtures_common.py.
"""
import ctypes
import importlib.metadata
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures_common as fc  # noqa: E402
import fixtures_vision as fv  # noqa: E402  (its main() runs only as a script)
from fixtures_common import GGML_TYPE_F32, GgmlTensor, f16, sha256_file, sig  # noqa: E402

BASE = fv.OUT                                   # tests/vision-fixtures
OUT = os.path.join(BASE, "types")
SOURCE = fv.MMPROJ_FILE

IMAGES = ["large_160x160.png", "tall_47x120.png", "wide_100x37.png"]

VARIANTS = [
    # name, file, matrix type, general.file_type (gguf.LlamaFileType)
    ("f16", "smolvlm-tiny-mmproj-f16.gguf", "F16", 1),
    ("q8_0", "smolvlm-tiny-mmproj-q8_0.gguf", "Q8_0", 7),
]

MATRIX_SUFFIXES = ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_out.weight", "ffn_up.weight",
                   "ffn_down.weight")

# The script fails if mtmd is farther than this from the exact reference,
TOL_MTMD = {"f16": 5e-3, "q8_0": 6e-2}
# or if one of mtmd's matmuls on a typed weight is farther than this from its emulation (f32 sums: ~1e-6).
TOL_TYPED_MATMUL = 1e-5
# The end-to-end emulation: an entry counts as reproduced within this.
EMULATED_SAME = 1e-5


def write_bin(rel, arr):
    return fc.write_bin(BASE, rel, arr, "<f4")


def read_f32(rel, shape):
    return np.fromfile(os.path.join(BASE, rel), "<f4").reshape(shape)


# ---------------------------------------------------------------------------------------------------------------
# the typed files


def target_type(name, n_dims, matrix_type):
    """The GGML type llama.cpp's converter gives this tensor (see the module doc)."""
    import gguf
    if n_dims <= 1:
        return gguf.GGMLQuantizationType.F32
    if name in ("v.patch_embd.weight", "v.position_embd.weight"):  # HF `embeddings.*`: SmolVLM forces F32
        return gguf.GGMLQuantizationType.F32
    if name == "mm.model.fc.weight" or name.startswith("v.blk.") and name.endswith(MATRIX_SUFFIXES):
        return gguf.GGMLQuantizationType[matrix_type]
    raise ValueError(f"no rule for {name}")


def write_variant(src, path, matrix_type, file_type):
    """Writes the variant; returns {name: float64 weights as the file holds them (dequantized)}."""
    import gguf
    wr = gguf.GGUFWriter(path, src.fields["general.architecture"].contents())
    for f in src.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        vtype = f.types[0]
        sub = f.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        val = file_type if f.name == "general.file_type" else f.contents()
        wr.add_key_value(f.name, val, vtype, sub)
    weights = {}
    for t in src.tensors:
        data = np.asarray(t.data)                 # numpy shape = reversed ne
        assert t.tensor_type == gguf.GGMLQuantizationType.F32 and data.dtype == np.float32
        qtype = target_type(t.name, len(data.shape), matrix_type)
        q = gguf.quants.quantize(data, qtype)
        wr.add_tensor(t.name, q, raw_dtype=qtype)
        weights[t.name] = gguf.quants.dequantize(q, qtype).astype(np.float64).reshape(data.shape)
    fc.close_gguf(wr)
    return weights


def check_variant(src, path, matrix_type, file_type, weights):
    """Reads the file back: same KVs (bytes, order) but general.file_type, the intended types, same weights."""
    import gguf
    r = gguf.GGUFReader(path)
    a = [f for f in src.fields.values() if not f.name.startswith("GGUF.")]
    b = [f for f in r.fields.values() if not f.name.startswith("GGUF.")]
    assert [f.name for f in a] == [f.name for f in b], "KV order differs"
    for fa, fb in zip(a, b):
        assert fa.types == fb.types, fa.name
        if fa.name == "general.file_type":
            assert fb.contents() == file_type
        else:
            assert b"".join(bytes(p) for p in fa.parts) == b"".join(bytes(p) for p in fb.parts), fa.name
    assert [t.name for t in src.tensors] == [t.name for t in r.tensors]
    for ta, tb in zip(src.tensors, r.tensors):
        assert list(ta.shape) == list(tb.shape), ta.name
        assert tb.tensor_type == target_type(ta.name, len(np.asarray(ta.data).shape), matrix_type), ta.name
        back = gguf.quants.dequantize(np.asarray(tb.data), tb.tensor_type).astype(np.float64)
        assert np.array_equal(back.reshape(weights[ta.name].shape), weights[ta.name]), ta.name
    return [[t.name, t.tensor_type.name, [int(d) for d in t.shape]] for t in r.tensors]


# ---------------------------------------------------------------------------------------------------------------
# the float64 forward pass with ggml's CPU roundings emulated (a diagnostic of the mtmd gap)


def f16_of_f32(x):
    return f16(x.astype(np.float32))


def q8_0_activations(x):
    """ggml-cpu's quantize_row_q8_0 (x86, AVX2 path) of each row, in blocks of 32 along the last axis, dequantized:
    amax in f32, id = 127 / amax (f32), qs = round-half-even(x * id) (f32 product), the block's scale d = amax / 127
    stored, and used in the dot product, as f16."""
    x32 = x.astype(np.float32)
    blocks = x32.reshape(x.shape[:-1] + (-1, 32))
    amax = np.abs(blocks).max(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    qs = np.rint((blocks * inv).astype(np.float32))
    d16 = (amax / np.float32(127)).astype(np.float16).astype(np.float64)
    return (qs.astype(np.float64) * d16).reshape(x.shape)


def encode_tile_ggml(w, pix, matrix_type):
    """fv.encode_tile with emulate_ggml (f16 patches and kernel, GELU table), and each matmul with a typed weight
    fed activations rounded as ggml's CPU matmul does (f16 for F16, Q8_0 blocks for Q8_0)."""
    act = f16_of_f32 if matrix_type == "F16" else q8_0_activations
    V = fv.V
    n, e, s, nh = V["n_patches_side"], V["n_embd"], V["scale_factor"], V["n_head"]
    dh = e // nh
    patches = f16(fv.patches_of(pix))
    kernel = f16(w["v.patch_embd.weight"].reshape(e, -1))
    h = patches @ kernel.T + w["v.patch_embd.bias"] + w["v.position_embd.weight"]

    def lin(x, name):
        return act(x) @ w[name + ".weight"].T + w[name + ".bias"]
    for i in range(V["n_layer"]):
        b = f"v.blk.{i}."
        t = fc.layer_norm(h, w[b + "ln1.weight"], w[b + "ln1.bias"], V["eps"])
        q, k, v = (lin(t, b + x).reshape(-1, nh, dh) for x in ("attn_q", "attn_k", "attn_v"))
        heads = []
        for hh in range(nh):
            sc = q[:, hh] @ k[:, hh].T / np.sqrt(dh)
            sc = np.exp(sc - sc.max(-1, keepdims=True))
            heads.append(sc / sc.sum(-1, keepdims=True) @ v[:, hh])
        h = h + lin(np.concatenate(heads, -1), b + "attn_out")
        t = fc.layer_norm(h, w[b + "ln2.weight"], w[b + "ln2.bias"], V["eps"])
        h = h + lin(fc.gelu_tanh(lin(t, b + "ffn_up"), emulate_f16=True), b + "ffn_down")
    h = fc.layer_norm(h, w["v.post_ln.weight"], w["v.post_ln.bias"], V["eps"])
    g = h.reshape(n // s, s, n // s, s, e)
    merged = g.transpose(0, 2, 1, 3, 4).reshape((n // s) ** 2, s * s * e)
    return act(merged) @ w["mm.model.fc.weight"].T


# ---------------------------------------------------------------------------------------------------------------
# llama.cpp, with every matmul on a typed weight checked against its emulation


GGML_OP_MUL_MAT = 29     # enum ggml_op, llama.cpp 0c1e57098


class TypedMatmulCheck(fv.LlamaCpp):
    """fv.LlamaCpp (which keeps the im2col patches) whose eval callback also checks, for every GGML_OP_MUL_MAT whose
    src0 is a weight of the file, that ggml's output equals float64 (its own input activations, rounded as `act`)
    x (the dequantized weight).
    `worst[name]` = max |difference|, `checked` = how many such matmuls were seen."""

    def __init__(self, weights, act):
        super().__init__()
        self.weights, self.act = weights, act
        self.worst, self.checked, self.skipped = {}, 0, 0

    @staticmethod
    def _f32(g):
        ne, nb = list(g.ne), list(g.nb)
        n = ne[0] * ne[1] * ne[2] * ne[3]
        if g.type != GGML_TYPE_F32 or nb[0] != 4 or nb[1] != 4 * ne[0] or nb[2] != nb[1] * ne[1] \
                or nb[3] != nb[2] * ne[2] or not g.data:
            return None
        return fc.tensor_array(g, ctypes.c_float, np.float32).astype(np.float64).reshape(n // ne[0], ne[0])

    def on_vision_node(self, g):
        super().on_vision_node(g)
        if g.op == GGML_OP_MUL_MAT and g.src[0] and g.src[1]:
            name = GgmlTensor.from_address(g.src[0]).name.decode()
            if name in self.weights:
                x, y = self._f32(GgmlTensor.from_address(g.src[1])), self._f32(g)
                if x is None or y is None:
                    self.skipped += 1
                else:
                    d = float(np.abs(self.act(x) @ self.weights[name].T - y).max())
                    self.worst[name] = max(self.worst.get(name, 0.0), d)
                    self.checked += 1


def main():
    import gguf
    import llama_cpp
    os.makedirs(os.path.join(OUT, "ref"), exist_ok=True)
    with open(os.path.join(BASE, "vision.json"), encoding="utf-8") as f:
        vision = json.load(f)
    src_path = os.path.join(BASE, SOURCE)
    assert sha256_file(src_path) == vision["mmproj"]["sha256"], "the F32 projector is not the one vision.json names"
    lm_path = os.path.join(BASE, vision["lm"]["file"])
    assert sha256_file(lm_path) == vision["lm"]["sha256"]
    src = gguf.GGUFReader(src_path)
    w32 = {t.name: np.asarray(t.data).astype(np.float64) for t in src.tensors}
    S = fv.V["image_size"]

    # the test images: llama.cpp's stored tiles and the F32 projector's exact embeddings (for the record)
    images = []
    for name in IMAGES:
        entry = next(e for e in vision["images"] if e["image"] == f"images/{name}")
        px = entry["pixels"]
        assert sha256_file(os.path.join(BASE, px["file"])) == px["sha256"]
        pixels = read_f32(px["file"], px["shape"])
        assert pixels.shape[1:] == (S, S, 3)
        ref32 = read_f32(entry["embd_numpy_f64"]["file"], entry["embd_numpy_f64"]["shape"])
        images.append({"name": name, "stem": name.rsplit(".", 1)[0], "entry": entry, "pixels": pixels,
                       "ref_f32_model": ref32})

    variants = []
    for vname, vfile, mtype, ftype in VARIANTS:
        path = os.path.join(OUT, vfile)
        wq = write_variant(src, path, mtype, ftype)
        tensors = check_variant(src, path, mtype, ftype, wq)
        weight_err = {n: sig(float(np.abs(wq[n] - w32[n]).max()), 3)
                      for n in w32 if not np.array_equal(wq[n], w32[n])}

        act = f16_of_f32 if mtype == "F16" else q8_0_activations
        lc = TypedMatmulCheck({n: v.reshape(v.shape[0], -1) for n, v in wq.items()}, act)
        lc.load(lm_path, path, llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        out_images = []
        for im in images:
            name, stem, entry, pixels = im["name"], im["stem"], im["entry"], im["pixels"]
            ents = [(role, None, p) for role, p in zip(entry["entry_roles"], pixels)]
            bm, _ = lc.bitmap(os.path.join(BASE, entry["image"]))
            chunks = lc.tokenize(fv.MARKER, bm)
            layout, mtmd = fv.image_layout(lc, chunks, ents, {}, True, name)  # asserts im2col == f16(pixels)
            lc.m.mtmd_input_chunks_free(chunks)
            lc.m.mtmd_bitmap_free(bm)
            assert layout == entry["chunks"], f"{name}: chunk layout differs from vision.json"
            n_tok = fv.V["tokens_per_tile"]
            ref = np.concatenate([fv.encode_tile(wq, p) for p in pixels])
            emul = np.concatenate([encode_tile_ggml(wq, p, mtype) for p in pixels])
            d_plain = float(np.abs(mtmd - ref).max())
            d_emul = np.abs(mtmd - emul).reshape(len(pixels), n_tok, -1).max(axis=(1, 2))
            n_same = int((d_emul <= EMULATED_SAME).sum())
            d_model = float(np.abs(ref - im["ref_f32_model"]).max())
            print(f"{vname} {name}: {len(pixels)} entries; max |mtmd - f64| {d_plain:.3g}; ggml's roundings emulated: "
                  f"{n_same} entries within {EMULATED_SAME:g}, max {d_emul.max():.3g}; max |f64 of this variant - "
                  f"f64 of the F32 projector| {d_model:.3g}", file=sys.stderr)
            if d_plain > TOL_MTMD[vname]:
                raise RuntimeError(f"{vname} {name}: mtmd disagrees with numpy by {d_plain}")
            out_images.append({
                "image": entry["image"],
                "pixels": entry["pixels"],
                "n_entries": len(pixels),
                "entry_roles": entry["entry_roles"],
                "embd_ref": write_bin(f"types/ref/{stem}.{vname}.embd_ref.f32", ref),
                "embd_mtmd": write_bin(f"types/ref/{stem}.{vname}.embd.f32", mtmd),
                "max_abs_mtmd_vs_ref": sig(d_plain, 3),
                "ggml_roundings_emulated": {
                    "entries_within_1e-5": n_same,
                    "max_abs_per_entry": [sig(float(x), 2) for x in d_emul]},
                "max_abs_ref_vs_f32_projector_ref": sig(d_model, 3),
                "max_abs_embd": sig(float(np.abs(ref).max()), 4),
            })
        n_matrices = sum(1 for n in wq if target_type(n, wq[n].ndim, mtype).name == mtype)
        expect = n_matrices * sum(len(im["pixels"]) for im in images)
        worst = max(lc.worst.values())
        print(f"{vname}: {lc.checked} typed matmuls checked ({lc.skipped} skipped), max |ggml - emulation| "
              f"{worst:.3g}", file=sys.stderr)
        if lc.checked != expect or lc.skipped or len(lc.worst) != n_matrices or worst > TOL_TYPED_MATMUL:
            raise RuntimeError(f"{vname}: typed matmul check: {lc.checked} of {expect}, {lc.skipped} skipped, "
                               f"{lc.worst}")
        lc.free()
        variants.append({
            "name": vname,
            "file": f"types/{vfile}",
            "sha256": sha256_file(path),
            "size_bytes": os.path.getsize(path),
            "general.file_type": ftype,
            "matrix_type": mtype,
            "tensors": tensors,
            "max_abs_weight_change_vs_f32": weight_err,
            "typed_matmuls_in_llama_cpp": {
                "checked": lc.checked,
                "note": ("every GGML_OP_MUL_MAT on a weight of the file, seen in an eval callback while encoding "
                         "these images: its output vs float64 (its input activations rounded to the weight's dot "
                         "type: " + ("f16" if mtype == "F16" else "Q8_0 blocks, scale f16") + ") x the "
                         "dequantized weight"),
                "max_abs": sig(worst, 3)},
            "images": out_images,
        })

    out = {
        "schema_version": 1,
        "generator": "scripts/fixtures_vision_types.py",
        "paths": "relative to tests/vision-fixtures",
        "source": {"file": SOURCE, "sha256": vision["mmproj"]["sha256"]},
        "lm": {"file": vision["lm"]["file"], "sha256": vision["lm"]["sha256"]},
        "reference": {
            "llama_cpp_python": llama_cpp.__version__,
            "llama_cpp_commit": vision["reference"]["llama_cpp_commit"],
            "gguf_py": importlib.metadata.version("gguf"),
            "numpy": np.__version__,
            "mtmd_context_params": vision["reference"]["mtmd_context_params"],
            "embeddings": vision["reference"]["embeddings"],
        },
        "conversion": {
            "matrices": ("v.blk.*.attn_{q,k,v,out}.weight, v.blk.*.ffn_{up,down}.weight, mm.model.fc.weight: the "
                         "variant's type, gguf.quants.quantize of the F32 values"),
            "embeddings": ("v.patch_embd.weight, v.position_embd.weight: F32 (convert_hf_to_gguf: SmolVLMModel "
                           "forces HF '.embeddings.' tensors to F32)"),
            "vectors": "every 1-D tensor (norms, biases): F32",
            "kv": "copied from the F32 file (order, types, values) except general.file_type",
        },
        "binary_files": ("raw, no header, C order, f32 little-endian. pixels: (n_entries, S, S, 3), llama.cpp's "
                         "preprocessed tiles in prompt order (vision.json's ref/<stem>.pixels.f32). embd_ref: float64 numpy forward pass "
                         "with the variant's dequantized weights, written as f32. embd_mtmd: llama.cpp mtmd's "
                         "embeddings of the variant. Both (n_entries * 16, 128), image chunks in prompt order."),
        "variants": variants,
    }
    fc.write_json(os.path.join(OUT, "types.json"), out)


if __name__ == "__main__":
    main()
