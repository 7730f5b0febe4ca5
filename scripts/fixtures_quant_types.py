#!/usr/bin/env python3
"""Make the quantization-type fixtures in tests/quant-fixtures/ and their llama.cpp goldens.

The shared fixtures (../shared/fixtures) cover F32, Q8_0, Q4_0, Q4_1, Q4_K_M, Q5_K_M and Q6_K. This script
adds tiny random-weight llama models quantized by llama.cpp to Q5_0, Q5_1, BF16, Q2_K, Q3_K_M, IQ4_NL and
IQ4_XS, plus a "mixed" Q4_K_M file that holds Q4_K, Q5_0, Q6_K and Q8_0 tensors together, as Hub Q4_K_M files
of models with odd FFN sizes do.

The model follows the shared fixtures' recipe (see shared/fixtures/README.md) with one change: n_ff is 352, a
multiple of 32 but not of 256. `ffn_down` has rows of 352 values (ne0 = 352), so where llama.cpp's quantizer
picks a 256-block type (K-quants, IQ4_XS) for it, it falls back on a 32-block type: Q4_K -> Q5_0, Q6_K -> Q8_0,
Q5_K -> Q5_1, IQ4_XS -> IQ4_NL, Q2_K/Q3_K -> Q4_0 (llama.cpp 0c1e570). All other matrices have ne0 = 256.

Steps (deterministic; reruns give identical files):
  1. random F32 weights, seed numpy default_rng(zlib.crc32(MODEL)); weights N(0, 0.05), norms 1 + N(0, 0.1),
     in the shared fixtures' tensor order (that recipe reproduces shared/fixtures/llama-f32.gguf exactly,
     except its conditioned output.weight);
  2. margin conditioning: with an exact float64 forward pass, small changes to output.weight rows (cyclic
     projections) so that along the F32 model's greedy path the argmax beats every other token by >= 1.5,
     with the hidden states of the F32 weights and of every quantization (from a first quantization pass
     into --work/pass1); the path itself is unchanged;
  3. the F32 GGUF (gguf.GGUFWriter, metadata and tokenizer copied from shared/fixtures/llama-q8_0.gguf) is
     written to --work (not published, 4.8 MB) and quantized with llama_cpp.llama_model_quantize (default
     params except ftype, no imatrix);
  4. llama.cpp goldens for every file: 16 prompt tokens in one llama_decode batch (logits at all positions),
     then 16 greedy tokens, one llama_decode per token; n_ctx 256, 2 threads, f16 KV, no flash attention;
  5. an independent numpy float64 forward pass on each file's weights, read with gguf.GGUFReader and
     dequantized with gguf.quants.dequantize (exact_f64 in the JSON), and checked against llama.cpp on the F32
     file (it must agree to < 2.5e-3).

Each X.gguf gets X.json in the shared fixtures' schema (schema_version 1); index.json and README.md list them.

Requires llama-cpp-python 0.3.36 (built as scripts/bench/native.sh builds it) and the `gguf` package 0.19.0 with
numpy, in the same Python:

    .cache/bench/venv/bin/pip install gguf==0.19.0 numpy    # once, after scripts/bench/native.sh built the venv
    .cache/bench/venv/bin/python scripts/fixtures_quant_types.py [--shared /work/shared]

The llama weight layout, the float64 forward pass and the margin conditioning are scripts/fixtures_common.py's,
shared with the vision fixture generators.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

import fixtures_common as fc
from fixtures_common import ROOT, margin, sig

OUT = os.path.join(ROOT, "tests", "quant-fixtures")
WORK = os.path.join(ROOT, ".cache", "quant-fixtures")

MODEL = "llama-ff352"
GENERAL_NAME = "tiny-random-llama-ff352"
DESCRIPTION = ("Llama: GQA 4q/2kv heads, RoPE NORM (interleaved pairs), SwiGLU, untied output; n_ff 352 "
               "(ffn_down rows are 352 long, so 256-block types fall back to 32-block types there)")
HP = {"arch": "llama", "n_vocab": 512, "n_embd": 256, "n_ff": 352, "n_head": 4, "n_head_kv": 2, "head_dim": 64,
      "n_layer": 2, "n_ctx_train": 256, "tied_embeddings": False, "rms_eps": 1e-05, "rope_base": 10000.0,
      "n_rot": 64, "rope_type": "norm"}
STD = 0.05
NORM_STD = 0.1
MARGIN = 1.5
N_GREEDY = 16
# (quant name, llama_ftype); F32 is the unpublished source.
QUANTS = [("Q5_0", 8), ("Q5_1", 9), ("BF16", 32), ("Q2_K", 10), ("Q3_K_M", 12), ("IQ4_NL", 25), ("IQ4_XS", 30),
          ("Q4_K_M", 15)]
NOTES = {
    "Q5_0": "Q5_0 everywhere but output.weight (Q6_K)",
    "Q5_1": "Q5_1 everywhere but output.weight (Q6_K)",
    "BF16": "BF16 for every matrix",
    "Q2_K": "Q2_K; Q3_K for attn_v and attn_output; ffn_down wants Q3_K and falls back to Q4_0; output Q6_K",
    "Q3_K_M": "Q3_K; attn_v Q5_K, attn_output Q4_K; ffn_down wants Q4_K and falls back to Q5_0; output Q6_K",
    "IQ4_NL": "IQ4_NL everywhere but output.weight (Q6_K)",
    "IQ4_XS": "IQ4_XS; ffn_down falls back to IQ4_NL; output Q6_K",
    "Q4_K_M": ("the mixed file: Q4_K; blk.1.attn_v and output Q6_K; ffn_down falls back: blk.0 Q4_K -> Q5_0, "
               "blk.1 Q6_K -> Q8_0"),
}


def file_name(quant):
    return f"{MODEL}-{quant.lower()}.gguf"


# ---------------------------------------------------------------------------------------------------------------
# weights


def tensor_shapes():
    """(name, numpy shape) in the shared fixtures' order; numpy shape = (ne1, ne0)."""
    return fc.llama_tensor_shapes(HP, HP["n_vocab"])


