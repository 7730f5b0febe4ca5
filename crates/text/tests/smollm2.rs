//! The real SmolLM2-135M-Instruct vocabulary (byte-level BPE, pre-tokenizer "smollm") against llama.cpp's
//! own tokenization, detokenization, end-of-generation set and chat prompt.

mod common;

use burrow_text::{ChatMessage, ChatTemplate, StreamDecoder, Tokenizer};

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn tokenization_matches_llama_cpp() {
    let Some(g) = common::smollm2() else { return };
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    let golden = common::read_json("smollm2_tokenize.json");
    let cases = golden["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 17);
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        for (parse_special, key) in [(true, "ids_special"), (false, "ids_nospecial")] {
            let got = tok.encode(text, parse_special).expect("encode");
            let want = ids(&case[key]);
            if got != want {
                failures.push(format!(
                    "{name} parse_special={parse_special}: got {got:?}, want {want:?}"
                ));
            }
            if case["detok_roundtrip_equal"].as_bool() == Some(true) {
                let back = tok.decode(&want);
                if back != text {
                    failures.push(format!("{name} decode: got {back:?}, want {text:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn vocabulary_facts() {
    let Some(g) = common::smollm2() else { return };
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    let chat = common::read_json("smollm2_chat.json");
    assert_eq!(tok.model_kind(), "gpt2");
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.eog_ids(), ids(&chat["eog_ids"]));
    assert!(tok.is_eog(2) && tok.is_eog(0) && !tok.is_eog(1) && !tok.is_eog(504));
    assert_eq!(tok.token_bytes(1), b"<|im_start|>");
    assert_eq!(tok.token_bytes(u32::MAX), b"");
}

#[test]
fn chat_prompt_matches_llama_cpp() {
    let Some(g) = common::smollm2() else { return };
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    let template = ChatTemplate::from_gguf(&g)
        .expect("template")
        .expect("SmolLM2 ships a chat template");
    let chat = common::read_json("smollm2_chat.json");
    let messages: Vec<ChatMessage> = serde_json::from_value(chat["messages"].clone()).unwrap();
    let prompt = template.render(&messages, true).expect("render");
    assert_eq!(prompt, chat["prompt"].as_str().unwrap());
    assert_eq!(tok.encode(&prompt, true).unwrap(), ids(&chat["prompt_ids"]));
}

#[test]
fn streaming_equals_decode() {
    let Some(g) = common::smollm2() else { return };
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    let golden = common::read_json("smollm2_tokenize.json");
    for case in golden["cases"].as_array().unwrap() {
        let want = ids(&case["ids_special"]);
        let mut stream = StreamDecoder::new(&tok);
        let mut text = String::new();
        for &id in &want {
            let part = stream.push(id);
            // Nothing but complete characters comes out mid-stream.
            assert!(!part.contains('\u{FFFD}'), "{}: {part:?}", case["name"]);
            text.push_str(&part);
        }
        text.push_str(&stream.finish());
        assert_eq!(text, tok.decode(&want), "{}", case["name"]);
    }
}
