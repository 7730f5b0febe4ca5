//! `burrow`: the native command line over the same crates the browser runs. Used for tests,
//! golden checks, benchmarks and an interactive chat.

mod args;
mod engine;

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Instant;

use args::{BenchArgs, ChatArgs, Cli, Command, DeviceArgs, GenerateArgs, ImageArgs, InputArgs, LogitsArgs};
use clap::Parser;
use burrow_text::ChatMessage;
use burrow_engine::{block_on, GenerateOptions};
use burrow_model::Sampler;
use serde_json::json;

/// A failure reported as one line: the file it concerns (if any) and the problem.
struct Failure {
    file: Option<String>,
    message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure { file: None, message }
    }
}

fn main() -> ExitCode {
    // A bad command line prints clap's message and usage and exits with status 2.
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let one_line = f.message.replace('\n', " ");
            match f.file {
                Some(file) => eprintln!("burrow: {file}: {one_line}"),
                None => eprintln!("burrow: {one_line}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Info { file: Some(file), model } => info(&file, model.as_deref()),
        Command::Info { file: None, model: Some(model) } => info(&model, None),
        Command::Info { file: None, model: None } => Err("give --model FILE (or --mmproj FILE, with --model to check the pair)".to_string().into()),
        Command::Tokenize { model, text, json } => tokenize(&model, &text, json),
        Command::Logits(args) => logits(&args),
        Command::Generate(args) => generate(&args),
        Command::Chat(args) => chat(&args),
        Command::Bench(args) => bench(&args),
        Command::Shaders { json } => shaders(json),
    }
}

/// Runs `f`, labelling any failure with the model file's path.
fn with_file<T>(path: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, Failure> {
    f().map_err(|message| Failure { file: Some(path.to_string()), message })
}

/// The kernel family a loaded engine runs, as the JSON reports name it (`null` on the CPU backend).
fn kernels_json(engine: &burrow_engine::Engine) -> serde_json::Value {
    engine.model.kernels.map_or(serde_json::Value::Null, |k| json!(k.name()))
}

/// The fast paths a loaded engine's kernels take, as the JSON reports them (`null` on the CPU
/// backend).
fn fast_paths_json(engine: &burrow_engine::Engine) -> serde_json::Value {
    engine.model.kernels.map_or(serde_json::Value::Null, |k| json!({ "subgroups": k.subgroups, "f16": k.f16, "dp4a": k.dp4a }))
}

fn print_json(value: serde_json::Value) {
    println!("{value}");
}

fn info(path: &str, model: Option<&str>) -> Result<(), Failure> {
    let report = with_file(path, || engine::inspect(path, model))?;
    print!("{report}");
    Ok(())
}

fn tokenize(path: &str, text: &str, json_out: bool) -> Result<(), Failure> {
    let ids = with_file(path, || {
        let tok = engine::load_tokenizer(path)?;
        tok.encode(text, true).map_err(|e| e.to_string())
    })?;
    if json_out {
        print_json(json!({ "ids": ids }));
    } else {
        println!("{}", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
    }
    Ok(())
}

/// The prompt's token ids: `--ids`, or `--prompt` tokenized (after `render`, which may apply the
/// chat template).
fn prompt_ids(
    engine: &burrow_engine::Engine,
    input: &InputArgs,
    render: impl FnOnce(&str) -> Result<String, String>,
) -> Result<Vec<u32>, String> {
    match (&input.prompt, &input.ids) {
        (Some(prompt), None) => engine.tokenizer.encode(&render(prompt)?, true).map_err(|e| e.to_string()),
        (None, Some(ids)) => Ok(ids.clone()),
        _ => Err("give exactly one of --prompt or --ids".to_string()),
    }
}

fn logits(args: &LogitsArgs) -> Result<(), Failure> {
    let path = args.model.as_str();
    if let Some(mmproj) = &args.images.mmproj {
        return logits_with_images(args, mmproj);
    }
    let (ids, rows, kernels) = with_file(path, || {
        let engine = engine::load(path, args.device.backend, args.device.kernels())?;
        let ids = prompt_ids(&engine, &args.input, |p| Ok(p.to_string()))?;
        let n_ctx = args.context.unwrap_or(ids.len());
        let rows = if args.decode {
            block_on(engine.decoded_logits(&ids, n_ctx))?
        } else {
            block_on(engine.all_logits(&ids, n_ctx))?
        };
        Ok((ids, rows, (kernels_json(&engine), fast_paths_json(&engine))))
    })?;
    if args.json {
        print_json(json!({ "ids": ids, "logits": rows, "kernels": kernels.0, "fast_paths": kernels.1 }));
    } else {
        for (id, row) in ids.iter().zip(&rows) {
            let best = burrow_model::argmax(row);
            println!("{id}\targmax {best}\t{:.4}", row[best as usize]);
        }
    }
    Ok(())
}

/// `burrow shaders --json`: every kernel variant's WGSL (`burrow_gpu::shader_variants`), for
/// compiling them elsewhere (Chromium's Tint in the browser tests).
fn shaders(json_out: bool) -> Result<(), Failure> {
    let variants: Vec<serde_json::Value> = burrow_gpu::shader_variants()
        .into_iter()
        .map(|v| json!({ "name": v.name, "wgsl": v.wgsl, "subgroups": v.subgroups, "f16": v.f16 }))
        .collect();
    if json_out {
        print_json(json!({ "variants": variants }));
    } else {
        for v in &variants {
            println!("{}{}", v["name"].as_str().unwrap_or(""), if v["subgroups"] == true { " (subgroups)" } else { "" });
        }
    }
    Ok(())
}

fn generate(args: &GenerateArgs) -> Result<(), Failure> {
    let path = args.model.as_str();
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        sampler: args.sampling.config(),
        stop: args.stop.clone(),
        ignore_eos: args.ignore_eos,
    };
    let json_out = args.json;
    if let Some(mmproj) = &args.images.mmproj {
        return generate_with_images(args, mmproj, &opts);
    }
    let out = with_file(path, || {
        let engine = engine::load(path, args.device.backend, args.device.kernels())?;
        let prompt_ids = prompt_ids(&engine, &args.input, |prompt| {
            if !args.chat {
                return Ok(prompt.to_string());
            }
            Ok(engine.render_chat(&[ChatMessage { role: "user".into(), content: prompt.to_string() }])?)
        })?;
        let mut session = engine.new_session(prompt_ids.len() + opts.max_tokens)?;
        let mut stdout = std::io::stdout();
        let out = block_on(engine.generate(&mut session, &prompt_ids, &opts, |piece| {
            if !json_out {
                let _ = stdout.write_all(piece.as_bytes());
                let _ = stdout.flush();
            }
            true
        }))?;
        Ok((prompt_ids, out, kernels_json(&engine)))
    })?;
    let (prompt_ids, out, kernels) = out;
    let positions = prompt_ids.len();
    report_generated(json_out, json!({ "kernels": kernels, "prompt_ids": prompt_ids }), &out, positions);
    Ok(())
}

/// What `generate` prints after the streamed text: nothing but a line end, or with --json one line
/// with `fields` (the prompt's) and the generation's.
fn report_generated(json_out: bool, mut fields: serde_json::Value, out: &burrow_engine::Generated, prompt_positions: usize) {
    if !json_out {
        println!();
        return;
    }
    fields["ids"] = json!(out.ids);
    fields["text"] = json!(out.text);
    fields["finish_reason"] = json!(out.finish_reason);
    fields["prefill_tok_s"] = json!(out.prefill_tok_s(prompt_positions));
    fields["decode_tok_s"] = json!(out.decode_tok_s());
    print_json(fields);
}

/// The model with its vision projector, and the prompt with its images laid out: without `chat`
/// the images go first, each where llama.cpp's multimodal tool puts a prompt's leading media
/// marker; with it, that text is one user message.
fn load_image_prompt(
    path: &str,
    device: &DeviceArgs,
    input: &InputArgs,
    args: &ImageArgs,
    mmproj: &str,
    chat: bool,
) -> Result<(burrow_engine::Engine, burrow_engine::ImagePrompt), Failure> {
    let (images, budget) = (engine::read_images(&args.image)?, args.token_budget());
    let mut engine = with_file(path, || engine::load(path, device.backend, device.kernels()))?;
    with_file(mmproj, || engine::attach_vision(mmproj, &mut engine, budget))?;
    let prompt = with_file(path, || {
        let text = input.prompt.as_deref().unwrap_or_default();
        let text = if text.contains(burrow_engine::MEDIA_MARKER) {
            text.to_string()
        } else {
            burrow_engine::MEDIA_MARKER.repeat(images.len()) + text
        };
        let text = if chat { engine.render_chat(&[ChatMessage { role: "user".into(), content: text }])? } else { text };
        Ok(engine.image_prompt(&text, &images)?)
    })?;
    Ok((engine, prompt))
}

/// `logits --mmproj PROJ --image FILE…`: the logits at the last position of the prompt with its
/// images (what llama.cpp's multimodal path gives after evaluating a prompt).
fn logits_with_images(args: &LogitsArgs, mmproj: &str) -> Result<(), Failure> {
    let path = args.model.as_str();
    let (engine, prompt) = load_image_prompt(path, &args.device, &args.input, &args.images, mmproj, false)?;
    let n_ctx = args.context.unwrap_or(prompt.len());
    let row = with_file(path, || Ok(block_on(engine.image_prompt_logits(&prompt, n_ctx))?))?;
    if args.json {
        print_json(json!({
            "prompt_ids": prompt.text_ids,
            "image_tokens": prompt.image_tokens,
            "positions": prompt.len(),
            "logits": [row],
            "kernels": kernels_json(&engine),
        }));
    } else {
        let best = burrow_model::argmax(&row);
        println!("last of {} positions\targmax {best}\t{:.4}", prompt.len(), row[best as usize]);
    }
    Ok(())
}

/// `generate --mmproj PROJ --image FILE…`: the prompt with its images.
fn generate_with_images(args: &GenerateArgs, mmproj: &str, opts: &GenerateOptions) -> Result<(), Failure> {
    let path = args.model.as_str();
    let (engine, prompt) = load_image_prompt(path, &args.device, &args.input, &args.images, mmproj, args.chat)?;
    let out = with_file(path, || {
        let mut session = engine.new_session(prompt.len() + opts.max_tokens)?;
        let mut stdout = std::io::stdout();
        let out = block_on(engine.generate_with_images(&mut session, &prompt, opts, |piece| {
            if !args.json {
                let _ = stdout.write_all(piece.as_bytes());
                let _ = stdout.flush();
            }
            true
        }))?;
        Ok(out)
    })?;
    let fields = json!({ "kernels": kernels_json(&engine), "prompt_ids": prompt.text_ids, "image_tokens": prompt.image_tokens });
    report_generated(args.json, fields, &out, prompt.len());
    Ok(())
}

/// An interactive conversation on stdin/stdout; the KV cache keeps the shared prefix between turns.
fn chat(args: &ChatArgs) -> Result<(), Failure> {
    let path = args.model.as_str();
    let opts = GenerateOptions { max_tokens: args.max_tokens, sampler: args.sampling.config(), stop: Vec::new(), ignore_eos: false };
    let engine = with_file(path, || engine::load(path, args.device.backend, args.device.kernels()))?;
    let ctx = args.ctx.unwrap_or(engine.model.config.n_ctx_train.min(engine::DEFAULT_CHAT_CONTEXT));
    let mut chat = with_file(path, || Ok(engine.new_chat(ctx)?))?;
    let mut messages: Vec<ChatMessage> = Vec::new();
    eprintln!("Burrow chat with {path} — type a message, or an empty line to quit.");
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).map_err(|e| e.to_string())? == 0 || line.trim().is_empty() {
            return Ok(());
        }
        messages.push(ChatMessage { role: "user".into(), content: line.trim_end().to_string() });
        let started = Instant::now();
        let mut stdout = std::io::stdout();
        let turn = block_on(engine.chat(&mut chat, &messages, &[], &opts, |piece| {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
            true
        }));
        match turn {
            Ok(turn) => {
                println!();
                let out = turn.generated;
                if turn.dropped_messages > 0 {
                    eprintln!("[the {} oldest messages no longer fit in the context and were left out]", turn.dropped_messages);
                }
                eprintln!("[{} tokens, {:.1} tok/s, {:.1} s]", out.ids.len(), out.decode_tok_s(), started.elapsed().as_secs_f64());
                messages.push(ChatMessage { role: "assistant".into(), content: out.text });
            }
            Err(e) => {
                eprintln!("burrow: {path}: {e}");
                // The turn is taken back, so the roles keep alternating.
                messages.pop();
            }
        }
    }
}