def random_weights():
    return fc.llama_random_weights(tensor_shapes(), fc.rng_for(MODEL), STD, NORM_STD)


# ---------------------------------------------------------------------------------------------------------------
# independent float64 forward pass (llama architecture)


def forward(w, tokens, emulate_f16_kv=False, return_hidden=False):
    """Logits (n_tok, n_vocab) for the tokens evaluated as one causal batch from position 0 (RMSNorm, RoPE NORM on
    adjacent pairs, GQA attention, SwiGLU, separate output: fixtures_common.llama_forward).

    w: name -> float64 array in numpy order (ne1, ne0). With emulate_f16_kv, K, V, Q (for QK^T) and the softmax
    probabilities (for PV) are rounded to f16, as llama.cpp does with an f16 KV cache and no flash attention."""
    return fc.llama_forward(HP, w, w["token_embd.weight"][np.asarray(tokens)], emulate_f16_kv, return_hidden)


def greedy_exact(w, tokens, n=N_GREEDY):
    toks = list(tokens)
    out = []
    for step in range(n):
        a = int(np.argmax(forward(w, toks)[-1]))
        out.append(a)
        if step < n - 1:
            toks.append(a)
    return out


def hidden_states(w, tokens, path):
    """Final-norm hidden states from which the greedy choices along `path` are made (teacher-forced)."""
    _, hid = forward(w, list(tokens) + path[:-1], return_hidden=True)
    return hid[len(tokens) - 1:]


def condition_output(w32, tokens, path, hidden_sets):
    """Cyclic projections on output.weight rows (fixtures_common.condition_output): for every set of hidden states
    (F32 weights, and each quantized file's dequantized weights, teacher-forced along `path`), the logit of the
    path's token beats every other logit by >= MARGIN. The hidden states do not depend on output.weight (no
    imatrix: every tensor is quantized on its own), so they stay valid while output.weight changes."""
    w32, change, min_margin = fc.condition_output(w32, path, hidden_sets, MARGIN)
    assert greedy_exact({k: v.astype(np.float64) for k, v in w32.items()}, tokens) == path, path
    return w32, change, min_margin


