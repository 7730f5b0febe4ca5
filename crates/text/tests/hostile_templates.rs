//! Chat templates come with model files from anywhere: one that loops, recurses or grows without end must come
//! back quickly with `TextError::TemplateLimit`, never hang the engine; real templates must still render long
//! conversations.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use burrow_text::{ChatMessage, ChatTemplate, TemplateLimit, TextError};

/// Each render runs on its own thread and must be back within this, even on a loaded machine; a hostile
/// template stops in well under a second.
const DEADLINE: Duration = Duration::from_secs(5);

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: content.into(),
    }
}

fn short_conversation() -> Vec<ChatMessage> {
    vec![
        msg("user", "hello"),
        msg("assistant", "hi"),
        msg("user", "bye"),
    ]
}

/// A system prompt and `turns` alternating user and assistant messages of 2 KB, ending with the user's.
fn long_conversation(turns: usize) -> Vec<ChatMessage> {
    let mut messages = vec![msg("system", &"s".repeat(2048))];
    for i in 0..turns {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(msg(role, &format!("{i} {}", "x".repeat(2048))));
    }
    if turns.is_multiple_of(2) {
        messages.push(msg("user", "and now?"));
    }
    messages
}

fn render_before_deadline(
    source: &str,
    bos: &str,
    eos: &str,
    messages: Vec<ChatMessage>,
) -> Result<String, TextError> {
    let (tx, rx) = mpsc::channel();
    let (owned, bos, eos) = (source.to_string(), bos.to_string(), eos.to_string());
    thread::spawn(move || {
        let rendered =
            ChatTemplate::new(&owned, &bos, &eos).and_then(|t| t.render(&messages, true));
        let _ = tx.send(rendered);
    });
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("no result within {DEADLINE:?}: {source}"))
}

/// The limit `source` hits, rendering a short conversation.
fn limit_hit(source: &str) -> TemplateLimit {
    match render_before_deadline(source, "<s>", "</s>", short_conversation()) {
        Err(TextError::TemplateLimit(limit)) => limit,
        other => panic!("{source}: want a template limit, got {other:?}"),
    }
}

#[test]
fn nested_loops_run_out_of_steps() {
    for source in [
        "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}x{% endfor %}{% endfor %}{% endfor %}",
        "{% for a in range(100000) %}{% for b in range(100000) %}{% set y = a * b %}{% endfor %}{% endfor %}",
    ] {
        assert!(matches!(limit_hit(source), TemplateLimit::Steps(_)), "{source}");
    }
}

#[test]
fn repeated_loops_over_messages_run_out_of_steps() {
    let source = "{% for i in range(100000) %}{% for j in range(100000) %}{% for m in messages %}\
                  {{ m.role }}: {{ m.content }}\n{% endfor %}{% endfor %}{% endfor %}";
    assert!(matches!(limit_hit(source), TemplateLimit::Steps(_)));
}

#[test]
fn endless_recursion_hits_the_engine_limit() {
    for source in [
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "{% macro f(n) %}{{ f(n + 1) }}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "{% include 'chat' %}{% include 'chat' %}",
    ] {
        assert!(
            matches!(limit_hit(source), TemplateLimit::Engine(_)),
            "{source}"
        );
    }
}

#[test]
fn huge_output_is_refused() {
    for source in [
        // Into the prompt, and into a variable the prompt never sees.
        "{% for i in range(100000) %}{% for j in range(100) %}{{ 'x' * 1000 }}{% endfor %}{% endfor %}",
        "{% set s %}{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endset %}{{ s | length }}",
        "{% macro m() %}{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endmacro %}{{ m() | length }}",
        // Plain template text in a loop, and one print of a sequence repeated a billion times.
        "{% for i in range(100000) %}{% for j in range(100) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}{% endfor %}",
        "{{ range(100000) * 1000000000 }}",
        "{{ {'a': [range(100000) * 1000000000]} }}",
        "{{ ['x' * 100000000] * 1000000000 }}",
    ] {
        assert!(matches!(limit_hit(source), TemplateLimit::OutputBytes(_)), "{source}");
    }
}

#[test]
fn gigabyte_strings_are_refused() {
    // minijinja refuses to repeat a string past 100 MB; printing one that large is refused too.
    assert!(matches!(
        limit_hit("{{ 'x' * 1000000000 }}"),
        TemplateLimit::Engine(_)
    ));
    for source in [
        "{% for i in range(1000) %}{{ 'x' * 100000000 }}{% endfor %}",
        "{{ ('x' * 10000000).replace('x', 'x' * 10000000) }}",
        "{{ ('x' * 10000000).replace('', 'yy') }}",
        "{{ ('x' * 10000000) | replace('x', 'x' * 10000000) }}",
        "{{ '-'.join(range(100000) * 1000000000) }}",
        "{{ (range(100000) * 1000000000) | join }}",
        "{{ ([''] * 1000000000) | join }}",
        "{{ (range(100000) * 1000000000) | tojson }}",
        "{{ [[1, [2]]] | tojson(indent=1000000000) }}",
    ] {
        assert!(
            matches!(limit_hit(source), TemplateLimit::OutputBytes(_)),
            "{source}"
        );
    }
}

#[test]
fn limits_are_reported_as_hostile_not_as_template_errors() {
    let err = render_before_deadline(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "",
        "",
        short_conversation(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("the model file's chat template ran too long (more than ")
            && text.ends_with(" steps); it may be hostile"),
        "{text}"
    );
    // The guarded filters and methods still do their ordinary work.
    let source =
        "{{ 'aaa'.replace('a', 'b', 2) }}|{{ ','.join(['a', 'b']) }}|{{ [1, 2] | join('-') }}|\
                  {{ 'abc' | replace('b', 'x') }}|{{ [1, {'a': [2]}] | tojson }}|{{ 5 is number }}";
    assert_eq!(
        render_before_deadline(source, "", "", short_conversation()).unwrap(),
        r#"bba|a,b|1-2|axc|[1, {"a": [2]}]|True"#
    );
    assert!(matches!(
        render_before_deadline("{{ 5 | join }}", "", "", short_conversation()),
        Err(TextError::Template(_))
    ));
}

#[test]
fn real_templates_render_long_conversations() {
    let golden = common::read_json("chat_templates.json");
    let mut templates: Vec<(String, String, String, String)> = golden["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let field = |k: &str| t[k].as_str().unwrap().to_string();
            (
                field("name"),
                field("template"),
                field("bos_token"),
                field("eos_token"),
            )
        })
        .collect();
    if let Some(g) = common::smollm2() {
        let source = g
            .get_str("tokenizer.chat_template")
            .expect("SmolLM2 chat template");
        templates.push((
            "SmolLM2".into(),
            source.to_string(),
            String::new(),
            String::new(),
        ));
    }
    assert!(templates.len() >= 5);
    let turns = 200;
    for (name, source, bos, eos) in &templates {
        let prompt = render_before_deadline(source, bos, eos, long_conversation(turns))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            prompt.len() > turns * 2048,
            "{name}: {} bytes",
            prompt.len()
        );
        assert!(prompt.contains(&format!("{} x", turns - 1)), "{name}");
    }
}
