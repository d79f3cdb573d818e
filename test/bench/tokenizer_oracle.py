#!/usr/bin/env python3
"""tokenizer_oracle.py -- expected token ids for the tokenizer tests, from
llama.cpp (through llama-cpp-python).

Run from the repository root:

    python3 test/bench/tokenizer_oracle.py

It makes a throwaway virtual environment under build/tok_oracle/venv,
installs llama-cpp-python there with pip (which builds llama.cpp from
source: several minutes on a small machine), loads the model's
vocabulary only (vocab_only=True) and writes
test/fixtures/tokenizer_smollm2.txt.  Nothing outside build/ and that
fixture is touched.

Fixture format (one case per line, fields separated by a tab):

    <parse_special 0|1> TAB <escaped text> TAB <ids separated by spaces>

Texts are escaped with \\\\, \\n, \\t, \\r and \\xHH (any other byte below
0x20 or 0x7f); everything else is UTF-8 as is.  The ids never include
BOS.  A line "big TAB <bytes> TAB <tokens> TAB <fnv64>" describes a long
text by its token count and a 64-bit FNV-1a style hash of its ids
(h = 1469598103934665603; per id: h ^= id; h *= 1099511628211): the
parse_special 0 texts in order, each followed by a newline, that whole
block repeated until the text has at least 100000 bytes.
Lines starting with '#' are comments.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_cpp_env import MODEL, ROOT, ensure_model, ensure_venv, reexec_in  # noqa: E402

OUT = os.path.join(ROOT, "test", "fixtures", "tokenizer_smollm2.txt")

CORPUS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you're right, but we've seen they'll say she'd go. Don't!",
    "YOU'RE SHOUTING, AREN'T YOU'LL?",
    "Numbers: 1234567 and 3.14159, also -42 and 1,000,000.",
    "Version 2.0.1 released on 2024-11-29 at 10:30.",
    "Chinese: 你好，世界！今天天气很好。",
    "Japanese: こんにちは世界。カタカナとひらがな。",
    "Korean: 안녕하세요 세계",
    "Russian: Привет, мир! Greek: Γειά σου Κόσμε.",
    "Accents: café naïve Ñandú Straße Ærøskøbing œuvre",
    "Arabic: مرحبا بالعالم ١٢٣",
    "Emoji: 👋🌍 🎉🎉🎉 ❤️ 👨‍👩‍👧‍👦 done",
    "Math: x² + y³ = z½ and ½ ¼ ¾",
    "Fullwidth: ＡＢＣ１２３ and ideographic\u3000space",
    "No-break\u00a0space and thin\u2009space",
    "a  b   c    d",
    "trailing spaces   ",
    "   leading spaces",
    "tabs\tand\t\tmore\ttabs",
    "\t\tindented with tabs",
    "line1\n\n\nline2\n",
    "windows\r\nline\r\nendings\r\n",
    "mixed \n \t \n  end",
    "def f(x):\n    if x > 0:\n        return x * 2\n    return -x\n",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    '{"key": "value", "list": [1, 2, 3], "nested": {"a": null}}',
    "https://example.com/path?query=1&other=two#frag",
    "<|im_start|>user\nHi<|im_end|>",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text",
    "<|im_start|><|im_end|><|im_start|>",
    "almost <|im_start but not quite |im_end|>",
    "punctuation!!! ??? ... ---- ==== ;;; ''' \"\"\"",
    "'s 't 're 've 'm 'll 'd 'x '",
    "",
    " ",
    "\n",
    "a",
    "____init____ __main__ snake_case_name camelCaseName",
    "Ünïcödé ÀÉÎÕÜ àéîõü ñ ç",
    "mixed中文and English混合text123数字",
    "Hindi: नमस्ते दुनिया १२३",
    "Thai: สวัสดีชาวโลก ๑๒๓",
    "Hebrew: שלום עולם",
    "Vietnamese: Tiếng Việt có dấu ở đây",
    "Combining: e\u0301 a\u0308 n\u0303",
    "Symbols: € £ ¥ © ® ™ « » § ¶ ° ± × ÷",
    "Math symbols: ∑ ∫ √ ∞ ≤ ≥ ≠ → ⇒",
    "Ordinals: 1st 2nd 3rd 42nd; long 12345678901234567890",
    "vertical\x0btab and form\x0cfeed and line\u2028separator",
    "lone\rreturn and \u00a0nbsp\u00a0 before words",
    "Roman numerals: Ⅻ ⅻ and circled ① ② ③",
    "it's ain't o'clock rock'n'roll '90s",
    "Ελληνικά και Кириллица и ΑΒΓ",
    "emoji with skin tone 👍🏽 and flags 🇫🇷🇯🇵 and keycap 1️⃣",
]


def escape(s: str) -> str:
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02x" % o)
        else:
            out.append(ch)
    return "".join(out)


def fnv(ids):
    h = 1469598103934665603
    for i in ids:
        h ^= i & 0xFFFFFFFF
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def big_text():
    base = "".join(t + "\n" for t in CORPUS).encode("utf-8")
    out = b""
    while len(out) < 100000:
        out += base
    return out


def run_oracle():
    import llama_cpp

    llm = llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False)
    try:
        add_bos = bool(llama_cpp.llama_vocab_get_add_bos(llm._model.vocab))
    except Exception:
        add_bos = None

    def detok(ids):
        try:
            return llm.detokenize(ids, special=True)
        except TypeError:
            return llm.detokenize(ids)

    lines = []
    n_tokens = 0
    bad_roundtrip = []
    for special in (0, 1):
        for text in CORPUS:
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=bool(special))
            n_tokens += len(ids)
            if detok(ids) != text.encode("utf-8"):
                bad_roundtrip.append((special, text))
            lines.append("%d\t%s\t%s" % (special, escape(text), " ".join(str(i) for i in ids)))
    big = big_text()
    big_ids = llm.tokenize(big, add_bos=False, special=False)
    if detok(big_ids) != big:
        bad_roundtrip.append((0, "<big text>"))

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write("# tokenizer_smollm2.txt -- written by test/bench/tokenizer_oracle.py from llama.cpp\n")
        f.write("# (llama-cpp-python %s, vocab_only) for SmolLM2-135M-Instruct.Q4_1.gguf.\n"
                % getattr(llama_cpp, "__version__", "?"))
        f.write("# Format: parse_special TAB escaped text TAB ids (no BOS); see the script.\n")
        f.write("# add_bos_token of the model: %s; the ids below never include BOS.\n"
                % ("unknown" if add_bos is None else str(add_bos).lower()))
        f.write("# llama.cpp's own decode round trip: %s.\n"
                % ("exact on every line" if not bad_roundtrip else
                   "differs on %d lines" % len(bad_roundtrip)))
        for line in lines:
            f.write(line + "\n")
        f.write("big\t%d\t%d\t%d\n" % (len(big), len(big_ids), fnv(big_ids)))
    print("wrote %s: %d cases, %d tokens, big text %d bytes -> %d tokens; round-trip mismatches: %s"
          % (os.path.relpath(OUT, ROOT), len(lines), n_tokens, len(big), len(big_ids),
             bad_roundtrip or "none"))


def main():
    ensure_model()
    if os.environ.get("TOK_ORACLE_INNER") != "1":
        reexec_in(ensure_venv("tok_oracle", native=False), __file__, "TOK_ORACLE_INNER")
    run_oracle()


if __name__ == "__main__":
    main()
