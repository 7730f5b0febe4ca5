#!/usr/bin/env python3
"""Copy llama.cpp's reference data for SmolLM2-135M-Instruct Q4_1 into tests/golden/smollm2/.

Source: the project's shared reference data (../shared/golden/smollm2/), produced by llama.cpp
commit 0c1e57098 (as vendored by llama-cpp-python 0.3.36) on the exact model file, CPU, 2 threads.
We keep the exact-math reference (`*_f32model.*`: llama.cpp on the F32-dequantized weights with
an f32 KV cache) and the tokenizer goldens.

The full per-position logits (.npy, float32, up to 7 MB) are stored as int16 in units of 1/500
(`logits_<case>.i16`, little-endian, row-major [positions, vocab]): a rounding error of at most
1e-3, a tenth of the 0.01 tolerance the tests use. Plain Python, no numpy needed.
"""
import array
import ast
import json
import os
import sys

SCALE = 500  # stored value = round(logit * SCALE): range ±65, error ≤ 1e-3

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "..", "shared", "golden", "smollm2")
dst = os.path.join(root, "tests", "golden", "smollm2")
os.makedirs(dst, exist_ok=True)


def read_npy_f32(path):
    with open(path, "rb") as f:
        assert f.read(6) == b"\x93NUMPY", path
        major = f.read(2)[0]
        hlen = int.from_bytes(f.read(2 if major == 1 else 4), "little")
        header = ast.literal_eval(f.read(hlen).decode("latin1"))
        assert header["descr"] == "<f4" and not header["fortran_order"], header
        values = array.array("f")
        values.frombytes(f.read())
        if sys.byteorder != "little":
            values.byteswap()
        return header["shape"], values


def write_i16(path, values):
    q = array.array("h", (int(round(v * SCALE)) for v in values))
    if sys.byteorder != "little":
        q.byteswap()
    with open(path, "wb") as f:
        f.write(q.tobytes())


with open(os.path.join(src, "tokenize.json")) as f:
    tok = json.load(f)
with open(os.path.join(dst, "tokenize.json"), "w") as f:
    json.dump({"source": tok["settings"], "add_bos": tok["add_bos"], "cases": tok["cases"]}, f, indent=1, ensure_ascii=False)

with open(os.path.join(src, "greedy_f32model.json")) as f:
    greedy = json.load(f)
keep = ("name", "prompt", "parse_special", "prompt_ids", "gen_ids", "gen_text", "first_eog_index", "text_until_eog", "top1_minus_top2_logit_margin")
cases = [{k: c[k] for k in keep if k in c} for c in greedy["cases"] + greedy["cases_64"]]
with open(os.path.join(dst, "greedy_f32model.json"), "w") as f:
    json.dump({"source": greedy["settings"], "eog_ids": greedy["eog_ids"], "chat_messages": greedy["chat_messages"],
               "cases": cases}, f, indent=1, ensure_ascii=False)

with open(os.path.join(src, "logits_f32model.json")) as f:
    logits = json.load(f)
out_cases = []
for c in logits["cases"]:
    shape, values = read_npy_f32(os.path.join(src, c["npy"]))
    assert min(values) * SCALE > -32768 and max(values) * SCALE < 32767, "logits out of int16 range"
    name = "logits_%s.i16" % c["name"]
    write_i16(os.path.join(dst, name), values)
    out_cases.append({"name": c["name"], "prompt": c["prompt"], "prompt_ids": c["prompt_ids"],
                      "per_position_argmax": c["per_position_argmax"], "shape": list(shape), "scale": SCALE,
                      "file": name})
with open(os.path.join(dst, "logits_f32model.json"), "w") as f:
    json.dump({"source": logits["settings"], "note": logits["note"], "cases": out_cases}, f, indent=1, ensure_ascii=False)
print("wrote", dst)