/// `burrow bench`: prefill and decode speed on a synthetic prompt, past end-of-generation; greedy
/// unless sampler flags are given.
/// Not a test: run it on a quiet machine (scripts write BENCHMARKS.md from its JSON).
/// What one decode step cost the device, after warm-up.
#[derive(Default)]
struct StepCounts {
    steps: usize,
    launches: u64,
    submits: u64,
    readback_bytes: usize,
    buffers_created: u64,
    /// Every launch of the measured steps.
    dispatches: Vec<burrow_gpu::Dispatch>,
    /// Every launch of the measured prefill.
    prefill: Vec<burrow_gpu::Dispatch>,
}

impl StepCounts {
    fn per_token(&self, total: f64) -> f64 {
        if self.steps == 0 {
            0.0
        } else {
            total / self.steps as f64
        }
    }

    /// The steps' launches grouped by kernel, workgroup size and count, in order of first launch,
    /// with how many times each ran per token.
    fn dispatches_json(&self) -> serde_json::Value {
        let mut groups: Vec<(&burrow_gpu::Dispatch, usize)> = Vec::new();
        for d in &self.dispatches {
            match groups.iter_mut().find(|(g, _)| *g == d) {
                Some((_, n)) => *n += 1,
                None => groups.push((d, 1)),
            }
        }
        groups
            .iter()
            .map(|(d, n)| {
                json!({
                    "kernel": d.kernel,
                    "workgroup_size": d.workgroup_size,
                    "workgroups": d.workgroups,
                    "per_token": self.per_token(*n as f64),
                })
            })
            .collect()
    }
}

