//! The vocabulary as a GGUF file describes it, interpreted the way llama.cpp's `llama_vocab::load` does:
//! token attributes, special ids with their per-family defaults, add-BOS/EOS flags and the end-of-generation set.

use std::collections::{BTreeSet, HashMap};

use burrow_gguf::Gguf;

use crate::pretok::{self, PreTokenizerConfig};
use crate::TextError;

pub(crate) const ATTR_NORMAL: u8 = 1 << 0;
pub(crate) const ATTR_UNKNOWN: u8 = 1 << 1;
pub(crate) const ATTR_CONTROL: u8 = 1 << 2;
pub(crate) const ATTR_USER_DEFINED: u8 = 1 << 3;
pub(crate) const ATTR_UNUSED: u8 = 1 << 4;
pub(crate) const ATTR_BYTE: u8 = 1 << 5;
/// Whitespace after this special token is dropped when it is split out of text (Phi-3's tokens).
pub(crate) const ATTR_RSTRIP: u8 = 1 << 6;

/// `tokenizer.ggml.token_type` values (gguf-py's TokenType).
const TYPE_NORMAL: i64 = 1;
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;
const TYPE_UNUSED: i64 = 5;
const TYPE_BYTE: i64 = 6;

/// llama.cpp's default special ids when the file names none.
const SPM_DEFAULT_BOS: u32 = 1;
const SPM_DEFAULT_EOS: u32 = 2;
const BPE_DEFAULT_BOS_EOS: u32 = 11;

/// Token texts llama.cpp treats as end-of-generation wherever they appear in a vocabulary.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];
/// Fill-in-the-middle tokens that also end generation (pad, repo name, file separator), found by text when
/// the file gives no id.
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// gpt-oss renders these even though they look like control tokens.
const ALWAYS_RENDERED_TEXTS: &[&str] =
    &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum VocabKind {
    /// Byte-level BPE (`tokenizer.ggml.model = "gpt2"`).
    Bpe,
    /// SentencePiece-style (`tokenizer.ggml.model = "llama"`).
    Spm,
}

pub(crate) struct Vocab {
    pub kind: VocabKind,
    pub model_name: String,
    pub tokens: Vec<String>,
    pub attrs: Vec<u8>,
    pub scores: Vec<f32>,
    pub index: HashMap<String, u32>,
    pub pre: PreTokenizerConfig,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub eog: BTreeSet<u32>,
}

fn invalid(msg: impl Into<String>) -> TextError {
    TextError::InvalidVocab(msg.into())
}

/// An id key, when present and inside the vocabulary.
fn id_key(g: &Gguf, key: &str, n_tokens: usize) -> Option<u32> {
    g.get_u64(key)
        .filter(|&id| (id as usize) < n_tokens)
        .map(|id| id as u32)
}

