#!/usr/bin/env python3
"""Generate the burrow-gguf test fixtures in tests/gguf-fixtures/.

Requires the PyPI packages `gguf` 0.19.0 and numpy, installed into the Python that runs this script:

    pip install gguf==0.19.0 numpy
    python3 scripts/gguf_make_fixtures.py [--shared /work/shared]

For every ggml type that burrow-gguf dequantizes it writes `<type>.gguf` (a few tensors of several shapes plus
metadata of every GGUF value type) and `<type>.f32`, the tensors dequantized by `gguf.quants.dequantize`
(little-endian float32, all tensors concatenated in file order). `manifest.json` lists, per file, the tensor
infos as read back by `gguf.GGUFReader` (an independent parser) and the metadata that was written.

`gguf.quants.quantize` in 0.19.0 cannot quantize the K-quants, so Q4_K, Q5_K and Q6_K tensors are rows copied
from the llama.cpp-quantized fixtures in shared/fixtures (llama-q4_k_m.gguf, llama-q5_k_m.gguf), and Q2_K, Q3_K,
IQ4_NL and IQ4_XS tensors are rows copied from the llama.cpp-quantized files in tests/quant-fixtures (made by
scripts/fixtures_quant_types.py; --quant-fixtures to read them elsewhere).

The SmolLM2 tensor table (smollm2_tensors.tsv, smollm2_summary.json) is copied from
shared/golden/smollm2/gguf_metadata.json, which llama.cpp produced.
"""
import argparse
import json
import os
import struct

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType as V
from gguf.quants import dequantize, quantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "gguf-fixtures")
SEED = 20240607

# Metadata of every value type, with edge values. Each entry: key, GGUF value type, value, array element type.
METADATA = [
    ("test.u8", V.UINT8, 255, None),
    ("test.i8", V.INT8, -128, None),
    ("test.u16", V.UINT16, 65535, None),
    ("test.i16", V.INT16, -32768, None),
    ("test.u32", V.UINT32, 4294967295, None),
    ("test.i32", V.INT32, -2147483648, None),
    ("test.u64", V.UINT64, 2**64 - 1, None),
    ("test.i64", V.INT64, -(2**63), None),
    ("test.f32", V.FLOAT32, 0.1, None),
    ("test.f64", V.FLOAT64, 2.718281828459045, None),
    ("test.bool_true", V.BOOL, True, None),
    ("test.bool_false", V.BOOL, False, None),
    ("test.string", V.STRING, "héllo wörld — 日本語 🦀", None),
    ("test.empty_string", V.STRING, "", None),
    ("test.arr.u8", V.ARRAY, [0, 1, 255], V.UINT8),
    ("test.arr.i8", V.ARRAY, [-128, 0, 127], V.INT8),
    ("test.arr.u16", V.ARRAY, [0, 65535], V.UINT16),
    ("test.arr.i16", V.ARRAY, [-32768, 32767], V.INT16),
    ("test.arr.u32", V.ARRAY, [0, 4294967295], V.UINT32),
    ("test.arr.i32", V.ARRAY, [-2147483648, 2147483647, 5], V.INT32),
    ("test.arr.u64", V.ARRAY, [0, 2**64 - 1], V.UINT64),
    ("test.arr.i64", V.ARRAY, [-(2**63), 2**63 - 1], V.INT64),
    ("test.arr.f32", V.ARRAY, [0.5, -1.25, 1e-30], V.FLOAT32),
    ("test.arr.f64", V.ARRAY, [0.1, -1e300], V.FLOAT64),
    ("test.arr.bool", V.ARRAY, [True, False, True], V.BOOL),
    ("test.arr.string", V.ARRAY, ["a", "", "ünïcödé ✓", "<|im_start|>"], V.STRING),
    ("test.arr.nested_i32", V.ARRAY, [[1, 2, 3], [4], [-5, 6]], V.ARRAY),
    ("test.arr.nested_string", V.ARRAY, [["x", "y"], ["ζ"]], V.ARRAY),
    ("test.arr.nested3", V.ARRAY, [[[1], [2, 3]], [[4]]], V.ARRAY),
]

ARCH = "burrowtest"


def typed_json(vtype, value):
    """The value as {"t": GGUF type name, "v": ...}; nested arrays infer their element type like GGUFWriter."""
    if vtype == V.ARRAY:
        raise AssertionError("use array_json")
    if vtype == V.FLOAT32:
        value = float(np.float32(value))  # the exact f32 that is stored
    return {"t": vtype.name, "v": value}


def array_json(items, elem_type):
    out = []
    for item in items:
        if elem_type == V.ARRAY:
            inner = V.ARRAY if isinstance(item[0], list) else V.get_type(item[0])
            out.append(array_json(item, inner))
        else:
            out.append(typed_json(elem_type, item))
    return {"t": "ARRAY", "v": out}


