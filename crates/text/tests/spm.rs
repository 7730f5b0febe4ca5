//! A tiny SentencePiece (BPE, byte fallback) vocabulary stored as a llama-style GGUF, against sentencepiece's
//! own encodings (scripts/text_make_spm_vocab.py makes both).

mod common;

use burrow_gguf::Gguf;
use burrow_text::{StreamDecoder, Tokenizer};

fn load() -> Tokenizer {
    let path = common::fixture("spm_tiny.gguf");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let g = Gguf::parse(&bytes, bytes.len() as u64).expect("parse spm_tiny.gguf");
    Tokenizer::from_gguf(&g).expect("tokenizer")
}

#[test]
fn encodings_match_sentencepiece() {
    let tok = load();
    let golden = common::read_json("spm_tiny_cases.json");
    let mut failures = Vec::new();
    for case in golden["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(text, false).expect("encode");
        if got != want {
            failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
        }
        // Decoding drops BOS's text only when asked; here BOS renders as "<s>" and the dummy space survives.
        let back = tok.decode(&got[1..]);
        if back != text {
            failures.push(format!("{text:?}: decoded to {back:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn vocabulary_facts() {
    let tok = load();
    assert_eq!(tok.model_kind(), "llama");
    assert_eq!(tok.vocab_size(), 420);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.eog_ids(), vec![2]);
    // Control tokens only become ids when special parsing is on; text after one gets the dummy prefix.
    let with = tok.encode("</s>a", true).unwrap();
    assert_eq!(&with[..2], &[1, 2]);
    assert_eq!(tok.decode(&with[2..]), "a");
    assert_ne!(tok.encode("</s>a", false).unwrap()[1], 2);
}

#[test]
fn byte_fallback_streams_whole_characters() {
    let tok = load();
    let ids = tok.encode("🦙 中", false).unwrap();
    let mut stream = StreamDecoder::new(&tok);
    let parts: Vec<String> = ids[1..].iter().map(|&id| stream.push(id)).collect();
    assert!(parts.iter().all(|p| !p.contains('\u{FFFD}')), "{parts:?}");
    assert_eq!(parts.concat() + &stream.finish(), " 🦙 中");
}
