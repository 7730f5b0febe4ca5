#!/usr/bin/env python3
"""Real-GPU benchmark (not a test): Burrow's two kernel families on a machine with a GPU.

Run through scripts/bench/gpu.sh. For the default model and each model given:

- `burrow bench --backend wgpu --kernels gpu` and `--kernels cpu-adapter` (128 prompt tokens, 64
  generated, greedy): prefill and decode tokens/s, the decode step's dispatches, peak GPU memory;
  the median of --repeats runs (each run warms up by itself); and prefill alone at 1,024 prompt
  tokens, with the weight bytes it read (as a multiple of the file);
- `burrow bench --kernels gpu --bandwidth`: the GB/s of weights the decode matvecs of the model's
  largest matrices read, against a buffer copy's GB/s (read + written) on the same device.

Results are printed, saved as JSON (--out) and written between the gpu markers of BENCHMARKS.md.
"""

import argparse
import datetime
import json
import statistics
import subprocess
import sys
from pathlib import Path

from sections import write_section

REPO = Path(__file__).resolve().parents[2]
MODEL = ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
BURROW = "target/release/burrow"
BENCHMARKS = REPO / "BENCHMARKS.md"
SECTION = "gpu"
COMMAND = "scripts/bench/gpu.sh"
PROMPT_TOKENS = 128
GEN_TOKENS = 64
# The long prefill: a pasted document.
LONG_PROMPT_TOKENS = 1024
LONG_GEN_TOKENS = 2
FAMILIES = ("gpu", "cpu-adapter")
DEFAULT_REPEATS = 3


