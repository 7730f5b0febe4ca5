#!/usr/bin/env python3
"""Make the SentencePiece-style test vocabulary for burrow-text.

Trains a tiny Llama-style SentencePiece model (BPE, byte fallback, digits split, whitespace kept as is) with the
`sentencepiece` package on the text below, writes its vocabulary as a GGUF file the way llama.cpp's converter
does (tokenizer.ggml.model = "llama", tokens, scores, token types, BOS/EOS/UNK ids, add_bos_token), and records
sentencepiece's own encodings of a set of strings as the expected ids.

Outputs (in tests/text-fixtures/):
  spm_tiny.gguf       the vocabulary, no tensors
  spm_tiny_cases.json the strings and the ids sentencepiece gives them, BOS first

Requires: pip install sentencepiece gguf==0.19.0
Run from anywhere: python3 scripts/text_make_spm_vocab.py
"""

import io
import json
import os

import gguf
import sentencepiece as spm

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT_DIR = os.path.join(ROOT, "tests", "text-fixtures")
VOCAB_SIZE = 420

TRAINING_TEXT = """\
The quick brown fox jumps over the lazy dog. The dog sleeps in the sun all day long.
A burrow is a hole or tunnel dug into the ground by an animal to create a space suitable for habitation.
Rabbits, foxes and badgers live in burrows; some burrows are very old and very deep.
Language models read text as tokens. Each token is a piece of a word, a whole word, or a single byte.
Small models can run in the browser, on the phone, or on an old laptop without a network connection.
In 2024 there were 365 days; in 2023 there were 365 as well, and 1000 is a round number.
The weather today is warm and sunny, with a light wind from the west and no rain in the forecast.
She said that the answer was simple: read the documentation, then write the tests, then the code.
Numbers like 3.14159 and 2.71828 appear in mathematics, physics and engineering all the time.
Please tell me the capital of France, the capital of Spain and the capital of Italy.
Paris is the capital of France. Madrid is the capital of Spain. Rome is the capital of Italy.
We walked along the river, over the bridge, and into the old town where the market was open.
Good morning! How are you today? I am fine, thank you, and how are you?
This sentence has    several   spaces inside it, and this one ends with a space .
Café, naïve and résumé are words with accents that appear in English text from time to time.
"""

CASES = [
    "Hello world",
    "The capital of France is Paris.",
    " leading space",
    "  two leading spaces",
    "multiple   spaces    between words",
    "trailing space ",
    "digits 12345 and 3.14159",
    "line one\nline two\n\nend",
    "tabs\tbetween\twords",
    "café naïve résumé",
    "emoji 🦙 and ünïcödé ẞ not in the vocabulary",
    "中文字符",
    "",
    "a",
]


def train():
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TRAINING_TEXT.splitlines() * 3),
        model_writer=model,
        model_type="bpe",
        vocab_size=VOCAB_SIZE,
        byte_fallback=True,
        split_digits=True,
        character_coverage=1.0,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def token_type(sp, i):
    if sp.is_unknown(i):
        return gguf.TokenType.UNKNOWN
    if sp.is_control(i):
        return gguf.TokenType.CONTROL
    if sp.is_byte(i):
        return gguf.TokenType.BYTE
    if sp.is_unused(i):
        return gguf.TokenType.UNUSED
    return gguf.TokenType.NORMAL


def write_gguf(sp, path):
    n = sp.get_piece_size()
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("burrow spm tiny test vocabulary")
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_head_count(1)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list([sp.id_to_piece(i).encode("utf-8") for i in range(n)])
    w.add_token_scores([sp.get_score(i) for i in range(n)])
    w.add_token_types([int(token_type(sp, i)) for i in range(n)])
    w.add_unk_token_id(sp.unk_id())
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    sp = train()
    os.makedirs(OUT_DIR, exist_ok=True)
    write_gguf(sp, os.path.join(OUT_DIR, "spm_tiny.gguf"))
    cases = [
        {"text": text, "ids": [sp.bos_id()] + sp.encode(text), "pieces": sp.encode(text, out_type=str)}
        for text in CASES
    ]
    meta = {
        "source": f"sentencepiece {spm.__version__} (scripts/text_make_spm_vocab.py); ids have BOS prepended, "
        "as llama.cpp adds it for this vocabulary (add_bos_token=true)",
        "vocab_size": sp.get_piece_size(),
        "cases": cases,
    }
    with open(os.path.join(OUT_DIR, "spm_tiny_cases.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