def metadata_json():
    rows = []
    for key, vtype, value, elem in METADATA:
        rows.append([key, array_json(value, elem) if vtype == V.ARRAY else typed_json(vtype, value)])
    return rows


def special_values():
    """Values that exercise float edge cases for the float types (including f16/bf16 subnormals and overflow)."""
    return np.array([0.0, -0.0, np.inf, -np.inf, 65504.0, 1e-7, 6.0e-5, -2.5e-39, 3.0e38, np.nan, 1.0, -1.0],
                    dtype=np.float32)


def random_rows(rng, rows, cols):
    x = rng.standard_normal((rows, cols)).astype(np.float32) * np.float32(0.5)
    if rows > 2:
        x[1, :] = 0.0  # an all-zero row: scale 0
        x[2, :] = 0.75  # a constant row
    return x


def encode_float(ty, x):
    """(stored array for GGUFWriter, raw_dtype) for the float types."""
    if ty == T.F32:
        return x.astype(np.float32), None
    if ty == T.F16:
        with np.errstate(over="ignore"):  # 3e38 becoming inf is one of the intended special values
            return x.astype(np.float16), None
    return quantize(x, T.BF16), T.BF16


def k_quant_rows(shared, ty):
    """Byte rows of real llama.cpp K-quant tensors: (name, uint8 rows, ne0) for up to three source tensors."""
    src = "llama-q5_k_m.gguf" if ty == T.Q5_K else "llama-q4_k_m.gguf"
    reader = gguf.GGUFReader(os.path.join(shared, "fixtures", src))
    picks = []
    for t in reader.tensors:
        if t.tensor_type != ty:
            continue
        ne0 = int(t.shape[0])
        if any(p[2] == ne0 for p in picks):
            continue
        data = np.asarray(t.data, dtype=np.uint8)
        picks.append((t.name, data, ne0))
    return src, picks


# Types whose rows come from tests/quant-fixtures (scripts/fixtures_quant_types.py): type -> source file.
QUANT_FIXTURE_SOURCES = {
    T.Q2_K: "llama-ff352-q2_k.gguf",
    T.Q3_K: "llama-ff352-q3_k_m.gguf",
    T.IQ4_NL: "llama-ff352-iq4_nl.gguf",
    T.IQ4_XS: "llama-ff352-iq4_xs.gguf",
}


def quant_fixture_rows(quant_fixtures, ty):
    """Like k_quant_rows, from tests/quant-fixtures: one tensor per distinct row length (ne0), then more tensors
    (of other names) until there are two, so that every file has at least two source tensors."""
    src = QUANT_FIXTURE_SOURCES[ty]
    reader = gguf.GGUFReader(os.path.join(quant_fixtures, src))
    tensors = [t for t in reader.tensors if t.tensor_type == ty]
    picks = []
    for t in tensors:
        if not any(p[2] == int(t.shape[0]) for p in picks):
            picks.append((t.name, np.asarray(t.data, dtype=np.uint8), int(t.shape[0])))
    for t in tensors:
        if len(picks) >= 2:
            break
        if not any(p[0] == t.name for p in picks):
            picks.append((t.name, np.asarray(t.data, dtype=np.uint8), int(t.shape[0])))
    return src, picks