/// Decode matvecs timed alone, each queued this many times and awaited once.
const BANDWIDTH_RUNS: usize = 50;
/// How many of the model's largest matrices `--bandwidth` times.
const BANDWIDTH_MATRICES: usize = 4;

/// `bench --bandwidth`: the GB/s of weights the decode matvecs of the model's largest matrices
/// read (one token, the loaded kernel family), and a buffer copy's GB/s (read + written) as their
/// ceiling, on the engine's wgpu device.
fn bandwidth(engine: &burrow_engine::Engine) -> Result<serde_json::Value, String> {
    use burrow_model::layer::FeedForward;
    use burrow_model::Matrix;
    let net = &engine.model.net;
    let device = &engine.model.device;
    let mut matrices: Vec<(String, &Matrix)> = vec![("output".into(), net.output.as_ref().unwrap_or(&net.tok_embd))];
    fn projection<'a>(name: &str, p: &'a burrow_model::layer::Projection) -> Vec<(String, &'a Matrix)> {
        match &p.fused {
            Some(f) => vec![(format!("blk.0.{name}"), f.weight())],
            None => p.parts.iter().enumerate().map(|(i, l)| (format!("blk.0.{name}[{i}]"), l.weight())).collect(),
        }
    }
    if let Some(block) = net.blocks.first() {
        matrices.extend(projection("attn_qkv", &block.attn.input));
        matrices.push(("blk.0.attn_output".into(), block.attn.wo.weight()));
        if let FeedForward::Dense(mlp) = &block.ffn {
            matrices.extend(projection("ffn_gate_up", &mlp.input));
            matrices.push(("blk.0.ffn_down".into(), mlp.down.weight()));
        }
    }
    let mut quant: Vec<(String, &burrow_gpu::QuantTensor)> =
        matrices.into_iter().filter_map(|(name, m)| if let Matrix::Quant(q) = m { Some((name, q)) } else { None }).collect();
    quant.sort_by_key(|(_, q)| std::cmp::Reverse(q.size_bytes()));
    quant.truncate(BANDWIDTH_MATRICES);
    let timed = |op: &dyn Fn() -> Result<(), String>| -> Result<f64, String> {
        op()?;
        device.sync().map_err(|e| format!("{e:?}"))?;
        let started = Instant::now();
        for _ in 0..BANDWIDTH_RUNS {
            op()?;
        }
        device.sync().map_err(|e| format!("{e:?}"))?;
        Ok(started.elapsed().as_secs_f64() / BANDWIDTH_RUNS as f64)
    };
    let largest = quant.iter().map(|(_, q)| q.size_bytes()).max().unwrap_or(1 << 20);
    let copy = burrow_gpu::CopyBench::new(device, largest).map_err(|e| e.to_string())?;
    let copy_seconds = timed(&|| copy.run().map_err(|e| e.to_string()))?;
    if !copy.copied().map_err(|e| e.to_string())? {
        return Err("the bandwidth copy kernel did not copy its buffer".into());
    }
    let copy_gb_s = copy.bytes_moved() as f64 / copy_seconds / 1e9;
    let mut rows = Vec::new();
    for (name, w) in quant {
        let x = burn::tensor::Tensor::<2>::zeros([1, w.cols()], device);
        let seconds = timed(&|| burrow_gpu::qmatmul(x.clone(), w).map(drop).map_err(|e| e.to_string()))?;
        let gb_s = w.size_bytes() as f64 / seconds / 1e9;
        rows.push(json!({
            "matrix": name, "type": w.ty().name(), "rows": w.rows(), "cols": w.cols(), "bytes": w.size_bytes(),
            "ms": seconds * 1e3, "gb_s": gb_s, "of_copy": gb_s / copy_gb_s,
        }));
    }
    Ok(json!({ "copy_gb_s": copy_gb_s, "copy_bytes": copy.bytes_moved(), "matvecs": rows }))
}

