//! Chat templates, rendered the way Hugging Face's `apply_chat_template` renders them: Jinja with
//! `trim_blocks` and `lstrip_blocks`, Python string methods, and the globals transformers provides
//! (`raise_exception`, `strftime_now`, a Python-compatible `tojson`).

use std::fmt::{self, Write};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use burrow_gguf::Gguf;
use minijinja::value::{from_args, Kwargs, Object, StringInput, Value, ValueKind};
use minijinja::{context, Environment, Error, ErrorKind, Output, State};
use serde::{Deserialize, Serialize};

use crate::TextError;

/// The template's name inside its environment; no extension, so nothing is auto-escaped.
const TEMPLATE_NAME: &str = "chat";

/// Where an image goes in a message's content (llama.cpp's default media marker).
pub const MEDIA_MARKER: &str = "<__media__>";

/// Content that tells whether a template prints a message's content given as a string.
const CONTENT_PROBE: &str = "burrow-content-probe";

// A chat template comes with a model file from anywhere, so a render is held to limits that real templates
// never approach and that stop a hostile one within a second or so.

/// The steps (minijinja instructions) one render may take. Real templates take 25 to 50 per message (the
/// SmolLM2 template and the Llama 3, Qwen 2.5 and Gemma styles of tests/chat.rs: about 5,000 to 10,000 for
/// 200 turns), so conversations of thousands of turns fit; a hostile loop takes about 0.1 s to run out.
const MAX_RENDER_STEPS: u64 = 4_000_000;

/// The bytes of text one render may build: the prompt, all that `{{ }}` prints (into the prompt, `{% set %}`
/// blocks and macro results alike), and any one string `replace`, `join` or `tojson` builds. A million
/// tokens is about 4 MB of text, so no prompt comes near this; and checking a value against it (counting a
/// sequence's items, at most this many) takes well under a second.
const MAX_OUTPUT_BYTES: usize = 8 << 20;

/// minijinja's own limits, by their messages: macro and include recursion (about 100 deep), `range` (100,000
/// items) and string repetition (`'x' * n`, 100 MB) each stop a template that would otherwise run away.
const ENGINE_LIMIT_MESSAGES: [&str; 3] = [
    "recursion limit exceeded",
    "range has too many elements",
    "repeated string is too large",
];

/// The temp under which a render counts the bytes its `{{ }}` print.
const PRINTED_BYTES_TEMP: &str = "burrow.printed_bytes";

/// The limit a chat template went past while rendering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateLimit {
    /// It ran more than this many steps.
    Steps(u64),
    /// It wrote, or was about to build, more than this many bytes of text.
    OutputBytes(usize),
    /// It went past one of minijinja's own limits; its message.
    Engine(String),
}

impl fmt::Display for TemplateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateLimit::Steps(n) => write!(f, "ran too long (more than {n} steps)"),
            TemplateLimit::OutputBytes(n) => write!(f, "wrote too much text (more than {n} bytes)"),
            TemplateLimit::Engine(msg) => {
                write!(f, "went past a limit of the template engine ({msg})")
            }
        }
    }
}

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
    /// Whether the template reads `content` as a list of typed parts (vision models' templates),
    /// learned at the first render.
    typed_content: OnceLock<bool>,
}

/// A message as a template that reads typed content sees it: text parts, each media marker one of
/// its own, as llama.cpp's server passes an image part.
#[derive(Serialize)]
struct TypedMessage<'a> {
    role: &'a str,
    content: Vec<TextPart<'a>>,
}

#[derive(Serialize)]
struct TextPart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

impl<'a> TypedMessage<'a> {
    fn of(message: &'a ChatMessage) -> Self {
        let mut content = Vec::new();
        for (i, text) in message.content.split(MEDIA_MARKER).enumerate() {
            if i > 0 {
                content.push(TextPart { kind: "text", text: MEDIA_MARKER });
            }
            if !text.is_empty() {
                content.push(TextPart { kind: "text", text });
            }
        }
        TypedMessage { role: &message.role, content }
    }
}