def write_file(name, ty, tensors, alignment=None):
    """tensors: list of (tensor name, stored numpy array, raw_dtype). Returns the manifest entry."""
    path = os.path.join(OUT, f"{name}.gguf")
    w = gguf.GGUFWriter(path, ARCH)
    if alignment is not None:
        w.data_alignment = alignment
        w.add_custom_alignment(alignment)
    for key, vtype, value, elem in METADATA:
        w.add_key_value(key, value, vtype, sub_type=elem)
    for tname, arr, raw in tensors:
        w.add_tensor(tname, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # Read the file back with gguf's own reader and dequantize with gguf.quants (the reference).
    reader = gguf.GGUFReader(path)
    expected = []
    infos = []
    for t in reader.tensors:
        raw = np.asarray(t.data)
        if t.tensor_type in (T.F32, T.F16):
            values = raw.astype(np.float32).reshape(-1)
        else:
            values = dequantize(raw.view(np.uint8), t.tensor_type).astype(np.float32).reshape(-1)
        assert values.size == int(t.n_elements), (name, t.name)
        expected.append(values)
        infos.append({
            "name": t.name,
            "type": t.tensor_type.name,
            "dims": [int(d) for d in t.shape],
            "offset": int(t.data_offset) - int(reader.data_offset),
            "n_elements": int(t.n_elements),
            "n_bytes": int(t.n_bytes),
        })
    with open(os.path.join(OUT, f"{name}.f32"), "wb") as f:
        f.write(np.concatenate(expected).astype("<f4").tobytes())
    return {
        "file": f"{name}.gguf",
        "expected": f"{name}.f32",
        "type": ty.name,
        "size": os.path.getsize(path),
        "version": 3,
        "alignment": alignment or 32,
        "data_offset": int(reader.data_offset),
        "tensors": infos,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
    ap.add_argument("--quant-fixtures", default=os.path.join(OUT, "..", "quant-fixtures"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    entries = []
    provenance = {}

    for ty in (T.F32, T.F16, T.BF16):
        tensors = []
        for tname, shape in (("t.matrix", (3, 96)), ("t.odd", (5, 7)), ("t.cube", (2, 2, 16))):
            x = random_rows(rng, shape[0] * (shape[1] if len(shape) == 3 else 1), shape[-1]).reshape(shape)
            arr, raw = encode_float(ty, x)
            tensors.append((tname, arr, raw))
        arr, raw = encode_float(ty, special_values())
        tensors.append(("t.special", arr, raw))
        entries.append(write_file(ty.name.lower(), ty, tensors))
        provenance[ty.name] = ("random normal data plus special values, encoded with "
                               + ("gguf.quants.quantize" if ty == T.BF16 else "numpy astype"))

    for ty in (T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1):
        tensors = []
        for tname, shape in (("t.matrix", (4, 128)), ("t.vector", (64,)), ("t.cube", (2, 2, 32))):
            rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            x = random_rows(rng, rows, shape[-1])
            q = quantize(x, ty)
            tensors.append((tname, q.reshape(shape[:-1] + (q.shape[-1],)) if len(shape) > 1 else q[0], ty))
        # One file uses a non-default alignment so its handling is tested too.
        alignment = 64 if ty == T.Q8_0 else None
        entries.append(write_file(ty.name.lower(), ty, tensors, alignment))
        provenance[ty.name] = "random normal data quantized with gguf.quants.quantize"

    for ty in (T.Q4_K, T.Q5_K, T.Q6_K):
        src, picks = k_quant_rows(args.shared, ty)
        tensors = []
        for i, (src_name, rows, ne0) in enumerate(picks):
            n_rows = 3 if i == 0 else 2
            tensors.append((f"t.rows{i}", rows[:n_rows].copy(), ty))
        entries.append(write_file(ty.name.lower(), ty, tensors))
        provenance[ty.name] = (f"the first rows of tensors {[p[0] for p in picks]} of shared/fixtures/{src} "
                               "(quantized by llama.cpp)")

    for ty in (T.Q2_K, T.Q3_K, T.IQ4_NL, T.IQ4_XS):
        src, picks = quant_fixture_rows(args.quant_fixtures, ty)
        tensors = []
        for i, (src_name, rows, ne0) in enumerate(picks):
            n_rows = 3 if i == 0 else 2
            tensors.append((f"t.rows{i}", rows[:n_rows].copy(), ty))
        entries.append(write_file(ty.name.lower(), ty, tensors))
        provenance[ty.name] = (f"the first rows of tensors {[p[0] for p in picks]} of tests/quant-fixtures/{src} "
                               "(quantized by llama.cpp 0c1e570 via llama-cpp-python 0.3.36)")

    manifest = {"generator": f"scripts/gguf_make_fixtures.py with gguf {gguf.__version__ if hasattr(gguf, '__version__') else '0.19.0'}",
                "architecture": ARCH, "metadata": metadata_json(), "files": entries, "provenance": provenance}
    with open(os.path.join(OUT, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)

    smollm2(args.shared)


def smollm2(shared):
    """Copy the parts of the llama.cpp-made SmolLM2 golden that the parser tests check."""
    with open(os.path.join(shared, "golden", "smollm2", "gguf_metadata.json"), encoding="utf-8") as f:
        g = json.load(f)
    s = g["summary"]
    summary = {k: s[k] for k in ("file", "file_size_bytes", "gguf_version", "tensor_data_offset", "alignment",
                                 "architecture", "general.name", "n_embd", "n_layer", "vocab_size_tokens",
                                 "n_merges", "bos_token_id", "eos_token_id", "rms_norm_eps", "rope_freq_base")}
    summary["kv_count"] = g["kv"]["GGUF.kv_count"]
    summary["tensor_count"] = g["n_tensors"]
    summary["first_tokens"] = g["kv"]["tokenizer.ggml.tokens"]["first5"]
    summary["first_merges"] = g["kv"]["tokenizer.ggml.merges"]["first5"]
    with open(os.path.join(OUT, "smollm2_summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, ensure_ascii=False, indent=1)
    with open(os.path.join(OUT, "smollm2_tensors.tsv"), "w", encoding="utf-8") as f:
        f.write("name\ttype_id\tdims\tn_elements\tn_bytes\tabs_offset\tsha256\n")
        for t in g["tensors"]:
            dims = ",".join(str(d) for d in t["shape_ne"])
            f.write(f"{t['name']}\t{t['ggml_type_id']}\t{dims}\t{t['n_elements']}\t{t['n_bytes']}\t"
                    f"{t['data_offset']}\t{t['sha256']}\n")


if __name__ == "__main__":
    main()