impl Vocab {
    pub fn from_gguf(g: &Gguf) -> Result<Vocab, TextError> {
        let model_name = g
            .get_str("tokenizer.ggml.model")
            .ok_or_else(|| invalid("the file has no tokenizer.ggml.model"))?
            .to_string();
        let kind = match model_name.as_str() {
            "gpt2" => VocabKind::Bpe,
            "llama" => VocabKind::Spm,
            other => return Err(TextError::Unsupported(format!("tokenizer model '{other}'"))),
        };
        let pre = match kind {
            VocabKind::Bpe => pretok::config_for(g.get_str("tokenizer.ggml.pre").unwrap_or("")),
            // SPM vocabularies have no regex pre-tokenizer.
            VocabKind::Spm => PreTokenizerConfig {
                regexes: &[],
                ignore_merges: false,
                add_bos: true,
                no_bos: false,
            },
        };

        let raw_tokens = g
            .get_array("tokenizer.ggml.tokens")
            .ok_or_else(|| invalid("the file has no tokenizer.ggml.tokens"))?;
        let n = raw_tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(invalid(format!("{n} tokens")));
        }
        let mut tokens = Vec::with_capacity(n);
        let mut index = HashMap::with_capacity(n);
        for (i, t) in raw_tokens.iter().enumerate() {
            let text = t
                .as_str()
                .ok_or_else(|| invalid(format!("token {i} is not a string")))?;
            // llama.cpp renames empty tokens so that every id keeps a distinct text.
            let text = if text.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                text.to_string()
            };
            if let Some(prev) = index.insert(text.clone(), i as u32) {
                return Err(invalid(format!(
                    "duplicate token '{text}' has ids {prev} and {i}"
                )));
            }
            tokens.push(text);
        }

        let scores = match g.get_array("tokenizer.ggml.scores") {
            None => vec![0.0; n],
            Some(arr) => {
                if arr.len() != n {
                    return Err(invalid(format!("{} scores for {n} tokens", arr.len())));
                }
                arr.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_f32()
                            .ok_or_else(|| invalid(format!("score {i} is not a number")))
                    })
                    .collect::<Result<Vec<f32>, _>>()?
            }
        };

        let mut attrs = match g.get_array("tokenizer.ggml.token_type") {
            None => vec![ATTR_NORMAL; n],
            Some(arr) => {
                if arr.len() != n {
                    return Err(invalid(format!("{} token types for {n} tokens", arr.len())));
                }
                let mut attrs = Vec::with_capacity(n);
                for (i, v) in arr.iter().enumerate() {
                    let ty = v
                        .as_i64()
                        .ok_or_else(|| invalid(format!("token type {i} is not an integer")))?;
                    attrs.push(match ty {
                        TYPE_NORMAL => ATTR_NORMAL,
                        TYPE_UNKNOWN => ATTR_UNKNOWN,
                        TYPE_CONTROL => ATTR_CONTROL,
                        TYPE_USER_DEFINED => ATTR_USER_DEFINED,
                        TYPE_UNUSED => ATTR_UNUSED,
                        TYPE_BYTE => ATTR_BYTE,
                        // Undefined types are suppressed on output, like llama.cpp does.
                        _ => 0,
                    });
                }
                attrs
            }
        };

        let (default_bos, default_eos) = match kind {
            VocabKind::Spm => (SPM_DEFAULT_BOS, SPM_DEFAULT_EOS),
            VocabKind::Bpe => (BPE_DEFAULT_BOS_EOS, BPE_DEFAULT_BOS_EOS),
        };
        let in_range = |id: u32| ((id as usize) < n).then_some(id);
        let default_bos = if pre.no_bos {
            None
        } else {
            in_range(default_bos)
        };
        let bos = id_key(g, "tokenizer.ggml.bos_token_id", n).or(default_bos);
        let eos = id_key(g, "tokenizer.ggml.eos_token_id", n).or(in_range(default_eos));

        let add_bos = g
            .get_bool("tokenizer.ggml.add_bos_token")
            .unwrap_or(pre.add_bos);
        let add_eos = g.get_bool("tokenizer.ggml.add_eos_token").unwrap_or(false);
        let add_space_prefix = kind == VocabKind::Spm
            && g.get_bool("tokenizer.ggml.add_space_prefix")
                .unwrap_or(true);
        if add_bos && bos.is_none() {
            return Err(invalid("add_bos_token is true, but there is no BOS token"));
        }
        if add_eos && eos.is_none() {
            return Err(invalid("add_eos_token is true, but there is no EOS token"));
        }

        let eog = end_of_generation(g, &tokens, &index, &mut attrs, eos);

        // Phi-3 strips whitespace after its chat tokens (llama.cpp keys this on the model name).
        let name = g.get_str("general.name").unwrap_or("").to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for a in attrs.iter_mut() {
                if *a & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0 {
                    *a |= ATTR_RSTRIP;
                }
            }
            if let Some(&id) = index.get("</s>") {
                attrs[id as usize] |= ATTR_RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(&id) = index.get(t) {
                    attrs[id as usize] &= !ATTR_RSTRIP;
                }
            }
        }

        Ok(Vocab {
            kind,
            model_name,
            tokens,
            attrs,
            scores,
            index,
            pre,
            bos,
            eos,
            add_bos,
            add_eos,
            add_space_prefix,
            eog,
        })
    }
}

/// The set of tokens that end generation, following llama.cpp: FIM pad/repo/separator tokens, every token whose
/// text is a known end marker (these also become control tokens), EOS, EOT and EOM, minus the two
/// family-specific exceptions (gpt-oss' `<|end|>`, Gemma 4's `</s>`).
fn end_of_generation(
    g: &Gguf,
    tokens: &[String],
    index: &HashMap<String, u32>,
    attrs: &mut [u8],
    eos: Option<u32>,
) -> BTreeSet<u32> {
    let n = tokens.len();
    // When several texts of a list are present llama.cpp takes whichever its hash map yields first; the
    // lowest id is the deterministic choice here.
    let by_text = |texts: &[&str]| texts.iter().filter_map(|t| index.get(*t).copied()).min();
    let mut eog = BTreeSet::new();
    for (key, texts) in [
        ("tokenizer.ggml.fim_pad_token_id", FIM_PAD_TEXTS),
        ("tokenizer.ggml.fim_rep_token_id", FIM_REP_TEXTS),
        ("tokenizer.ggml.fim_sep_token_id", FIM_SEP_TEXTS),
    ] {
        if let Some(id) = id_key(g, key, n).or_else(|| by_text(texts)) {
            eog.insert(id);
        }
    }
    for text in EOG_TEXTS {
        if let Some(&id) = index.get(*text) {
            eog.insert(id);
            attrs[id as usize] |= ATTR_CONTROL;
        }
    }
    for text in ALWAYS_RENDERED_TEXTS {
        if let Some(&id) = index.get(*text) {
            attrs[id as usize] = ATTR_USER_DEFINED;
        }
    }
    for id in [
        eos,
        id_key(g, "tokenizer.ggml.eot_token_id", n),
        id_key(g, "tokenizer.ggml.eom_token_id", n),
    ]
    .into_iter()
    .flatten()
    {
        eog.insert(id);
    }

    let has = |eog: &BTreeSet<u32>, t: &str| index.get(t).is_some_and(|id| eog.contains(id));
    if let Some(&end) = index.get("<|end|>") {
        let calls = has(&eog, "<|call|>") || has(&eog, "<|calls|>");
        let harmony = calls && (has(&eog, "<|return|>") || has(&eog, "<|flush|>"));
        if eog.contains(&end) && harmony {
            eog.remove(&end);
            attrs[end as usize] = ATTR_USER_DEFINED;
        }
    }
    if let Some(&s) = index.get("</s>") {
        if eog.contains(&s) && has(&eog, "<|tool_response>") {
            eog.remove(&s);
            attrs[s as usize] = ATTR_NORMAL;
        }
    }
    eog
}
