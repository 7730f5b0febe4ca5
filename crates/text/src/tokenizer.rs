//! The tokenizer: llama.cpp's special-token partitioning and BOS/EOS rules around a Hugging Face `tokenizers`
//! BPE model built from the GGUF vocabulary.

use std::collections::HashSet;

use burrow_gguf::Gguf;
use tokenizers::models::bpe::{Merges, Vocab as HfVocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::vocab::{
    Vocab, VocabKind, ATTR_BYTE, ATTR_CONTROL, ATTR_NORMAL, ATTR_RSTRIP, ATTR_UNKNOWN,
    ATTR_USER_DEFINED,
};
use crate::TextError;

/// SentencePiece's escaped space, U+2581.
const SPM_SPACE: &str = "\u{2581}";

/// Attributes of the tokens that are split out of text before the model sees it.
const ATTR_SPECIAL_MATCHED: u8 = ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN;
/// Attributes of the tokens matched only when the caller asks for `parse_special`.
const ATTR_PARSE_SPECIAL_ONLY: u8 = ATTR_CONTROL | ATTR_UNKNOWN;

/// A tokenizer for one GGUF vocabulary, with llama.cpp's tokenization results.
pub struct Tokenizer {
    vocab: Vocab,
    model: tokenizers::Tokenizer,
    /// Tokens split out of text before encoding, longest text first (llama.cpp's order).
    specials: Vec<u32>,
    /// The bytes each token stands for.
    pieces: Vec<Vec<u8>>,
}

/// A stretch of input: either raw text still to encode, or a special token already found in it.
enum Fragment {
    Text { start: usize, end: usize },
    Token(u32),
}

fn tok_err(e: impl std::fmt::Display) -> TextError {
    TextError::Tokenizer(e.to_string())
}

impl Tokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TextError> {
        let vocab = Vocab::from_gguf(g)?;
        let model = match vocab.kind {
            VocabKind::Bpe => build_byte_level(g, &vocab)?,
            VocabKind::Spm => build_spm(g, &vocab)?,
        };

        let mut specials: Vec<u32> = (0..vocab.tokens.len() as u32)
            .filter(|&id| vocab.attrs[id as usize] & ATTR_SPECIAL_MATCHED != 0)
            .collect();
        specials.sort_by(|&a, &b| {
            vocab.tokens[b as usize]
                .len()
                .cmp(&vocab.tokens[a as usize].len())
                .then(a.cmp(&b))
        });

        let pieces = (0..vocab.tokens.len())
            .map(|id| piece_bytes(&vocab, id))
            .collect();
        Ok(Tokenizer {
            vocab,
            model,
            specials,
            pieces,
        })
    }

    /// Encode text. With `parse_special`, the text of control and unknown tokens (e.g. "<|im_start|>") becomes
    /// their id; user-defined tokens are always matched. BOS/EOS are added as the vocabulary says.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TextError> {
        self.encode_inner(text, parse_special, true)
    }

    /// [`Tokenizer::encode`] with special tokens parsed and no BOS/EOS: text that continues a
    /// prompt (between an image's embeddings).
    pub fn encode_continuation(&self, text: &str) -> Result<Vec<u32>, TextError> {
        self.encode_inner(text, true, false)
    }

    fn encode_inner(&self, text: &str, parse_special: bool, add_special: bool) -> Result<Vec<u32>, TextError> {
        let mut out = Vec::new();
        if add_special && self.vocab.add_bos {
            out.extend(self.vocab.bos);
        }
        // SentencePiece's dummy prefix goes before the first text and before text that follows a special token.
        let mut prev_special = true;
        for fragment in self.partition(text, parse_special) {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text { start, end } => {
                    let piece = &text[start..end];
                    let encoding = if self.vocab.add_space_prefix && prev_special {
                        self.model.encode_fast(format!(" {piece}"), false)
                    } else {
                        self.model.encode_fast(piece, false)
                    }
                    .map_err(tok_err)?;
                    out.extend_from_slice(encoding.get_ids());
                    prev_special = false;
                }
            }
        }
        if add_special && self.vocab.add_eos {
            out.extend(self.vocab.eos);
        }
        Ok(out)
    }

    /// Split out special tokens, longest first, each across all remaining text (llama.cpp's
    /// `tokenizer_st_partition`).
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut fragments = Vec::new();
        if text.is_empty() {
            return fragments;
        }
        fragments.push(Fragment::Text {
            start: 0,
            end: text.len(),
        });
        for &id in &self.specials {
            let attr = self.vocab.attrs[id as usize];
            if !parse_special && attr & ATTR_PARSE_SPECIAL_ONLY != 0 {
                continue;
            }
            let needle = self.vocab.tokens[id as usize].as_str();
            if !text.contains(needle) {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text { mut start, end } = fragment else {
                    next.push(fragment);
                    continue;
                };
                while let Some(pos) = text[start..end].find(needle) {
                    let at = start + pos;
                    if at > start {
                        next.push(Fragment::Text { start, end: at });
                    }
                    next.push(Fragment::Token(id));
                    start = at + needle.len();
                    if attr & ATTR_RSTRIP != 0 {
                        start += text[start..end].len()
                            - text[start..end].trim_start_matches(is_c_space).len();
                    }
                }
                if start < end {
                    next.push(Fragment::Text { start, end });
                }
            }
            fragments = next;
        }
        fragments
    }

    /// The text of `ids`: the bytes of every piece concatenated (special tokens as their text), as lossy UTF-8.
    /// For SentencePiece vocabularies the dummy prefix space of the first token is dropped, as llama.cpp's
    /// detokenizer does.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let piece = self
                .pieces
                .get(id as usize)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let piece = if i == 0 && self.vocab.add_space_prefix {
                piece.strip_prefix(b" ").unwrap_or(piece)
            } else {
                piece
            };
            bytes.extend_from_slice(piece);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The raw bytes token `id` stands for (empty for ids outside the vocabulary and for unused tokens).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.pieces.get(id as usize).cloned().unwrap_or_default()
    }

    pub(crate) fn piece(&self, id: u32) -> &[u8] {
        self.pieces
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.vocab.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.vocab.eos
    }

    /// Whether `id` ends generation (EOS, EOT, EOM, and the end markers llama.cpp recognises by their text).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.contains(&id)
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> Vec<u32> {
        self.vocab.eog.iter().copied().collect()
    }

    /// `tokenizer.ggml.model`: "gpt2" or "llama".
    pub fn model_kind(&self) -> &str {
        &self.vocab.model_name
    }

    /// The text of token `id` as stored in the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.tokens.get(id as usize).map(String::as_str)
    }
}

