#!/usr/bin/env python3
"""Native benchmark (not a test): Burrow against llama.cpp on the same GGUF, in one run.

Run through scripts/bench/native.sh, which provides the venv with llama-cpp-python.

- llama.cpp (llama-cpp-python's Python API, 2 threads, CPU only): prefill of the synthetic prompt
  `burrow bench` uses (the same token ids) and greedy decode, timed here.
- Burrow: `target/release/burrow bench --json` on --backend cpu and --backend wgpu (lavapipe, a CPU
  Vulkan driver, here), a chat turn (128 prompt tokens, 64 generated) and a long prefill (1,024
  prompt tokens, 4 generated); llama.cpp is measured at both sizes so every ratio compares equal
  workloads.

Each figure is the median of --repeats runs (after one warm-up run for llama.cpp; `burrow bench`
warms up by itself). Results are printed and written between the native markers of BENCHMARKS.md.
"""

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import llama_cpp
import numpy as np
from sections import write_section

REPO = Path(__file__).resolve().parents[2]
# Relative to REPO, so the recorded commands are the ones to type at the repository root.
MODEL = ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
BURROW = "target/release/burrow"
BENCHMARKS = REPO / "BENCHMARKS.md"
SECTION = "native"
COMMAND = "scripts/bench/native.sh"

THREADS = 2
DEFAULT_REPEATS = 3
# (backend, prompt tokens, generated tokens): a chat turn, and a long prefill (a pasted document).
BURROW_RUNS = [("cpu", 128, 64), ("wgpu", 128, 64), ("cpu", 1024, 4), ("wgpu", 1024, 4)]
# The synthetic prompt of `burrow bench` (crates/cli): ordinary vocabulary ids past the control
# tokens, cycling.
FIRST_ORDINARY_ID = 1000
ID_STRIDE = 37
CONTEXT = 2048
WARMUP_PROMPT_TOKENS = 8
WARMUP_GEN_TOKENS = 2
# A wgpu run on lavapipe takes a few minutes at most; anything far beyond that is stuck.
BURROW_TIMEOUT_SECONDS = 30 * 60
# `burrow bench --json` fields that are not measurements.
BURROW_TEXT_FIELDS = {"command", "backend"}
BURROW_KNOWN_FIELDS = {"model_bytes", "kv_cache_bytes", "load_seconds", "prompt_tokens", "gen_tokens",
                       "prefill_tok_s", "decode_tok_s"}
# CPU use by anything else, sampled just before the run: above this the machine was not quiet.
# (The load average lags by minutes, so it also counts the previous benchmark.)
BUSY_SAMPLE_SECONDS = 3
QUIET_CPU_FRACTION = 0.1
# The performance issue's goals, Burrow against llama.cpp.
GOAL_DECODE = 1.0
GOAL_PREFILL = 0.5


def synthetic_prompt(n_tokens, n_vocab):
    return [FIRST_ORDINARY_ID + (ID_STRIDE * i) % (n_vocab - FIRST_ORDINARY_ID) for i in range(n_tokens)]


def load_average():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def git_revision():
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.strip()
        return f"{head} + uncommitted changes" if dirty else head
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


