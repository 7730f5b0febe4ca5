//! Incremental header parsing for a file that arrives in chunks.

use crate::{Gguf, GgufError};

/// After an incomplete attempt, wait for at least this factor (num/den) more bytes before re-parsing, so that
/// feeding a header in tiny chunks costs O(header) parsing work in total rather than O(header^2).
const RETRY_GROWTH_NUM: u64 = 3;
const RETRY_GROWTH_DEN: u64 = 2;

enum State {
    Pending,
    Done,
    Failed(GgufError),
}

/// Push parser for a file that arrives in chunks (the browser streams it). Buffers only until the header is
/// complete.
pub struct HeaderReader {
    file_len: u64,
    buf: Vec<u8>,
    /// Total bytes pushed so far.
    received: u64,
    /// Do not re-parse before this many bytes have arrived.
    next_try: u64,
    state: State,
}

impl HeaderReader {
    pub fn new(file_len: u64) -> Self {
        HeaderReader { file_len, buf: Vec::new(), received: 0, next_try: 0, state: State::Pending }
    }

    /// Feed the next chunk. Returns `Ok(Some(gguf))` exactly once, when the header becomes complete; `Ok(None)`
    /// while more bytes are needed and for every chunk pushed after the header was returned (those are
    /// ignored). After an error, every later call returns the same error.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<Gguf>, GgufError> {
        match &self.state {
            State::Done => return Ok(None),
            State::Failed(e) => return Err(e.clone()),
            State::Pending => {}
        }
        let total = self.received.saturating_add(chunk.len() as u64);
        if total > self.file_len {
            return self.fail(GgufError::LongerThanFile { len: total, file_len: self.file_len });
        }
        self.received = total;
        if total < self.next_try {
            self.buf.extend_from_slice(chunk);
            return Ok(None);
        }
        // A first chunk that holds the whole header is parsed in place, without copying it.
        let result = if self.buf.is_empty() {
            Gguf::parse(chunk, self.file_len)
        } else {
            self.buf.extend_from_slice(chunk);
            Gguf::parse(&self.buf, self.file_len)
        };
        match result {
            Ok(gguf) => {
                self.state = State::Done;
                self.buf = Vec::new();
                Ok(Some(gguf))
            }
            Err(GgufError::Incomplete { needed }) => {
                if self.buf.is_empty() {
                    self.buf.extend_from_slice(chunk);
                }
                let grown = total.saturating_mul(RETRY_GROWTH_NUM) / RETRY_GROWTH_DEN;
                self.next_try = needed.max(grown).min(self.file_len);
                Ok(None)
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: GgufError) -> Result<Option<Gguf>, GgufError> {
        self.state = State::Failed(e.clone());
        self.buf = Vec::new();
        Err(e)
    }
}