/// C's `isspace` in the "C" locale, which llama.cpp uses for stripping around special tokens.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

fn hf_vocab(vocab: &Vocab) -> HfVocab {
    vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect()
}

/// Byte-level BPE: the file's merges, the regex split for its pre-tokenizer name, then GPT-2's byte mapping.
fn build_byte_level(g: &Gguf, vocab: &Vocab) -> Result<tokenizers::Tokenizer, TextError> {
    let raw = g
        .get_array("tokenizer.ggml.merges")
        .ok_or_else(|| TextError::InvalidVocab("the file has no tokenizer.ggml.merges".into()))?;
    let mut seen = HashSet::with_capacity(raw.len());
    let mut merges: Merges = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let s = m
            .as_str()
            .ok_or_else(|| TextError::InvalidVocab(format!("merge {i} is not a string")))?;
        // The separator is the first space after the first character, so a merge may start with a space.
        let split = s
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == ' ')
            .map(|(at, _)| (s[..at].to_string(), s[at + 1..].to_string()))
            .ok_or_else(|| TextError::InvalidVocab(format!("merge {i} '{s}' has no separator")))?;
        for part in [&split.0, &split.1] {
            if !vocab.index.contains_key(part) {
                return Err(TextError::InvalidVocab(format!(
                    "merge {i} '{s}' uses unknown token '{part}'"
                )));
            }
        }
        if !vocab.index.contains_key(&format!("{}{}", split.0, split.1)) {
            return Err(TextError::InvalidVocab(format!(
                "merge {i} '{s}' makes a token not in the vocabulary"
            )));
        }
        // llama.cpp keeps the first rank of a repeated merge.
        if seen.insert(split.clone()) {
            merges.push(split);
        }
    }
    let bpe = BPE::builder()
        .vocab_and_merges(hf_vocab(vocab), merges)
        .ignore_merges(vocab.pre.ignore_merges)
        .build()
        .map_err(tok_err)?;

    let mut steps = Vec::with_capacity(vocab.pre.regexes.len() + 1);
    for re in vocab.pre.regexes {
        let split = Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(tok_err)?;
        steps.push(PreTokenizerWrapper::Split(split));
    }
    steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
        false, false, false,
    )));

    let mut t = tokenizers::Tokenizer::new(bpe);
    t.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(steps))));
    Ok(t)
}

