#!/usr/bin/env python3
"""Make the Phi-3 "longrope" fixture in tests/longrope-fixtures/ and its llama.cpp goldens.

Phi-3.5 and Phi-4-mini files carry per-frequency RoPE divisors for short and long contexts
(`rope_factors_short.weight`, `rope_factors_long.weight`, n_rot/2 values each) and an attention
factor (`phi3.rope.scaling.attn_factor`). The shared phi3 fixture has none of them, so this script
copies it (../shared/fixtures/phi3-q4_0.gguf: same weights, same tensor data) with:

- `phi3.context_length` 1024 (the original context stays 256),
- `rope_factors_short.weight` = 1 + i/8 and `rope_factors_long.weight` = 2 + i/4 (i = 0 .. 31),
  F32, far from 1 so that an engine ignoring them fails,
- `phi3.rope.scaling.attn_factor` 1.25.

and records llama.cpp's logits for the fixture's 16-token prompt (one batch) with a context of
256 (not longer than the original: the short factors) and of 512 (the long factors).

Requires llama-cpp-python 0.3.36 (the version that made ../shared/golden; built as
scripts/bench/native.sh builds it) and the `gguf` package 0.19.0:

    .cache/bench/venv/bin/python scripts/fixtures_phi3_longrope.py   # with gguf installed there
    python3 scripts/fixtures_phi3_longrope.py --llama-python .cache/bench/venv/bin/python
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "longrope-fixtures")
NAME = "phi3-longrope-q4_0"
N_ROT_HALF = 32
CONTEXTS = [256, 512]


def write_fixture(shared):
    import numpy as np
    import gguf

    source = os.path.join(shared, "fixtures", "phi3-q4_0.gguf")
    reader = gguf.GGUFReader(source)
    path = os.path.join(OUT, NAME + ".gguf")
    writer = gguf.GGUFWriter(path, "phi3")
    changed = {"phi3.context_length": 1024}
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        value = changed.get(field.name, field.contents())
        writer.add_key_value(field.name, value, kind, sub_type=sub)
    writer.add_key_value("phi3.rope.scaling.attn_factor", 1.25, gguf.GGUFValueType.FLOAT32)
    i = np.arange(N_ROT_HALF, dtype=np.float32)
    extra = {"rope_factors_short.weight": 1 + i / 8, "rope_factors_long.weight": 2 + i / 4}
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    for name, values in extra.items():
        writer.add_tensor_info(name, values.shape, values.dtype, values.nbytes, gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data)
    for values in extra.values():
        writer.write_tensor_data(values)
    writer.close()
    with open(os.path.join(shared, "fixtures", "phi3-q4_0.json")) as f:
        tokens = json.load(f)["tokens"]
    return path, tokens


GOLDEN = r"""
import json, sys
import llama_cpp
path, n_ctx, tokens = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
llm = llama_cpp.Llama(model_path=path, n_threads=2, n_threads_batch=2, n_ctx=n_ctx, logits_all=True,
                      seed=0, flash_attn=False, verbose=False)
llm.eval(tokens)
n_vocab = llm.n_vocab()
print(json.dumps([[float(x) for x in llm.scores[i][:n_vocab]] for i in range(len(tokens))]))
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    parser.add_argument("--llama-python", default=sys.executable)
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    path, tokens = write_fixture(args.shared)
    version = subprocess.run([args.llama_python, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                             check=True, capture_output=True, text=True).stdout.strip()
    logits = {}
    for n_ctx in CONTEXTS:
        out = subprocess.run([args.llama_python, "-c", GOLDEN, path, str(n_ctx), json.dumps(tokens)],
                             check=True, capture_output=True, text=True).stdout
        logits[str(n_ctx)] = [[float(f"{x:.6g}") for x in row] for row in json.loads(out.strip().splitlines()[-1])]
    golden = {
        "file": NAME + ".gguf",
        "source": "shared/fixtures/phi3-q4_0.gguf with longrope factors (scripts/fixtures_phi3_longrope.py)",
        "reference": {"engine": "llama.cpp (CPU) via llama-cpp-python", "llama_cpp_python": version,
                      "n_threads": 2, "logits_all": True, "prompt_eval": "the tokens in one batch"},
        "tokens": tokens,
        "logits_by_context": logits,
    }
    with open(os.path.join(OUT, NAME + ".json"), "w") as f:
        json.dump(golden, f)


if __name__ == "__main__":
    main()