def bench(burrow, model, kernels, extra=(), prompt=PROMPT_TOKENS, gen=GEN_TOKENS):
    """One `burrow bench --json` run."""
    args = [burrow, "bench", "--model", model, "--backend", "wgpu", "--kernels", kernels,
            "--prompt-tokens", str(prompt), "--gen-tokens", str(gen), "--json", *extra]
    out = subprocess.run(args, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_run(burrow, model, kernels, repeats):
    """The run whose decode speed is the median of `repeats`, with the median long prefill."""
    runs = sorted((bench(burrow, model, kernels) for _ in range(repeats)), key=lambda r: r["decode_tok_s"])
    run = runs[len(runs) // 2]
    run["decode_tok_s_runs"] = [r["decode_tok_s"] for r in runs]
    run["prefill_tok_s"] = statistics.median(r["prefill_tok_s"] for r in runs)
    long = [bench(burrow, model, kernels, prompt=LONG_PROMPT_TOKENS, gen=LONG_GEN_TOKENS) for _ in range(repeats)]
    run["long_prefill_tok_s"] = statistics.median(r["prefill_tok_s"] for r in long)
    run["long_prefill_weight_reads"] = long[0].get("prefill_weight_bytes", 0) / long[0]["model_bytes"]
    return run


def number(v, digits=1):
    return f"{v:.{digits}f}"


def section(results, date, allow_cpu):
    adapter = next(iter(results.values()))["gpu"]["adapter"]
    yes = lambda key: "yes" if adapter.get(key) else "no"
    lines = [
        f"Measured {date} by `{COMMAND}` on **{adapter['name'] or 'an unnamed adapter'}**"
        f" (subgroups: {yes('subgroups')}, shader-f16: {yes('shader_f16')}, 8-bit dot products: {yes('dp4a')};"
        " the GPU family takes each fast path the adapter has)."
    ]
    if adapter["cpu"]:
        lines.append("")
        lines.append("**This adapter is a CPU implementation, not a GPU** (the run was allowed with --allow-cpu, to check the"
                     " script): these figures say nothing about GPUs.")
    for model, by_family in results.items():
        gpu, cpu = by_family["gpu"], by_family["cpu-adapter"]
        lines += ["", f"### `{Path(model).name}` ({gpu['model_bytes'] / 1e6:.0f} MB), {PROMPT_TOKENS} prompt tokens, {GEN_TOKENS} generated;"
                  f" and a prefill of {LONG_PROMPT_TOKENS}", "",
                  f"| kernels | prefill tok/s ({PROMPT_TOKENS}) | prefill tok/s ({LONG_PROMPT_TOKENS}) | weights read by that prefill (× file) "
                  "| decode tok/s | dispatches / token | peak GPU MB |", "|---|---|---|---|---|---|---|"]
        for name, run in (("gpu", gpu), ("cpu-adapter", cpu)):
            lines.append(f"| {name} | {number(run['prefill_tok_s'])} | {number(run['long_prefill_tok_s'])} "
                         f"| {number(run['long_prefill_weight_reads'])} | {number(run['decode_tok_s'])} "
                         f"| {number(run.get('kernel_launches_per_token', 0), 0)} | {run.get('peak_gpu_bytes', 0) / 1e6:.0f} |")
        speedup = gpu["decode_tok_s"] / cpu["decode_tok_s"] if cpu["decode_tok_s"] else float("nan")
        lines.append("")
        lines.append(f"GPU family decode: {number(speedup, 2)}× the CPU-adapter family's on this machine.")
        bw = by_family["bandwidth"]
        lines += ["", f"Decode matvecs (GPU family) against a buffer copy of {bw['copy_bytes'] / 2e6:.0f} MB: "
                  f"{number(bw['copy_gb_s'])} GB/s read + written.", "",
                  "| matrix | type | rows × cols | ms | GB/s of weights | of the copy |", "|---|---|---|---|---|---|"]
        for m in bw["matvecs"]:
            lines.append(f"| {m['matrix']} | {m['type']} | {m['rows']} × {m['cols']} | {number(m['ms'], 3)} "
                         f"| {number(m['gb_s'])} | {number(m['of_copy'], 2)} |")
    command = " ".join([COMMAND, *(m for m in results if m != MODEL), *(["--allow-cpu"] if allow_cpu else [])])
    lines += ["", f"Commands: `{command}`; each row is `burrow bench --backend wgpu --kernels K"
              f" --prompt-tokens {PROMPT_TOKENS} --gen-tokens {GEN_TOKENS} --json` (median decode of the repeats) and"
              f" `... --prompt-tokens {LONG_PROMPT_TOKENS} --gen-tokens {LONG_GEN_TOKENS} --json` (median prefill), the"
              " bandwidth table `... --kernels gpu --bandwidth`."]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="larger GGUF files to run besides the default model")
    parser.add_argument("--burrow", default=BURROW)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--out", help="also save the raw results as JSON here")
    parser.add_argument("--allow-cpu", action="store_true", help="run on a CPU adapter too (to check the script)")
    parser.add_argument("--no-write", dest="write", action="store_false", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    for path, how in ((MODEL, "make model"), (args.burrow, "make build")):
        if not (REPO / path).exists():
            sys.exit(f"bench: {path} is missing ({how})")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    results = {}
    for model in [MODEL, *args.models]:
        by_family = {}
        for kernels in FAMILIES:
            print(f"bench: {model} with the {kernels} family...", file=sys.stderr)
            by_family[kernels] = median_run(args.burrow, model, kernels, args.repeats)
            adapter = by_family[kernels]["adapter"]
            if adapter["cpu"] and not args.allow_cpu:
                sys.exit(f"bench: {adapter['name']} is a CPU adapter, not a GPU (--allow-cpu runs anyway)")
        print(f"bench: {model} bandwidth...", file=sys.stderr)
        by_family["bandwidth"] = bench(args.burrow, model, "gpu", ["--bandwidth"])["bandwidth"]
        results[model] = by_family
    text = section(results, date, args.allow_cpu)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    if args.write:
        write_section(BENCHMARKS, SECTION, text)


if __name__ == "__main__":
    main()
