//! Chat templates, rendered the way Hugging Face's `apply_chat_template` renders them: Jinja with
//! `trim_blocks` and `lstrip_blocks`, Python string methods, and the globals transformers provides
//! (`raise_exception`, `strftime_now`, a Python-compatible `tojson`).

use std::fmt::Write;

use burrow_gguf::Gguf;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{context, Environment, Error, ErrorKind, Output, State};
use serde::{Deserialize, Serialize};

use crate::TextError;

/// The template's name inside its environment; no extension, so nothing is auto-escaped.
const TEMPLATE_NAME: &str = "chat";

/// One turn of a conversation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A compiled chat template with the special-token strings it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

fn template_err(e: Error) -> TextError {
    TextError::Template(e.to_string())
}

/// The text of the token whose id is stored under `key`, or "" when there is none.
fn special_token_text(g: &Gguf, key: &str) -> String {
    let tokens = g.get_array("tokenizer.ggml.tokens").unwrap_or_default();
    g.get_u64(key)
        .and_then(|id| usize::try_from(id).ok())
        .and_then(|id| tokens.get(id))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

impl ChatTemplate {
    /// The template in `tokenizer.chat_template`; `Ok(None)` when the file has none.
    pub fn from_gguf(g: &Gguf) -> Result<Option<ChatTemplate>, TextError> {
        let Some(source) = g.get_str("tokenizer.chat_template") else {
            return Ok(None);
        };
        let bos = special_token_text(g, "tokenizer.ggml.bos_token_id");
        let eos = special_token_text(g, "tokenizer.ggml.eos_token_id");
        ChatTemplate::new(source, &bos, &eos).map(Some)
    }

    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate, TextError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.set_formatter(python_formatter);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(template_err)?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Render the conversation; with `add_generation_prompt` the template opens an assistant turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TextError> {
        let template = self.env.get_template(TEMPLATE_NAME).map_err(template_err)?;
        template
            .render(context! {
                messages => Value::from_serialize(messages),
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
                tools => Value::from(()),
                documents => Value::from(()),
            })
            .map_err(template_err)
    }
}

/// Print booleans and none as Python does ("True", "None"); everything else as minijinja does.
fn python_formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Bool => out.write_str(if value.is_true() { "True" } else { "False" })?,
        ValueKind::None => out.write_str("None")?,
        _ => minijinja::escape_formatter(out, state, value)?,
    }
    Ok(())
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// The local time formatted with a C `strftime` pattern, like transformers' `strftime_now`.
fn strftime_now(format: String) -> Result<String, Error> {
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("invalid strftime format '{format}'"),
        )
    })?;
    Ok(out)
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=indent, sort_keys=sort_keys)`, which is what
/// transformers installs as `tojson` (Jinja's own filter would HTML-escape `<`, `>`, `&` and `'`).
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    let style = JsonStyle {
        indent,
        sort_keys: sort_keys.unwrap_or(false),
    };
    write_json(&mut out, &value, &style, 0)?;
    Ok(Value::from(out))
}

struct JsonStyle {
    indent: Option<usize>,
    sort_keys: bool,
}

impl JsonStyle {
    /// Python puts ", " between items on one line, and "," before a newline when indenting.
    fn item_separator(&self) -> &'static str {
        if self.indent.is_some() {
            ","
        } else {
            ", "
        }
    }

    fn newline(&self, out: &mut String, level: usize) {
        if let Some(n) = self.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * level));
        }
    }
}

fn not_serializable(value: &Value) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("object of kind {} is not JSON serializable", value.kind()),
    )
}

fn write_json(
    out: &mut String,
    value: &Value,
    style: &JsonStyle,
    level: usize,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number if value.is_integer() => {
            write!(out, "{value}").map_err(|_| not_serializable(value))?
        }
        ValueKind::Number => {
            let f = f64::try_from(value.clone())?;
            write_python_float(out, f);
        }
        ValueKind::String => write_json_string(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, style, level, '[', ']', &items, |out, item| {
                write_json(out, item, style, level + 1)
            })?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if style.sort_keys {
                keys.sort();
            }
            write_container(out, style, level, '{', '}', &keys, |out, key| {
                match key.as_str() {
                    Some(s) => write_json_string(out, s),
                    None => write_json_string(out, &key.to_string()),
                }
                out.push_str(": ");
                write_json(out, &value.get_item(key)?, style, level + 1)
            })?;
        }
        _ => return Err(not_serializable(value)),
    }
    Ok(())
}

fn write_container<T>(
    out: &mut String,
    style: &JsonStyle,
    level: usize,
    open: char,
    close: char,
    items: &[T],
    mut write_item: impl FnMut(&mut String, &T) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if !items.is_empty() {
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(style.item_separator());
            }
            style.newline(out, level + 1);
            write_item(out, item)?;
        }
        style.newline(out, level);
    }
    out.push(close);
    Ok(())
}

/// Python's float repr for the values chat templates meet: integral floats keep a ".0".
fn write_python_float(out: &mut String, f: f64) {
    /// Python switches to exponent notation at this magnitude.
    const PY_REPR_EXPONENT_FROM: f64 = 1e16;
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else if f.fract() == 0.0 && f.abs() < PY_REPR_EXPONENT_FROM {
        let _ = write!(out, "{f:.1}");
    } else {
        let _ = write!(out, "{f}");
    }
}

/// A JSON string as Python writes it with `ensure_ascii=False`: only quotes, backslashes and control
/// characters are escaped.
fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn tojson_matches_python() {
        let t = ChatTemplate::new(
            "{{ {'a': 1, 'b': [true, none, 'x<y'], 'c': 2.0} | tojson }}|{{ [] | tojson }}|{{ 'é\"\\n' | tojson }}",
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            t.render(&[], false).unwrap(),
            r#"{"a": 1, "b": [true, null, "x<y"], "c": 2.0}|[]|"é\"\n""#
        );
        let t = ChatTemplate::new(
            "{{ {'b': [1, 2], 'a': {}} | tojson(indent=2, sort_keys=true) }}",
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            t.render(&[], false).unwrap(),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    2\n  ]\n}"
        );
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if m.role == 'bad' %}{{ raise_exception('no bad roles') }}{% endif %}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        assert!(t.render(&[msg("user", "hi")], false).is_ok());
        let err = t.render(&[msg("bad", "hi")], false).unwrap_err();
        assert!(matches!(err, TextError::Template(_)));
        assert!(err.to_string().starts_with("chat template error:"), "{err}");
        assert!(err.to_string().contains("no bad roles"), "{err}");
    }

    #[test]
    fn python_methods_and_globals() {
        let t = ChatTemplate::new(
            "{{ bos_token }}{{ messages[0].content.strip() }}|{{ messages[0].content.startswith('  a') }}|{{ tools is none }}|{{ strftime_now('%Y') | length }}{{ eos_token }}",
            "<s>",
            "</s>",
        )
        .unwrap();
        assert_eq!(
            t.render(&[msg("user", "  ab  ")], false).unwrap(),
            "<s>ab|True|True|4</s>"
        );
    }

    #[test]
    fn syntax_errors_are_reported() {
        let err = ChatTemplate::new("{% for %}", "", "")
            .err()
            .expect("must fail");
        assert!(err.to_string().starts_with("chat template error:"));
    }
}
