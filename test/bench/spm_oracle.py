#!/usr/bin/env python3
"""spm_oracle.py -- a SentencePiece ("llama") vocabulary and llama.cpp's ids
for it, for the tokenizer tests.

Run from the repository root:

    python3 test/bench/spm_oracle.py

Llama 2 and TinyLlama files carry SentencePiece vocabularies; no such model
is on the package index, so this script makes a small one.  In the
throwaway environment of tokenizer_oracle.py (build/tok_oracle/venv) it
installs sentencepiece and gguf from pip, trains a 700-piece BPE model
with byte fallback on the tokenizer corpus and some English, writes its
vocabulary as a GGUF file the way llama.cpp's converter writes Llama
vocabularies (pieces, scores, token types; BOS 1, EOS 2, unknown 0), loads
that file in llama.cpp (vocab_only) and writes

    test/fixtures/spm_vocab.gguf       the vocabulary (a few kB, no tensors)
    test/fixtures/tokenizer_spm.txt    llama.cpp's ids for every corpus text,
                                       in tokenizer_oracle.py's format

test/unit/test_tokenizer.c compares tutor_llm's tokenizer with them.
"""
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_cpp_env import ROOT, ensure_venv, reexec_in  # noqa: E402
from tokenizer_oracle import CORPUS, escape  # noqa: E402

VOCAB = os.path.join(ROOT, "test", "fixtures", "spm_vocab.gguf")
OUT = os.path.join(ROOT, "test", "fixtures", "tokenizer_spm.txt")
VOCAB_SIZE = 700

WORDS = ("the student learns fractions and decimals every day while the teacher plans "
         "practice reviews assessments algebra geometry numbers patterns equations "
         "graphs lines ratios percentages division multiplication addition").split()


def training_text():
    rng = random.Random(7)
    lines = list(CORPUS) * 3
    for _ in range(2000):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + ".")
    return "\n".join(t.replace("\n", " ") for t in lines if t.strip())


def build_vocab():
    import gguf
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write(training_text())
        prefix = os.path.join(tmp, "spm")
        spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, vocab_size=VOCAB_SIZE,
                                       model_type="bpe", byte_fallback=True, character_coverage=0.9995,
                                       split_digits=True, add_dummy_prefix=True, bos_id=1, eos_id=2,
                                       unk_id=0, pad_id=-1, minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        tokens, scores, types = [], [], []
        for i in range(sp.get_piece_size()):
            tokens.append(sp.id_to_piece(i).encode("utf-8"))
            scores.append(sp.get_score(i))
            types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else
                         5 if sp.is_unused(i) else 6 if sp.is_byte(i) else 1)

    w = gguf.GGUFWriter(VOCAB, "llama")
    # hyperparameters llama.cpp reads even for a vocabulary-only load
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return len(tokens)


def main():
    import llama_cpp

    n_vocab = build_vocab()
    llm = llama_cpp.Llama(model_path=VOCAB, vocab_only=True, verbose=False)
    lines, n_tokens, bad = [], 0, []
    for special in (0, 1):
        for text in CORPUS:
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=bool(special))
            n_tokens += len(ids)
            lines.append("%d\t%s\t%s" % (special, escape(text), " ".join(str(i) for i in ids)))
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write("# tokenizer_spm.txt -- written by test/bench/spm_oracle.py from llama.cpp\n")
        f.write("# (llama-cpp-python %s, vocab_only) for test/fixtures/spm_vocab.gguf, a %d-piece\n"
                % (getattr(llama_cpp, "__version__", "?"), n_vocab))
        f.write("# SentencePiece BPE vocabulary with byte fallback trained by the script.\n")
        f.write("# Format: parse_special TAB escaped text TAB ids (no BOS), as tokenizer_smollm2.txt.\n")
        for line in lines:
            f.write(line + "\n")
    print("wrote %s (%d pieces) and %s: %d cases, %d tokens"
          % (os.path.relpath(VOCAB, ROOT), n_vocab, os.path.relpath(OUT, ROOT), len(lines), n_tokens))


if __name__ == "__main__":
    if os.environ.get("SPM_ORACLE_INNER") != "1":
        vpy = ensure_venv("tok_oracle", native=False)
        subprocess.check_call([vpy, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "sentencepiece", "gguf"], env=dict(os.environ, PIP_ROOT_USER_ACTION="ignore"))
        reexec_in(vpy, __file__, "SPM_ORACLE_INNER")
    main()