fn template_err(e: Error) -> TextError {
    TextError::Template(e.to_string())
}

/// A render's error: a limit when one was hit anywhere along the chain of causes (an include wraps the error
/// of the template it ran), otherwise an ordinary template error.
fn render_err(e: Error, output: &CappedOutput) -> TextError {
    if output.full {
        return TextError::TemplateLimit(TemplateLimit::OutputBytes(MAX_OUTPUT_BYTES));
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = cause {
        if err.is::<TooMuchText>() {
            return TextError::TemplateLimit(TemplateLimit::OutputBytes(MAX_OUTPUT_BYTES));
        }
        if let Some(err) = err.downcast_ref::<Error>() {
            if err.kind() == ErrorKind::OutOfFuel {
                return TextError::TemplateLimit(TemplateLimit::Steps(MAX_RENDER_STEPS));
            }
            if let Some(msg) = err.detail().filter(|d| ENGINE_LIMIT_MESSAGES.contains(d)) {
                return TextError::TemplateLimit(TemplateLimit::Engine(msg.to_string()));
            }
        }
        cause = err.source();
    }
    template_err(e)
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
        env.set_unknown_method_callback(python_method);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_filter("replace", replace);
        env.add_filter("join", join);
        env.set_formatter(python_formatter);
        env.set_fuel(Some(MAX_RENDER_STEPS));
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(template_err)?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            typed_content: OnceLock::new(),
        })
    }

    /// Render the conversation; with `add_generation_prompt` the template opens an assistant turn.
    /// A template that reads each message's content as a list of parts gets text parts.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TextError> {
        if *self.typed_content.get_or_init(|| self.reads_typed_content()) {
            let typed: Vec<TypedMessage> = messages.iter().map(TypedMessage::of).collect();
            return self.render_value(Value::from_serialize(&typed), add_generation_prompt);
        }
        self.render_value(Value::from_serialize(messages), add_generation_prompt)
    }

    /// Whether the template prints a message's content only when given as typed parts (as
    /// llama.cpp's template probe decides): a string content vanishes in such templates.
    fn reads_typed_content(&self) -> bool {
        let probe = ChatMessage { role: "user".into(), content: CONTENT_PROBE.into() };
        let prints = |messages: Value| self.render_value(messages, false).is_ok_and(|out| out.contains(CONTENT_PROBE));
        !prints(Value::from_serialize([&probe])) && prints(Value::from_serialize([TypedMessage::of(&probe)]))
    }

    fn render_value(&self, messages: Value, add_generation_prompt: bool) -> Result<String, TextError> {
        let template = self.env.get_template(TEMPLATE_NAME).map_err(template_err)?;
        let ctx = context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
            tools => Value::from(()),
            documents => Value::from(()),
        };
        let mut output = CappedOutput::default();
        match template.render_captured_to(ctx, &mut output) {
            Ok(_) => {
                String::from_utf8(output.bytes).map_err(|e| TextError::Template(e.to_string()))
            }
            Err(e) => Err(render_err(e, &output)),
        }
    }
}

/// The prompt as it is rendered, refusing to grow past `MAX_OUTPUT_BYTES`.
#[derive(Default)]
struct CappedOutput {
    bytes: Vec<u8>,
    full: bool,
}

