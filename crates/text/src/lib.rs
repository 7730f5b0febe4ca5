//! Text side of Burrow: the tokenizer rebuilt from a GGUF file's own vocabulary (with llama.cpp's semantics),
//! an incremental detokenizer for streaming, and chat templates rendered the way Hugging Face's
//! `apply_chat_template` renders them.

mod chat;
mod pretok;
mod stream;
mod tokenizer;
mod vocab;

pub use chat::{ChatMessage, ChatTemplate, TemplateLimit, MEDIA_MARKER};
pub use stream::StreamDecoder;
pub use tokenizer::Tokenizer;

use std::fmt;

/// Everything that can go wrong while building a tokenizer, encoding, or rendering a chat template.
#[derive(Debug)]
pub enum TextError {
    /// A tokenizer kind this crate does not implement, e.g. "tokenizer model 'bert'".
    Unsupported(String),
    /// The GGUF vocabulary metadata is missing or inconsistent.
    InvalidVocab(String),
    /// The underlying tokenizer failed while building or encoding.
    Tokenizer(String),
    /// The chat template failed to compile or render (including `raise_exception`).
    Template(String),
    /// The chat template went past a limit on the work one render may do: templates come with model files
    /// from anywhere, and one that loops or grows without end must not hang the engine.
    TemplateLimit(TemplateLimit),
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::Unsupported(what) => write!(f, "unsupported {what}"),
            TextError::InvalidVocab(msg) => write!(f, "invalid tokenizer vocabulary: {msg}"),
            TextError::Tokenizer(msg) => write!(f, "tokenizer error: {msg}"),
            TextError::Template(msg) => write!(f, "chat template error: {msg}"),
            TextError::TemplateLimit(limit) => {
                write!(
                    f,
                    "the model file's chat template {limit}; it may be hostile"
                )
            }
        }
    }
}

impl std::error::Error for TextError {}