# ---------------------------------------------------------------------------------------------------------------
# GGUF I/O


def write_f32_gguf(path, w, shared):
    import gguf
    src = gguf.GGUFReader(os.path.join(shared, "fixtures", "llama-q8_0.gguf"))
    changed = {"general.name": GENERAL_NAME, "general.file_type": 0, "llama.feed_forward_length": HP["n_ff"]}
    writer = gguf.GGUFWriter(path, "llama")
    for field in src.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, changed.get(field.name, field.contents()), kind, sub_type=sub)
    fc.close_gguf(writer, w, [name for name, _ in tensor_shapes()])


def read_gguf(path):
    """(weights name -> float64 numpy-order arrays, [[name, type, ne]...] in file order)."""
    import gguf
    from gguf.quants import dequantize
    T = gguf.GGMLQuantizationType
    r = gguf.GGUFReader(path)
    w, infos = {}, []
    for t in r.tensors:
        ne = [int(d) for d in t.shape]
        raw = np.asarray(t.data)
        if t.tensor_type in (T.F32, T.F16):
            x = raw.astype(np.float64)
        else:
            x = dequantize(raw.view(np.uint8), t.tensor_type).astype(np.float64)
        w[t.name] = x.reshape(tuple(reversed(ne)))
        infos.append([t.name, t.tensor_type.name, ne])
    return w, infos


# ---------------------------------------------------------------------------------------------------------------
# llama.cpp (run in a child process of --llama-python)

QUANTIZE = r"""
import ctypes, sys
import llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = int(sys.argv[3])
rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(params))
sys.exit(rc)
"""

GOLDEN = r"""
import json, sys
import numpy as np
import llama_cpp
path, tokens, n_greedy = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
llm = llama_cpp.Llama(model_path=path, n_threads=2, n_threads_batch=2, n_ctx=256, logits_all=True, seed=0,
                      flash_attn=False, verbose=False)
n_vocab = llm.n_vocab()
llm.eval(tokens)  # one llama_decode call: n_batch 512 > 16
prompt = [[float(x) for x in llm.scores[i][:n_vocab]] for i in range(len(tokens))]
steps, cur = [], np.array(prompt[-1])
for step in range(n_greedy):
    a = int(np.argmax(cur))
    steps.append([float(x) for x in cur])
    if step < n_greedy - 1:
        llm.eval([a])
        cur = np.array(llm.scores[llm.n_tokens - 1][:n_vocab], dtype=np.float64)
print(json.dumps({"version": llama_cpp.__version__, "prompt": prompt, "greedy_steps": steps}))
"""


def run_py(python, code, *args):
    return subprocess.run([python, "-c", code, *args], check=True, capture_output=True, text=True)


