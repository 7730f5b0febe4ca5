//! Chat templates in the style of Qwen2.5, Llama 3, Gemma and Phi-3 (plus Python string methods, namespace and
//! tojson), against Python jinja2's rendering with transformers' settings (scripts/text_render_templates.py).

mod common;

use burrow_text::{ChatMessage, ChatTemplate, TextError};

#[test]
fn renders_like_jinja2() {
    let golden = common::read_json("chat_templates.json");
    let mut failures = Vec::new();
    let mut checked = 0;
    for t in golden["templates"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let template = ChatTemplate::new(
            t["template"].as_str().unwrap(),
            t["bos_token"].as_str().unwrap(),
            t["eos_token"].as_str().unwrap(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        for case in t["cases"].as_array().unwrap() {
            let label = format!(
                "{name}/{} (generation prompt {})",
                case["name"], case["add_generation_prompt"]
            );
            let messages: Vec<ChatMessage> =
                serde_json::from_value(case["messages"].clone()).unwrap();
            let got = template.render(&messages, case["add_generation_prompt"].as_bool().unwrap());
            checked += 1;
            match (got, case.get("expected"), case.get("error")) {
                (Ok(got), Some(want), _) if got == want.as_str().unwrap() => {}
                (Ok(got), Some(want), _) => {
                    failures.push(format!("{label}:\n got  {got:?}\n want {want}"))
                }
                (Err(TextError::Template(msg)), None, Some(want))
                    if msg.contains(want.as_str().unwrap()) => {}
                (got, _, want) => {
                    failures.push(format!("{label}: got {got:?}, want error {want:?}"))
                }
            }
        }
    }
    assert_eq!(checked, 50);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// SmolVLM's template (HuggingFaceTB/SmolVLM-256M-Instruct) reads each message's content as a list
/// of typed parts: string contents reach it as text parts, an image marker as a part of its own
/// (as llama.cpp's server passes image parts). Expected: Python jinja2 3.1.6 with transformers'
/// settings, given those parts.
#[test]
fn a_template_that_reads_typed_content_gets_text_parts() {
    const SMOLVLM: &str = "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";
    let template = ChatTemplate::new(SMOLVLM, "<|im_start|>", "<end_of_utterance>").unwrap();
    let message = |role: &str, content: &str| ChatMessage { role: role.into(), content: content.into() };
    let messages = [message("user", "<__media__>What is it?"), message("assistant", "A cat."), message("user", "Sure?")];
    assert_eq!(
        template.render(&messages, true).unwrap(),
        "<|im_start|>User: <__media__>What is it?<end_of_utterance>\nAssistant: A cat.<end_of_utterance>\nUser: Sure?<end_of_utterance>\nAssistant:"
    );
}
