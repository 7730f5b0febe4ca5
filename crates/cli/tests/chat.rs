//! `burrow chat`, a conversation longer than its context: the oldest turns are left out (the
//! engine says how many) and every turn is answered; a message that cannot fit by itself is
//! refused and taken back, and the conversation goes on. And the command line refuses what a
//! command would ignore.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::model_path;

/// Runs `burrow chat` on the default model with a context of `ctx` tokens, one stdin line per
/// turn; returns stdout and stderr.
fn chat(ctx: usize, lines: &[String]) -> (String, String) {
    let model = model_path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_burrow"))
        .args(["chat", "--model", model.to_str().unwrap(), "--ctx", &ctx.to_string(), "--max-tokens", "8", "--temperature", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("burrow runs");
    child.stdin.take().unwrap().write_all((lines.join("\n") + "\n\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "burrow chat failed: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// The per-turn summaries `burrow chat` prints after each answer.
fn answered(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.contains(" tok/s, ")).count()
}

#[test]
fn a_conversation_longer_than_the_context_drops_its_oldest_turns_and_goes_on() {
    let lines: Vec<String> = (0..12).map(|i| format!("Question {i}: tell me about the number {i} in one short sentence.")).collect();
    let (_, stderr) = chat(128, &lines);
    assert_eq!(answered(&stderr), lines.len(), "{stderr}");
    assert!(stderr.contains("oldest messages no longer fit in the context and were left out"), "{stderr}");
    assert!(!stderr.contains("burrow:"), "{stderr}");
}

#[test]
fn a_message_too_long_for_the_context_is_refused_and_the_conversation_goes_on() {
    let long = "a very long message ".repeat(60);
    let lines = vec!["Hello!".to_string(), long, "What is the capital of France?".to_string()];
    let (_, stderr) = chat(128, &lines);
    assert_eq!(answered(&stderr), 2, "{stderr}");
    assert_eq!(stderr.matches("with room for a reply, the context holds").count(), 1, "{stderr}");
}

/// Every command takes exactly the flags it uses (clap): one it would ignore is refused with
/// status 2 before anything runs, and each command describes its own flags.
#[test]
fn commands_refuse_flags_they_would_ignore() {
    let burrow = || Command::new(env!("CARGO_BIN_EXE_burrow"));
    for args in [
        &["chat", "--model", "m.gguf", "--stop", "x"][..],
        &["info", "--model", "m.gguf", "--json"],
        &["tokenize", "--model", "m.gguf", "--text", "hi", "--backend", "wgpu"],
        &["generate", "--model", "m.gguf", "--ids", "1,2", "--chat"],
        &["bench", "--model", "m.gguf", "--gen-tokens", "0"],
    ] {
        let out = burrow().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let help = burrow().args(["generate", "--help"]).output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for flag in ["--model", "--prompt", "--ids", "--max-tokens", "--top-k", "--stop", "--chat", "--kernels", "--fast-paths", "--json"] {
        assert!(text.contains(flag), "generate --help lists {flag}:\n{text}");
    }
}