def quantize(python, src, dst, ftype):
    p = subprocess.run([python, "-c", QUANTIZE, src, dst, str(ftype)], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"llama_model_quantize ftype {ftype} failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
    return p.stderr


def golden(python, path, tokens):
    out = run_py(python, GOLDEN, path, json.dumps(tokens), str(N_GREEDY)).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------
# JSON


def compare(a, b):
    a, b = np.asarray(a), np.asarray(b)
    d = np.abs(a - b)
    return {"max_abs": sig(d.max()), "rms": sig(np.sqrt(np.mean(d * d))),
            "max_abs_over_max_ref": sig(d.max() / np.abs(b).max()),
            "argmax_agree": int(np.sum(a.argmax(-1) == b.argmax(-1)))}


def fixture_json(path, quant, ftype, conditioning, tokens, g, exact, exact_emul, exact_greedy, infos, version):
    prompt = np.asarray(g["prompt"])
    steps = np.asarray(g["greedy_steps"])
    greedy = [int(np.argmax(r)) for r in steps]
    top10 = [[[int(i), sig(r[i])] for i in np.argsort(-r, kind="stable")[:10]] for r in steps]
    return {
        "schema_version": 1,
        "file": os.path.basename(path),
        "model": MODEL,
        "arch": "llama",
        "description": DESCRIPTION,
        "quant": quant,
        "llama_ftype": ftype,
        "sha256": fc.sha256_file(path),
        "size_bytes": os.path.getsize(path),
        "hparams": HP,
        "weights": {"seed": f"numpy default_rng(zlib.crc32('{MODEL}'))", "std": STD,
                    "norm_weights": f"1 + N(0, {NORM_STD})", "conditioning": conditioning},
        "tensors": infos,
        "reference": {"engine": "llama.cpp (CPU backend) via llama-cpp-python", "llama_cpp_python": version,
                      "n_threads": 2, "n_threads_batch": 2, "n_ctx": 256, "n_batch": 512, "n_ubatch": 512,
                      "logits_all": True, "seed": 0, "flash_attn": False, "kv_cache_type": "f16",
                      "prompt_eval": "the 16 tokens in one llama_decode call (batch)",
                      "greedy_eval": "argmax, then one llama_decode call per generated token"},
        "tokens": tokens,
        "logits_sig_digits": 5,
        "logits": [[sig(x) for x in row] for row in prompt],
        "logits_top1_minus_top2": [sig(margin(r)) for r in prompt],
        "argmax_per_position": [int(np.argmax(r)) for r in prompt],
        "greedy": {"tokens": greedy, "top1_minus_top2": [sig(margin(r)) for r in steps], "top10": top10},
        "exact_f64": {
            "note": ("independent numpy float64 forward pass on this file's weights (dequantized exactly with "
                     "gguf-py 0.19.0), no rounding anywhere (f64 KV, exact softmax). Same 16 prompt tokens, batch."),
            "logits": [[sig(x) for x in row] for row in exact],
            "greedy_tokens": exact_greedy,
            "llamacpp_vs_exact": compare(prompt, exact),
            "llamacpp_vs_exact_with_f16_kv_emulation": compare(prompt, exact_emul),
        },
    }


def type_counts(infos):
    counts = {}
    for _, ty, _ in infos:
        counts[ty] = counts.get(ty, 0) + 1
    return counts


def counts_str(counts):
    order = ["F32", "BF16", "Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0", "Q4_K", "Q4_1", "Q4_0", "IQ4_XS", "IQ4_NL",
             "Q3_K", "Q2_K"]
    return ", ".join(f"{t} {counts[t]}" for t in sorted(counts, key=lambda t: order.index(t) if t in order else 99))


def write_readme(rows, f32_row, conditioning, version, tokens):
    lines = [
        "# Quantization-type fixtures (tiny random llama, llama.cpp goldens)",
        "",
        "Generated by `scripts/fixtures_quant_types.py` (deterministic; see its docstring for how to rerun). "
        "A tiny random-weight llama model, quantized by llama.cpp to the weight types that the shared fixtures "
        "(`shared/fixtures`) do not cover: **Q5_0, Q5_1, BF16, Q2_K, Q3_K (Q3_K_M), IQ4_NL, IQ4_XS**, and one "
        "**mixed** Q4_K_M file that holds Q4_K, Q5_0, Q6_K and Q8_0 tensors together, the way Hub Q4_K_M files "
        "of models with odd FFN sizes do. Each `X.gguf` has an `X.json` in the shared fixtures' schema "
        "(`schema_version` 1: llama.cpp logits for the 16-token prompt, greedy continuation with top-10 logits "
        "per step, and an independent exact float64 reference); `index.json` lists them.",
        "",
        "## Provenance",
        "",
        f"* llama.cpp as bundled in **llama-cpp-python {version}** (bundled llama.cpp commit `0c1e570`), built from "
        "source as `scripts/bench/native.sh` builds it (AVX-512 where the CPU has it, AMX off). CPU backend.",
        "* `gguf` Python package **0.19.0** (GGUFWriter, GGUFReader, `gguf.quants.dequantize`), numpy.",
        f"* Model `{MODEL}` (general.name `{GENERAL_NAME}`), architecture `llama`, the shared fixtures' recipe: "
        "n_vocab 512 (the shared gpt2 tokenizer, copied field by field from `shared/fixtures/llama-q8_0.gguf`), "
        "n_embd 256, 4 heads, 2 KV heads, head_dim 64, 2 layers, context 256, RoPE NORM base 1e4, RMSNorm eps "
        "1e-5, SwiGLU, separate `output.weight`. Weights N(0, 0.05), norm weights 1 + N(0, 0.1), drawn in the "
        f"shared files' tensor order from `numpy.random.default_rng(zlib.crc32('{MODEL}'))` (the same procedure "
        "with the name `llama` reproduces `shared/fixtures/llama-f32.gguf` bit for bit, apart from its "
        "conditioned `output.weight`).",
        "* **n_ff = 352** (a multiple of 32, not of 256). `ffn_down` has ne0 = 352, so when llama.cpp's quantizer "
        "picks a 256-block type for it, it falls back (llama.cpp 0c1e570 `tensor_type_fallback`): Q4_K -> Q5_0, "
        "Q6_K -> Q8_0, IQ4_XS -> IQ4_NL, Q2_K and Q3_K -> **Q4_0** (this llama.cpp no longer uses IQ4_NL for "
        "those two). Every other matrix has ne0 = 256.",
        f"* Margin conditioning as in the shared fixtures (and, like their mixtral router fix, against every "
        f"quantization): before writing the F32 file, cyclic projections on `output.weight` rows (max |change| "
        f"{conditioning['max_abs_change']['output.weight']}) make the argmax beat every other token by >= {MARGIN} "
        "along the exact-math greedy path of the F32 model, using the final hidden states of the F32 weights and "
        "of each quantized file's dequantized weights (teacher-forced along that path; without an imatrix every "
        "tensor is quantized on its own, so these do not depend on `output.weight`; a first quantization pass "
        "gives them). Smallest such exact-math margin: "
        f"{conditioning['min_margin_f32_exact']:.3f}. The path itself is unchanged"
        + (", and every published file follows it in llama.cpp too. "
           if all(r["greedy"] == conditioning["path"] for r in rows) else
           "; NOTE: some files' llama.cpp greedy tokens leave it (see the table). ")
        + "Prompt positions are not conditioned: use `logits_top1_minus_top2` to skip "
        "near ties there.",
        "* The F32 file (4.8 MB) is written to `.cache/quant-fixtures/` and quantized with "
        "`llama_cpp.llama_model_quantize` (default params except `ftype`, no imatrix); it is not published.",
        "* Goldens: `Llama(path, n_threads=2, n_threads_batch=2, n_ctx=256, logits_all=True, seed=0, "
        "flash_attn=False)`, f16 KV cache; the 16 prompt tokens in one `llama_decode` batch, then greedy: argmax, "
        "one `llama_decode` per token, 16 tokens (the 16th is chosen, not evaluated), no EOS stop. Logits are "
        "rounded to 5 significant digits.",
        "",
        "```",
        f"tokens = {tokens}",
        "```",
        "",
        "## Files",
        "",
        "| file | quant (llama ftype) | bytes | tensor types (count) | what it covers | llama.cpp greedy tokens |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| `{r['file']}` | {r['quant']} ({r['ftype']}) | {r['size']:,} | {counts_str(r['counts'])} | "
                     f"{NOTES[r['quant']]} | {' '.join(map(str, r['greedy']))} |")
    lines += [
        "",
        "1-D tensors (the 5 norms) stay F32 in every file. The exact per-tensor list is each JSON's `tensors`.",
        "",
        "## llama.cpp vs the exact float64 reference",
        "",
        "`exact_f64.logits` come from an independent numpy float64 forward pass (RMSNorm, RoPE NORM on adjacent "
        "pairs, causal GQA attention, SwiGLU, separate output) on each file's weights, read with "
        "`gguf.GGUFReader` and dequantized with `gguf.quants.dequantize` (gguf 0.19.0 dequantizes every type "
        "here). It shares no code with llama.cpp.",
        "",
        f"* Validation on the F32 file (`{f32_row['file']}`, not published): max |numpy - llama.cpp| over all "
        f"16 x 512 logits = **{f32_row['max_abs']:.2e}** plain float64 (rms {f32_row['rms']:.1e}); "
        f"**{f32_row['max_abs_emul']:.2e}** when llama.cpp's f16 K/V/Q/softmax rounding is emulated. Argmax "
        f"agrees at {f32_row['argmax_agree']}/16 prompt positions; greedy tokens agree "
        f"{f32_row['greedy_agree']}/16. (The shared fixtures report 1.5e-3 / 3.5e-4 for their llama F32.)",
        "* On quantized files llama.cpp also rounds the activations to 8-bit blocks before each quantized dot "
        "product (Q8_0 / Q8_1 / Q8_K; BF16 weights: activations rounded to BF16), so it differs from exact math "
        "on the same dequantized weights by more; an f32 engine should match `exact_f64` much more closely.",
        "",
        "| file | max abs, llama.cpp vs exact f64 | rms | max abs / max abs logit | with f16-KV emulation | "
        "argmax agree (prompt) | greedy agree (llama.cpp vs exact) | min greedy margin (llama.cpp) | "
        "min prompt margin (llama.cpp) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in [f32_row] + rows:
        lines.append(f"| `{r['file']}`{' (not published)' if r is f32_row else ''} | {r['max_abs']:.2e} | "
                     f"{r['rms']:.1e} | {r['rel']:.1e} | {r['max_abs_emul']:.2e} | {r['argmax_agree']}/16 | "
                     f"{r['greedy_agree']}/16 | {r['min_greedy_margin']:.2f} | {r['min_prompt_margin']:.4f} |")
    lines += [
        "",
        "Suggested tolerances for engine tests: vs `exact_f64.logits`, max abs <= ~5e-3 for f32 math; vs "
        "llama.cpp `logits` on these quantized files, max abs <= ~0.15 and rms <= ~0.03 (observed: see the "
        "table) unless the engine quantizes activations as llama.cpp does; `greedy.tokens` exact (check "
        "`greedy.top1_minus_top2` against your tolerance); argmax at prompt positions only where "
        "`logits_top1_minus_top2` is well above the tolerance.",
        "",
        "Used by `crates/cli/tests/architectures.rs` (`every_weight_type_matches_its_references_on_*`: the "
        "CPU reference and both wgpu kernel families against `exact_f64` and llama.cpp's greedy tokens). "
        "`.gitignore` lets these `*.gguf` files in.",
        "",
    ]
    with open(os.path.join(OUT, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


# ---------------------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    parser.add_argument("--llama-python", default=sys.executable,
                        help="the Python with llama-cpp-python 0.3.36 (default: this one)")
    parser.add_argument("--work", default=WORK, help="where the unpublished F32 file goes")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    with open(os.path.join(args.shared, "fixtures", "index.json")) as f:
        tokens = json.load(f)["tokens"]

    # Pass 1: quantize the unconditioned model, to learn each file's hidden states along the F32 greedy path.
    w0 = random_weights()
    path_f32 = greedy_exact({k: v.astype(np.float64) for k, v in w0.items()}, tokens)
    hidden_sets = [hidden_states({k: v.astype(np.float64) for k, v in w0.items()}, tokens, path_f32)]
    pass1 = os.path.join(args.work, "pass1")
    os.makedirs(pass1, exist_ok=True)
    f32 = os.path.join(pass1, file_name("F32"))
    write_f32_gguf(f32, w0, args.shared)
    pass1_weights = {}
    for quant, ftype in QUANTS:
        path = os.path.join(pass1, file_name(quant))
        quantize(args.llama_python, f32, path, ftype)
        pass1_weights[quant], _ = read_gguf(path)
        hidden_sets.append(hidden_states(pass1_weights[quant], tokens, path_f32))

    w32, change, min_margin = condition_output(w0, tokens, path_f32, hidden_sets)
    conditioning = {"note": ("small deterministic corrections to output.weight rows so that the greedy argmaxes "
                             "are not near ties (see README)"),
                    "delta_out_pre_softcap": MARGIN, "delta_router": None,
                    "max_abs_change": {"output.weight": sig(change)}}
    print(f"conditioned output.weight: max |change| {change:.4g}, exact greedy path {path_f32}, "
          f"min margin over F32 and all {len(QUANTS)} quantizations {min_margin:.4f}", file=sys.stderr)
    f32 = os.path.join(args.work, file_name("F32"))
    write_f32_gguf(f32, w32, args.shared)

    version = run_py(args.llama_python, "import llama_cpp; print(llama_cpp.__version__)").stdout.strip()
    rows, index, f32_row = [], [], None
    for quant, ftype in [("F32", 0)] + QUANTS:
        if quant == "F32":
            path = f32
        else:
            path = os.path.join(OUT, file_name(quant))
            quantize(args.llama_python, f32, path, ftype)
        w, infos = read_gguf(path)
        if quant != "F32":  # only output.weight changed since pass 1
            assert all(np.array_equal(v, pass1_weights[quant][k]) for k, v in w.items() if k != "output.weight")
        g = golden(args.llama_python, path, tokens)
        exact = forward(w, tokens)
        exact_emul = forward(w, tokens, emulate_f16_kv=True)
        exact_greedy = greedy_exact(w, tokens)
        fx = fixture_json(path, quant, ftype, conditioning, tokens, g, exact, exact_emul, exact_greedy, infos,
                          g["version"])
        cmp, cmp_e = fx["exact_f64"]["llamacpp_vs_exact"], fx["exact_f64"]["llamacpp_vs_exact_with_f16_kv_emulation"]
        row = {"file": fx["file"], "quant": quant, "ftype": ftype, "size": fx["size_bytes"],
               "counts": type_counts(infos), "greedy": fx["greedy"]["tokens"], "max_abs": cmp["max_abs"],
               "rms": cmp["rms"], "rel": cmp["max_abs_over_max_ref"], "max_abs_emul": cmp_e["max_abs"],
               "argmax_agree": cmp["argmax_agree"],
               "greedy_agree": sum(a == b for a, b in zip(fx["greedy"]["tokens"], exact_greedy)),
               "min_greedy_margin": min(fx["greedy"]["top1_minus_top2"]),
               "min_prompt_margin": min(fx["logits_top1_minus_top2"])}
        print(f"{fx['file']}: {counts_str(row['counts'])}; {fx['size_bytes']} bytes; llama.cpp vs exact "
              f"{cmp['max_abs']} (f16 emul {cmp_e['max_abs']}); greedy {row['greedy']} (exact agrees "
              f"{row['greedy_agree']}/16, min margin {row['min_greedy_margin']})", file=sys.stderr)
        if quant == "F32":
            if cmp["max_abs"] > 2.5e-3 or row["greedy_agree"] != N_GREEDY:
                raise RuntimeError(f"the float64 reference disagrees with llama.cpp on the F32 file: {cmp}")
            f32_row = row
            continue
        with open(os.path.join(OUT, file_name(quant)[:-5] + ".json"), "w") as f:
            json.dump(fx, f, separators=(",", ":"))
        rows.append(row)
        index.append({"file": fx["file"], "json": fx["file"][:-5] + ".json", "model": MODEL, "arch": "llama",
                      "quant": quant, "size_bytes": fx["size_bytes"]})

    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump({"tokens": tokens, "files": index, "not_included": [file_name("F32")], "failed": [],
                   "selection": ("every target type once; the F32 source (4.8 MB) is not published: "
                                 "rerun the script to get it in .cache/quant-fixtures/")}, f, indent=1)
    write_readme(rows, f32_row, dict(conditioning, min_margin_f32_exact=min_margin, path=path_f32), version, tokens)


if __name__ == "__main__":
    main()