/// SentencePiece-style vocabulary. llama.cpp merges adjacent pieces greedily, always taking the pair whose
/// concatenation is the vocabulary entry with the highest score (leftmost on ties). A BPE whose merges are every
/// two-piece split of every entry, ranked by that entry's score, makes the same choices.
fn build_spm(g: &Gguf, vocab: &Vocab) -> Result<tokenizers::Tokenizer, TextError> {
    let mut by_score: Vec<u32> = (0..vocab.tokens.len() as u32).collect();
    by_score.sort_by(|&a, &b| {
        vocab.scores[b as usize]
            .total_cmp(&vocab.scores[a as usize])
            .then(a.cmp(&b))
    });
    let mut merges: Merges = Vec::new();
    for id in by_score {
        let text = &vocab.tokens[id as usize];
        for (at, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(at);
            if vocab.index.contains_key(left) && vocab.index.contains_key(right) {
                merges.push((left.to_string(), right.to_string()));
            }
        }
    }
    let mut builder = BPE::builder()
        .vocab_and_merges(hf_vocab(vocab), merges)
        .byte_fallback(true);
    let unk = g.get_u64("tokenizer.ggml.unknown_token_id").unwrap_or(0) as usize;
    if let Some(text) = vocab.tokens.get(unk) {
        builder = builder.unk_token(text.clone());
    }
    let bpe = builder.build().map_err(tok_err)?;
    let mut t = tokenizers::Tokenizer::new(bpe);
    let replace = Replace::new(" ", SPM_SPACE).map_err(tok_err)?;
    t.with_normalizer(Some(NormalizerWrapper::Replace(replace)));
    Ok(t)
}

/// What llama.cpp's `token_to_piece(special = true)` gives for one token.
fn piece_bytes(vocab: &Vocab, id: usize) -> Vec<u8> {
    let attr = vocab.attrs[id];
    let text = &vocab.tokens[id];
    if attr & ATTR_SPECIAL_MATCHED != 0 {
        text.as_bytes().to_vec()
    } else if attr & ATTR_NORMAL != 0 {
        match vocab.kind {
            VocabKind::Spm => text.replace(SPM_SPACE, " ").into_bytes(),
            VocabKind::Bpe => byte_level_decode(text),
        }
    } else if attr & ATTR_BYTE != 0 {
        parse_byte_token(text).map(|b| vec![b]).unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// "<0xNN>" → NN.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2's byte-to-character table, reversed: printable bytes stand for themselves, the rest were shifted to
/// U+0100 and up in byte order. A character outside the table is kept as its own UTF-8.
fn byte_level_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match byte_of_char(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

fn is_printable_byte(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

fn byte_of_char(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 256 && is_printable_byte(cp as u8) {
        return Some(cp as u8);
    }
    // The non-printable bytes, in order: 0..=32 (33 of them), 127..=160 (34), 173.
    match cp.checked_sub(256)? {
        k @ 0..=32 => Some(k as u8),
        k @ 33..=66 => Some((127 + k - 33) as u8),
        67 => Some(0xAD),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table() {
        assert_eq!(byte_level_decode("Ġhello"), b" hello");
        assert_eq!(byte_level_decode("Ċ"), b"\n");
        assert_eq!(byte_of_char('\u{100}'), Some(0));
        assert_eq!(byte_of_char('\u{143}'), Some(0xAD));
        assert_eq!(byte_of_char('\u{144}'), None);
        // Every byte maps to a distinct character and back.
        let mut seen = HashSet::new();
        for cp in 0u32..0x144 {
            if let Some(b) = char::from_u32(cp).and_then(byte_of_char) {
                assert!(seen.insert(b));
            }
        }
        assert_eq!(seen.len(), 256);
    }

    #[test]
    fn byte_tokens() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xff>"), Some(255));
        assert_eq!(parse_byte_token("<0x1>"), None);
        assert_eq!(parse_byte_token("hello"), None);
    }
}