class LlamaCpp:
    """llama.cpp through llama-cpp-python's low-level eval: prefill, then greedy decode."""

    def __init__(self):
        started = time.perf_counter()
        self.llm = llama_cpp.Llama(model_path=str(REPO / MODEL), n_threads=THREADS, n_threads_batch=THREADS,
                                   n_ctx=CONTEXT, n_gpu_layers=0, verbose=False)
        self.load_seconds = time.perf_counter() - started
        self.n_vocab = self.llm.n_vocab()

    def greedy(self):
        # eval() keeps no logits without logits_all: read the last position's from llama.cpp.
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,))
        return int(np.argmax(logits))

    def close(self):
        # Frees the model and llama.cpp's threads before Burrow runs.
        self.llm.close()

    def run(self, prompt_tokens, gen_tokens):
        """Prefill tok/s of the synthetic prompt and decode tok/s over `gen_tokens` greedy steps."""
        llm = self.llm
        llm.reset()
        started = time.perf_counter()
        llm.eval(synthetic_prompt(prompt_tokens, self.n_vocab))
        prefilled = time.perf_counter()
        for _ in range(gen_tokens):
            llm.eval([self.greedy()])
        decoded = time.perf_counter()
        return {"prefill_tok_s": prompt_tokens / (prefilled - started), "decode_tok_s": gen_tokens / (decoded - prefilled)}

    def bench(self, prompt_tokens, gen_tokens, repeats):
        self.run(WARMUP_PROMPT_TOKENS, WARMUP_GEN_TOKENS)
        runs = [self.run(prompt_tokens, gen_tokens) for _ in range(repeats)]
        return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def burrow_bench(backend, prompt_tokens, gen_tokens, repeats):
    """Medians of every numeric field of `burrow bench --json`, plus the command; or {"error"}."""
    command = [BURROW, "bench", "--model", MODEL, "--backend", backend, "--prompt-tokens", str(prompt_tokens),
               "--gen-tokens", str(gen_tokens), "--json"]
    runs = []
    for _ in range(repeats):
        try:
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=BURROW_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            return {"command": " ".join(command), "error": f"timed out after {BURROW_TIMEOUT_SECONDS} s"}
        if done.returncode != 0:
            message = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            return {"command": " ".join(command), "error": message}
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    numeric = [key for key, value in runs[0].items()
               if key not in BURROW_TEXT_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool)]
    result = {key: statistics.median(run[key] for run in runs) for key in numeric}
    result["command"] = runs[0].get("command", " ".join(command))
    return result


def ratio(a, b):
    return a / b if b else float("nan")


def goal_text(value, goal):
    if value != value:  # NaN
        return "not measured"
    return f"met (≥ {goal}×)" if value >= goal else f"short: needs {goal / value:.1f}× faster (goal ≥ {goal}×)"


def number(value, digits=2):
    return "n/a" if value is None else f"{value:.{digits}f}"


def plain(value):
    """Integers in full (byte counts), other values to 4 significant digits."""
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def cpu_ticks():
    """(busy, total) clock ticks of all cores since boot, from /proc/stat (idle and iowait are not busy)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def cpu_busy_fraction(seconds=BUSY_SAMPLE_SECONDS):
    """Fraction of all cores' time in use over the next `seconds`."""
    busy_before, total_before = cpu_ticks()
    time.sleep(seconds)
    busy_after, total_after = cpu_ticks()
    return (busy_after - busy_before) / max(1, total_after - total_before)


def own_cpu_seconds():
    """CPU seconds used by this process and its finished children (the burrow runs)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def others_fraction(ticks_before, own_before):
    """Share of the machine's CPU time used by other processes since `ticks_before`."""
    busy_after, total_after = cpu_ticks()
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    busy = (busy_after - ticks_before[0]) / ticks_per_second
    total = (total_after - ticks_before[1]) / ticks_per_second
    return max(0.0, busy - (own_cpu_seconds() - own_before)) / max(total, 1e-9)


def busy_note(busy, others):
    if max(busy, others) <= QUIET_CPU_FRACTION:
        return []
    return ["", f"**The machine was not quiet** ({busy:.0%} of the CPU in use just before the run, {others:.0%} used by "
                "other processes during it): two-thread figures, llama.cpp's above all, are likely low."]