impl io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > MAX_OUTPUT_BYTES - self.bytes.len() {
            self.full = true;
            return Err(io::Error::other("chat template output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bytes a render's `{{ }}` have printed so far. Text captured by `{% set %}` blocks and macro calls never
/// reaches `CappedOutput`, so it is counted here, before it is written.
#[derive(Debug, Default)]
struct PrintedBytes(AtomicUsize);

impl Object for PrintedBytes {}

/// Marks the error of a print, or a string built by a filter or method, that would pass `MAX_OUTPUT_BYTES`.
#[derive(Debug)]
struct TooMuchText;

impl fmt::Display for TooMuchText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {MAX_OUTPUT_BYTES} bytes of text")
    }
}

impl std::error::Error for TooMuchText {}

/// Refuse to write or build `len` bytes of text: no prompt can hold it.
fn check_text_len(len: usize) -> Result<(), Error> {
    if len > MAX_OUTPUT_BYTES {
        Err(Error::new(ErrorKind::InvalidOperation, "too much text").with_source(TooMuchText))
    } else {
        Ok(())
    }
}

/// Counts the bytes a value prints as, failing once they pass `MAX_OUTPUT_BYTES` so that a huge string is
/// never formatted to its end.
#[derive(Default)]
struct PrintedLen {
    len: usize,
    too_long: bool,
}

impl fmt::Write for PrintedLen {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.len += s.len();
        self.too_long = self.len > MAX_OUTPUT_BYTES;
        if self.too_long {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// The bytes `value` prints as, or `usize::MAX` once past `MAX_OUTPUT_BYTES`.
fn printed_len(value: &Value) -> usize {
    if let Some(s) = value.as_str() {
        return s.len();
    }
    if too_many_items(value) {
        return usize::MAX;
    }
    let mut printed = PrintedLen::default();
    // Any other formatting failure is left to whoever prints the value to report.
    let _ = write!(printed, "{value}");
    if printed.too_long {
        usize::MAX
    } else {
        printed.len
    }
}

/// Whether `value` holds more than `MAX_OUTPUT_BYTES` items, counting through nested sequences and maps.
/// Each item prints as at least a byte, and minijinja walks a sequence to its end even once the output has
/// failed, so a sequence repeated a billion times must be refused before it is printed. The walk keeps its
/// own stack, as values may nest thousands deep.
fn too_many_items(value: &Value) -> bool {
    // Strings are iterable too, by characters, but print as their length.
    fn children(value: &Value) -> Option<Box<dyn Iterator<Item = Value>>> {
        match value.kind() {
            ValueKind::Seq | ValueKind::Iterable => Some(Box::new(value.try_iter().ok()?)),
            ValueKind::Map => {
                let map = value.clone();
                let keys = value.try_iter().ok()?;
                Some(Box::new(
                    keys.map(move |key| map.get_item(&key).unwrap_or_default()),
                ))
            }
            _ => None,
        }
    }
    let mut items = 0usize;
    let mut stack: Vec<_> = children(value).into_iter().collect();
    while let Some(top) = stack.last_mut() {
        match top.next() {
            Some(item) => {
                items += 1;
                if items > MAX_OUTPUT_BYTES {
                    return true;
                }
                stack.extend(children(&item));
            }
            None => {
                stack.pop();
            }
        }
    }
    false
}

/// Charge a print of `len` bytes to the render, before anything is written.
fn charge_print(state: &State, len: usize) -> Result<(), Error> {
    let printed = state.get_or_set_temp_object(PRINTED_BYTES_TEMP, PrintedBytes::default);
    let total = printed.0.load(Ordering::Relaxed).saturating_add(len);
    check_text_len(total)?;
    printed.0.store(total, Ordering::Relaxed);
    Ok(())
}

/// Print booleans and none as Python does ("True", "None"); everything else as minijinja does. Every print is
/// charged to the render first (HTML escaping, which only an `autoescape` block turns on, may grow it after).
fn python_formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    let python = match value.kind() {
        ValueKind::Bool => Some(if value.is_true() { "True" } else { "False" }),
        ValueKind::None => Some("None"),
        _ => None,
    };
    charge_print(state, python.map_or_else(|| printed_len(value), str::len))?;
    match python {
        Some(text) => out.write_str(text)?,
        None => minijinja::escape_formatter(out, state, value)?,
    }
    Ok(())
}

/// The bytes `s.replace(old, new)` builds, replacing at most `count` times; an empty `old` matches around
/// every character, as in Python.
fn replaced_len(s: &str, old: &str, new: &str, count: Option<usize>) -> usize {
    let found = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(old).count()
    };
    let n = count.map_or(found, |c| c.min(found));
    (s.len() - n * old.len()).saturating_add(n.saturating_mul(new.len()))
}

/// The bytes joining `items` with `sep` builds, or `usize::MAX` once past `MAX_OUTPUT_BYTES`: it stops
/// there, and after that many items even when they are empty.
fn joined_len(items: &Value, sep: &str) -> usize {
    // Not iterable: the join itself reports that.
    let Ok(iter) = items.try_iter() else { return 0 };
    let mut len = 0usize;
    for (i, item) in iter.enumerate() {
        let sep_len = if i > 0 { sep.len() } else { 0 };
        len = len
            .saturating_add(sep_len)
            .saturating_add(printed_len(&item));
        if len > MAX_OUTPUT_BYTES || i >= MAX_OUTPUT_BYTES {
            return usize::MAX;
        }
    }
    len
}

/// Python's string methods from minijinja-contrib, with `replace` and `join` first refusing to build a
/// string no prompt could hold: one such call could otherwise exhaust memory in a single step.
fn python_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        match method {
            "replace" => {
                let (old, new, count): (&str, &str, Option<i32>) = from_args(args)?;
                let count = count.and_then(|c| usize::try_from(c).ok());
                check_text_len(replaced_len(s, old, new, count))?;
            }
            "join" => {
                let (items,): (&Value,) = from_args(args)?;
                check_text_len(joined_len(items, s))?;
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// minijinja's `replace` filter, refusing first what `python_method` refuses.
fn replace(
    state: &State,
    value: StringInput,
    from: StringInput,
    to: StringInput,
) -> Result<Value, Error> {
    check_text_len(replaced_len(
        value.as_str(),
        from.as_str(),
        to.as_str(),
        None,
    ))?;
    minijinja::filters::replace(state, value, from, to)
}

/// minijinja's `join` filter, refusing first what `python_method` refuses.
fn join(state: &State, value: &Value, joiner: Option<StringInput>) -> Result<Value, Error> {
    let sep = joiner.as_ref().map_or("", |j| j.as_str());
    check_text_len(joined_len(value, sep))?;
    minijinja::filters::join(state, value, joiner)
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
/// transformers installs as `tojson` (Jinja's own filter would HTML-escape `<`, `>`, `&` and `'`). It stops
/// past `MAX_OUTPUT_BYTES`, so neither a huge indent nor a sequence repeated a billion times exhausts memory.
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

    fn newline(&self, out: &mut String, level: usize) -> Result<(), Error> {
        if let Some(n) = self.indent {
            let spaces = n.saturating_mul(level);
            check_text_len(out.len().saturating_add(spaces))?;
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', spaces));
        }
        Ok(())
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
            write_container(
                out,
                style,
                level,
                '[',
                ']',
                value.try_iter()?,
                |out, item| write_json(out, &item, style, level + 1),
            )?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if style.sort_keys {
                keys.sort();
            }
            write_container(out, style, level, '{', '}', keys, |out, key| {
                match key.as_str() {
                    Some(s) => write_json_string(out, s),
                    None => write_json_string(out, &key.to_string()),
                }
                out.push_str(": ");
                write_json(out, &value.get_item(&key)?, style, level + 1)
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
    items: impl IntoIterator<Item = T>,
    mut write_item: impl FnMut(&mut String, T) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    let mut empty = true;
    for item in items {
        if !empty {
            out.push_str(style.item_separator());
        }
        empty = false;
        style.newline(out, level + 1)?;
        write_item(out, item)?;
        check_text_len(out.len())?;
    }
    if !empty {
        style.newline(out, level)?;
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