/// Prompt tokens of `bench`'s untimed first run, which compiles the kernels: more than one, so
/// the prefill kernels are among them.
const WARM_UP_PROMPT_TOKENS: usize = 8;

/// Where `bench` takes its prompt's ids from: past the control and byte tokens real vocabularies
/// start with (half of a smaller vocabulary).
const ORDINARY_TOKENS_FROM: usize = 1000;

fn bench(args: &BenchArgs) -> Result<(), Failure> {
    let path = args.model.as_str();
    let backend = args.device.backend;
    let prompt_tokens = args.prompt_tokens as usize;
    let gen_tokens = args.gen_tokens as usize;
    let model_bytes = std::fs::metadata(path).map(|m| m.len()).map_err(|e| e.to_string())?;
    let load_started = Instant::now();
    let (engine, adapter) = with_file(path, || engine::load_on(path, backend, args.device.kernels()))?;
    let load_seconds = load_started.elapsed().as_secs_f64();
    let device = engine.model.device.clone();
    let gpu_bytes_after_load = burrow_gpu::device_memory(&device).map(|m| m.reserved_bytes);
    let c = &engine.model.config;
    // Ordinary vocabulary ids (past the control tokens at the start), cycling.
    let first = ORDINARY_TOKENS_FROM.min(c.n_vocab / 2);
    let prompt: Vec<u32> = (0..prompt_tokens).map(|i| (first + 37 * i % (c.n_vocab - first)) as u32).collect();
    let n_ctx = prompt_tokens + gen_tokens;

    // Greedy by default, as the goals are stated; either way the GPU chooses the token and 4 bytes
    // come back.
    let mut sampler = Sampler::new(args.sampling.config());
    let mut peak_gpu_bytes = gpu_bytes_after_load.unwrap_or(0);
    let mut observe = || {
        let m = burrow_gpu::device_memory(&device);
        if let Some(m) = m {
            peak_gpu_bytes = peak_gpu_bytes.max(m.reserved_bytes);
        }
        m
    };
    let (prefill_seconds, decode_seconds, generated, counts, kv_cache_bytes) = with_file(path, || {
        // A first short run compiles the kernels (a prompt's and a decode step's), so the
        // measured run sees warm pipelines.
        let warm_prompt = &prompt[..prompt.len().min(WARM_UP_PROMPT_TOKENS)];
        let mut warm = engine.new_session(warm_prompt.len() + 1)?;
        let (id, _) = block_on(engine.next_token(&mut warm, warm_prompt, &mut sampler, warm_prompt))?;
        block_on(engine.next_token(&mut warm, &[id], &mut sampler, &[warm_prompt, &[id]].concat()))?;
        observe();

        let mut session = engine.new_session(n_ctx)?;
        let kv_cache_bytes = session.kv_cache_bytes();
        let mut history = prompt.clone();
        let mut counts = StepCounts::default();
        burrow_gpu::record_dispatches(true);
        let started = Instant::now();
        let (mut id, _) = block_on(engine.next_token(&mut session, &prompt, &mut sampler, &history))?;
        let prefill_seconds = started.elapsed().as_secs_f64();
        counts.prefill = burrow_gpu::take_dispatches();
        burrow_gpu::record_dispatches(false);
        observe();
        let started = Instant::now();
        for step in 1..gen_tokens {
            history.push(id);
            let (launches, buffers) = (burrow_gpu::launches(), observe().map_or(0, |m| m.buffers));
            // Every measured step's launches are logged (the first is warm-up).
            burrow_gpu::record_dispatches(step > 1);
            let bytes;
            (id, bytes) = block_on(engine.next_token(&mut session, &[id], &mut sampler, &history))?;
            // The first decode step is warm-up: its new shapes may still grow the pools.
            if step > 1 {
                counts.steps += 1;
                let step_launches = burrow_gpu::launches() - launches;
                counts.launches += step_launches;
                // cubecl submits the queued work when it is read (once per step) and after every
                // TASKS_PER_SUBMIT launches since its last submission.
                counts.submits += 1 + step_launches / burrow_gpu::TASKS_PER_SUBMIT as u64;
                counts.readback_bytes += bytes;
                counts.buffers_created += observe().map_or(0, |m| m.buffers).saturating_sub(buffers);
                counts.dispatches.extend(burrow_gpu::take_dispatches());
            }
        }
        burrow_gpu::record_dispatches(false);
        Ok::<_, String>((prefill_seconds, started.elapsed().as_secs_f64(), gen_tokens, counts, kv_cache_bytes))
    })?;
    let decode_tok_s = if decode_seconds > 0.0 { (generated - 1) as f64 / decode_seconds } else { 0.0 };
    let per_token = |total: f64| counts.per_token(total);
    let submits = counts.submits as f64;
    let mut report = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "backend": backend.name(),
        "kernels": kernels_json(&engine),
        "adapter": adapter.map(|a| json!({ "name": a.name, "cpu": a.cpu, "subgroups": a.subgroups, "shader_f16": a.shader_f16, "dp4a": a.dp4a })),
        "fast_paths": fast_paths_json(&engine),
        "prefill_token_tile": engine.model.kernels.map(|k| k.prefill_tile()),
        "model_bytes": model_bytes,
        "kv_cache_bytes": kv_cache_bytes,
        "load_seconds": load_seconds,
        "prompt_tokens": prompt_tokens,
        "gen_tokens": generated,
        "prefill_tok_s": if prefill_seconds > 0.0 { prompt_tokens as f64 / prefill_seconds } else { 0.0 },
        "decode_tok_s": decode_tok_s,
        "measured_decode_steps": counts.steps,
        "readback_bytes_per_token": per_token(counts.readback_bytes as f64),
    });
    if let Some(after_load) = gpu_bytes_after_load {
        let extra = json!({
            "kernel_launches_per_token": per_token(counts.launches as f64),
            "submits_per_token": per_token(submits),
            "buffers_created_per_token": per_token(counts.buffers_created as f64),
            "dispatches": counts.dispatches_json(),
            "prefill_kernel_launches": counts.prefill.len(),
            "prefill_weight_bytes": counts.prefill.iter().map(|d| d.weight_bytes).sum::<u64>(),
            "gpu_bytes_after_load": after_load,
            "peak_gpu_bytes": peak_gpu_bytes,
        });
        report.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    }
    if args.bandwidth {
        let bandwidth = with_file(path, || bandwidth(&engine))?;
        report.as_object_mut().unwrap().insert("bandwidth".into(), bandwidth);
    }
    if args.json {
        print_json(report);
    } else {
        if let Some(b) = report.get("bandwidth") {
            println!("copy: {:.1} GB/s (read + written)", b["copy_gb_s"].as_f64().unwrap_or(0.0));
            for m in b["matvecs"].as_array().into_iter().flatten() {
                println!(
                    "{} {} [{}, {}]: {:.1} GB/s of weights, {:.2} of the copy",
                    m["matrix"].as_str().unwrap_or(""), m["type"].as_str().unwrap_or(""), m["rows"], m["cols"],
                    m["gb_s"].as_f64().unwrap_or(0.0), m["of_copy"].as_f64().unwrap_or(0.0)
                );
            }
        }
        println!(
            "{path} on {}: prefill {:.2} tok/s ({prompt_tokens} tokens), decode {decode_tok_s:.2} tok/s ({generated} tokens), load {load_seconds:.2} s",
            report["backend"].as_str().unwrap_or("cpu"),
            report["prefill_tok_s"].as_f64().unwrap_or(0.0),
        );
        if gpu_bytes_after_load.is_some() {
            println!(
                "per decode token: {} submits, {} kernel launches, {} bytes read back, {} buffers created; peak GPU memory {} bytes",
                report["submits_per_token"], report["kernel_launches_per_token"], report["readback_bytes_per_token"],
                report["buffers_created_per_token"], peak_gpu_bytes
            );
        }
    }
    Ok(())
}
