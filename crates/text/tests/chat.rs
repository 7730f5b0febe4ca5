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
