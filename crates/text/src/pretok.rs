//! Pre-tokenizer regex lists for byte-level BPE vocabularies, keyed by `tokenizer.ggml.pre`.
//!
//! The lists follow llama.cpp's `llm_tokenizer_bpe` (which adapted each model's tokenizer.json): the regexes run
//! in order, each one splitting every piece the previous ones produced, keeping both matches and the text
//! between them. Case-insensitive contraction groups are spelled out as character classes, as llama.cpp does.

/// The original GPT-2 split.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3 (tiktoken cl100k style): digits in groups of up to three.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2: like Llama 3 but every digit on its own.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-4o / Llama 4: case-aware word pieces.
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Mistral's Tekken.
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const DEEPSEEK_CODER: &[&str] = &[
    r"[\r\n]",
    r"\s?\p{L}+",
    r"\s?\p{P}+",
    r"[一-龥ࠀ-一가-퟿]+",
    r"\p{N}",
];

const DEEPSEEK_V3: &[&str] = &[
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];

const FALCON: &[&str] = &[
    r"[\p{P}\$\+<=>\^~\|`]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"[0-9][0-9][0-9]",
];

/// llama.cpp's "default" BPE pre-tokenizer (a file that names none, or names "default").
const DEFAULT: &[&str] = &[
    r"[\p{P}\$\+<=>\^~\|]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
];

/// How a byte-level BPE vocabulary splits text, and the defaults llama.cpp attaches to its pre-tokenizer name.
pub(crate) struct PreTokenizerConfig {
    pub regexes: &'static [&'static str],
    /// A whole pre-token that is itself in the vocabulary is emitted as is, without running merges.
    pub ignore_merges: bool,
    /// Default for `add_bos_token` when the file does not say.
    pub add_bos: bool,
    /// llama.cpp drops the default BOS id for this family (ChatGLM).
    pub no_bos: bool,
}

const fn cfg(regexes: &'static [&'static str]) -> PreTokenizerConfig {
    PreTokenizerConfig {
        regexes,
        ignore_merges: false,
        add_bos: false,
        no_bos: false,
    }
}

/// The configuration for `tokenizer.ggml.pre`. Unknown names (including "deepseek-llm", whose letter class
/// is not carried here) get GPT-2's split, the most common one.
pub(crate) fn config_for(pre: &str) -> PreTokenizerConfig {
    match pre {
        "" | "default" => cfg(DEFAULT),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => PreTokenizerConfig {
            ignore_merges: true,
            add_bos: true,
            ..cfg(&[LLAMA3])
        },
        "dbrx" | "smaug-bpe" => cfg(&[LLAMA3]),
        "glm4" | "chatglm-bpe" => PreTokenizerConfig {
            no_bos: true,
            ..cfg(&[LLAMA3])
        },
        "qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2" | "hunyuan" => cfg(&[QWEN2]),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" => {
            cfg(&[r"\p{N}", GPT2])
        }
        "deepseek-coder" => cfg(DEEPSEEK_CODER),
        "deepseek-v3" => cfg(DEEPSEEK_V3),
        "falcon" => cfg(FALCON),
        "gpt-4o" | "llama4" => cfg(&[GPT4O]),
        "tekken" => PreTokenizerConfig {
            ignore_merges: true,
            add_bos: true,
            ..cfg(&[TEKKEN])
        },
        _ => cfg(&[GPT2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::pre_tokenizers::split::Split;
    use tokenizers::SplitDelimiterBehavior;

    #[test]
    fn every_regex_compiles() {
        let names = [
            "default",
            "llama-bpe",
            "dbrx",
            "glm4",
            "qwen2",
            "smollm",
            "deepseek-coder",
            "deepseek-v3",
            "falcon",
            "gpt-4o",
            "tekken",
            "gpt-2",
            "something-new",
        ];
        for name in names {
            for re in config_for(name).regexes {
                Split::new(
                    tokenizers::pre_tokenizers::split::SplitPattern::Regex(re.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .unwrap_or_else(|e| panic!("{name}: {re}: {e}"));
            }
        }
    }
}