def report(args, date, busy, others, load_before, load_after, llama_load, llama_results, burrow_results):
    options = "".join([f" --repeats {args.repeats}" if args.repeats != DEFAULT_REPEATS else ""])
    lines = [
        "## Native: Burrow vs llama.cpp",
        "",
        f"Command: `{COMMAND}{options}` (or `make bench`)",
        "",
        f"Run {date}, Burrow {git_revision()}, llama.cpp from llama-cpp-python {llama_cpp.__version__} "
        f"(built with the flags in scripts/bench/native.sh), {cpu_model()}, {os.cpu_count()} cores. "
        f"Median of {args.repeats} runs each. CPU in use just before the run {busy:.0%}, by other processes during it "
        f"{others:.0%}; load average (1/5/15 min) before {load_before}, after {load_after}.",
        *busy_note(busy, others),
        "",
        "| engine | backend | prompt tokens | prefill tok/s | generated tokens | decode tok/s | load s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (prompt_tokens, gen_tokens), result in llama_results.items():
        lines.append(f"| llama.cpp | CPU, {THREADS} threads | {prompt_tokens} | {number(result['prefill_tok_s'])} "
                     f"| {gen_tokens} | {number(result['decode_tok_s'])} | {number(llama_load)} |")
    extras = []
    for (backend, prompt_tokens, gen_tokens), result in burrow_results.items():
        if "error" in result:
            lines.append(f"| Burrow | {backend} | {prompt_tokens} | failed | {gen_tokens} | failed | |")
            continue
        lines.append(f"| Burrow | {backend} | {int(result.get('prompt_tokens', prompt_tokens))} "
                     f"| {number(result.get('prefill_tok_s'))} | {int(result.get('gen_tokens', gen_tokens))} "
                     f"| {number(result.get('decode_tok_s'))} | {number(result.get('load_seconds'))} |")
        other = {k: v for k, v in result.items() if k not in BURROW_KNOWN_FIELDS and k != "command"}
        sizes = {k: result[k] for k in ("model_bytes", "kv_cache_bytes") if k in result}
        extras.append((backend, sizes | other))
    lines += [
        "",
        "Commands behind the Burrow rows:",
        "",
        *[f"- `{result['command']}`" + (f": failed: {result['error']}" if "error" in result else "")
          for result in burrow_results.values()],
        f"- llama.cpp: `llama_cpp.Llama(MODEL, n_threads={THREADS}, n_threads_batch={THREADS}, n_ctx={CONTEXT}, "
        f"n_gpu_layers=0)`, then `eval()` of the same synthetic prompt (ids {FIRST_ORDINARY_ID} + {ID_STRIDE}·i) and "
        f"greedy `eval()` of one token at a time (argmax), timed with `time.perf_counter`, after one warm-up run.",
    ]
    if extras:
        lines += ["", "Other fields of `burrow bench --json`: " + "; ".join(
            f"{backend}: " + ", ".join(f"{key} {plain(value)}" for key, value in fields.items()) for backend, fields in extras) + "."]
    lines += [
        "",
        "| Burrow / llama.cpp | tokens | prefill | decode | prefill goal (≥ 0.5×) | decode goal (≥ 1.0×) |",
        "|---|---|---:|---:|---|---|",
    ]
    for (backend, prompt_tokens, gen_tokens), result in burrow_results.items():
        peer = llama_results[(prompt_tokens, gen_tokens)]
        prefill = ratio(result.get("prefill_tok_s", float("nan")), peer["prefill_tok_s"])
        decode = ratio(result.get("decode_tok_s", float("nan")), peer["decode_tok_s"])
        lines.append(f"| {backend} | {prompt_tokens}/{gen_tokens} | {number(prefill, 3)}× | {number(decode, 3)}× "
                     f"| {goal_text(prefill, GOAL_PREFILL)} | {goal_text(decode, GOAL_DECODE)} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--no-write", dest="write", action="store_false", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    for path, how in ((MODEL, "make model"), (BURROW, "make build")):
        if not (REPO / path).exists():
            sys.exit(f"bench: {path} is missing ({how})")

    busy = cpu_busy_fraction()
    load_before = load_average()
    ticks_before, own_before = cpu_ticks(), own_cpu_seconds()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    # One engine at a time, so none competes with another for the 2 cores.
    llama = LlamaCpp()
    llama_results = {(p, g): llama.bench(p, g, args.repeats) for p, g in dict.fromkeys((p, g) for _, p, g in BURROW_RUNS)}
    llama.close()
    burrow_results = {}
    for backend, prompt_tokens, gen_tokens in BURROW_RUNS:
        print(f"bench: burrow --backend {backend} ({prompt_tokens}/{gen_tokens} tokens)...", file=sys.stderr)
        burrow_results[(backend, prompt_tokens, gen_tokens)] = burrow_bench(backend, prompt_tokens, gen_tokens, args.repeats)
    others = others_fraction(ticks_before, own_before)
    text = report(args, date, busy, others, load_before, load_average(), llama.load_seconds, llama_results, burrow_results)
    print(text)
    if args.write:
        write_section(BENCHMARKS, SECTION, text)


if __name__ == "__main__":
    main()
