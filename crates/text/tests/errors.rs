//! Malformed vocabularies give a TextError, never a panic.

use burrow_gguf::Gguf;
use burrow_text::{TextError, Tokenizer};

const GGUF_VERSION: u32 = 3;
const TYPE_I32: u32 = 5;
const TYPE_F32: u32 = 6;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;

enum Kv<'a> {
    Str(&'a str),
    Strs(&'a [&'a str]),
    I32s(&'a [i32]),
    F32s(&'a [f32]),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A minimal GGUF file with the given metadata and no tensors.
fn gguf(kvs: &[(&str, Kv)]) -> Gguf {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&GGUF_VERSION.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (key, value) in kvs {
        put_str(&mut out, key);
        match value {
            Kv::Str(s) => {
                out.extend_from_slice(&TYPE_STRING.to_le_bytes());
                put_str(&mut out, s);
            }
            Kv::Strs(items) => {
                out.extend_from_slice(&TYPE_ARRAY.to_le_bytes());
                out.extend_from_slice(&TYPE_STRING.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for s in *items {
                    put_str(&mut out, s);
                }
            }
            Kv::I32s(items) => {
                out.extend_from_slice(&TYPE_ARRAY.to_le_bytes());
                out.extend_from_slice(&TYPE_I32.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for v in *items {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Kv::F32s(items) => {
                out.extend_from_slice(&TYPE_ARRAY.to_le_bytes());
                out.extend_from_slice(&TYPE_F32.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for v in *items {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    Gguf::parse(&out, out.len() as u64).expect("test GGUF parses")
}

fn build_err(kvs: &[(&str, Kv)]) -> String {
    match Tokenizer::from_gguf(&gguf(kvs)) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

const BPE_TOKENS: &[&str] = &["a", "b", "ab", "<|endoftext|>"];

#[test]
fn unsupported_model() {
    let err = Tokenizer::from_gguf(&gguf(&[
        ("tokenizer.ggml.model", Kv::Str("bert")),
        ("tokenizer.ggml.tokens", Kv::Strs(BPE_TOKENS)),
    ]));
    assert!(matches!(err, Err(TextError::Unsupported(_))));
    assert_eq!(
        err.err().unwrap().to_string(),
        "unsupported tokenizer model 'bert'"
    );
}

#[test]
fn missing_keys() {
    assert!(build_err(&[]).contains("tokenizer.ggml.model"));
    assert!(
        build_err(&[("tokenizer.ggml.model", Kv::Str("gpt2"))]).contains("tokenizer.ggml.tokens")
    );
    assert!(build_err(&[
        ("tokenizer.ggml.model", Kv::Str("gpt2")),
        ("tokenizer.ggml.tokens", Kv::Strs(BPE_TOKENS))
    ])
    .contains("merges"));
}

#[test]
fn lengths_that_disagree() {
    let base = [
        ("tokenizer.ggml.model", Kv::Str("llama")),
        (
            "tokenizer.ggml.tokens",
            Kv::Strs(&["<unk>", "<s>", "</s>", "a"]),
        ),
    ];
    let mut kvs: Vec<(&str, Kv)> = base.into_iter().collect();
    kvs.push(("tokenizer.ggml.scores", Kv::F32s(&[0.0, 0.0])));
    assert!(build_err(&kvs).contains("2 scores for 4 tokens"));
    kvs.pop();
    kvs.push(("tokenizer.ggml.token_type", Kv::I32s(&[2, 3, 3, 1, 1])));
    assert!(build_err(&kvs).contains("5 token types for 4 tokens"));
}

#[test]
fn bad_merges() {
    let with_merges = |merges: &'static [&'static str]| {
        build_err(&[
            ("tokenizer.ggml.model", Kv::Str("gpt2")),
            ("tokenizer.ggml.tokens", Kv::Strs(BPE_TOKENS)),
            ("tokenizer.ggml.merges", Kv::Strs(merges)),
        ])
    };
    assert!(with_merges(&["a c"]).contains("unknown token 'c'"));
    assert!(with_merges(&["b a"]).contains("not in the vocabulary"));
    assert!(with_merges(&["ab"]).contains("no separator"));
}

#[test]
fn duplicate_tokens() {
    let err = build_err(&[
        ("tokenizer.ggml.model", Kv::Str("llama")),
        ("tokenizer.ggml.tokens", Kv::Strs(&["<unk>", "a", "a"])),
    ]);
    assert!(err.contains("duplicate token 'a'"), "{err}");
}

#[test]
fn minimal_bpe_works() {
    let tok = Tokenizer::from_gguf(&gguf(&[
        ("tokenizer.ggml.model", Kv::Str("gpt2")),
        ("tokenizer.ggml.pre", Kv::Str("gpt-2")),
        ("tokenizer.ggml.tokens", Kv::Strs(BPE_TOKENS)),
        ("tokenizer.ggml.token_type", Kv::I32s(&[1, 1, 1, 3])),
        ("tokenizer.ggml.merges", Kv::Strs(&["a b"])),
    ]))
    .expect("tokenizer");
    // No bos/eos keys: llama.cpp's BPE default id 11 is outside this vocabulary, so there is none.
    assert_eq!(tok.bos_id(), None);
    assert_eq!(
        tok.encode("abba<|endoftext|>", true).unwrap(),
        vec![2, 1, 0, 3]
    );
    assert_eq!(tok.eog_ids(), vec![3]);
    assert_eq!(tok.decode(&[2, 1, 3, 99]), "abb<|endoftext|>");
}
