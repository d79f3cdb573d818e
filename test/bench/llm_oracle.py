#!/usr/bin/env python3
"""llm_oracle.py -- tutor_llm's language model against llama.cpp, on the same
GGUF file, the same machine and the same number of threads.

Run from the repository root (a script, not part of the test command):

    python3 test/bench/llm_oracle.py [--threads N] [--write-fixture] [--quantize TYPE]

It builds build/core/llm_run (the runtime from the command line), installs
llama-cpp-python from pip into a throwaway virtual environment under
build/llm_oracle/ (pip builds llama.cpp from source for this CPU: several
minutes the first time) and then checks and prints:

  1. tokenization: every text of the tokenizer corpus, special tokens
     parsed, BOS as the model asks: ids identical;
  2. greedy decoding: 64 new tokens for each of the prompts below (end
     tokens do not stop either side): sequences identical;
  3. top-1 agreement: tutor_llm fed llama.cpp's sequence token by token
     must rank llama.cpp's next token first at every step;
  4. speed: a 128-token prompt, then 128 tokens decoded greedily, best of
     five alternating rounds each, tokens/s of both and the ratio
     tutor_llm / llama.cpp.

--write-fixture rewrites test/fixtures/llm_greedy_smollm2.txt, the greedy
continuations of three of the prompts that the test command compares
tutor_llm against (from llama.cpp's run, not from tutor_llm's).

--quantize TYPE runs it all on the default model requantized by llama.cpp
(build/models/requant/), so that each tensor type's kernels meet the same
checks: Q4_0, Q5_0, Q5_1, Q8_0, F16, and the K-quants where rows allow.

Exit status 0 when 1-3 hold; the speed figures are reported, not judged.
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_cpp_env import ROOT, requantized, run_beside_llm_run  # noqa: E402
from tokenizer_oracle import CORPUS  # noqa: E402

LLM_RUN = os.path.join(ROOT, "build", "core", "llm_run")
FIXTURE = os.path.join(ROOT, "test", "fixtures", "llm_greedy_smollm2.txt")
FIXTURE_TOKENS = 32

PROMPTS = [
    "The three most important things to learn in algebra are",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n",
    "<|im_start|>system\nYou are a helpful tutor.<|im_end|>\n<|im_start|>user\n"
    "Explain what a fraction is to a ten-year-old.<|im_end|>\n<|im_start|>assistant\n",
    "Photosynthesis is the process by which",
    "Question: What is 12 times 12?\nAnswer:",
    "Les mathématiques sont",
    "To solve the equation 3x + 5 = 20, first",
    # longer than one evaluation batch (64 tokens)
    "Read the passage and answer the question.\n\nThe water cycle describes how water moves "
    "between the oceans, the air and the land. Heat from the sun evaporates water from seas and "
    "lakes; the vapour rises, cools and condenses into clouds. When the droplets in a cloud grow "
    "heavy enough they fall as rain or snow. Some of that water soaks into the ground and feeds "
    "springs and wells, and some runs off into rivers that carry it back to the sea.\n\n"
    "Question: Why do clouds form when water vapour rises?\nAnswer:",
]
# the prompts whose continuations the test command checks: plain text, a
# chat turn, and a prompt of more than one batch
FIXTURE_PROMPTS = (0, 3, 8)
GEN_TOKENS = 64
BENCH_PROMPT, BENCH_GEN = 128, 128
ROUNDS = 5


model = None                    # the GGUF both runtimes run (main sets it)


def run_ours(*args):
    out = subprocess.run([LLM_RUN, model] + list(args), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("llm_run failed: %s" % out.stderr.strip())
    fields = {}
    for line in out.stdout.splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            fields[k] = v
    return fields


def escape(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def ids_of(s):
    return [int(x) for x in s.split(",")] if s.strip() else []


def ids_arg(ids):
    return ",".join(str(i) for i in ids)


def last_logits(llm):
    """The logits of the last token evaluated (without logits_all, which
    would make llama.cpp compute the output layer for every prompt token)."""
    import numpy as np
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def llama_greedy(llm, prompt_ids, n, one_at_a_time=False):
    """llama.cpp's greedy continuation, and the gap between its two best
    logits at each step (how near a tie each choice was)."""
    import numpy as np
    llm.reset()
    if one_at_a_time:
        for t in prompt_ids:
            llm.eval([t])
    else:
        llm.eval(prompt_ids)
    out, gaps = [], []
    for _ in range(n):
        logits = last_logits(llm)
        top2 = np.partition(logits, -2)[-2:]
        tok = int(np.argmax(logits))
        out.append(tok)
        gaps.append(float(abs(top2[1] - top2[0])))
        llm.eval([tok])
    return out, gaps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--write-fixture", action="store_true")
    ap.add_argument("--quantize", metavar="TYPE",
                    help="run on the default model requantized by llama.cpp (Q4_0, Q8_0, Q4_K_M...)")
    args = ap.parse_args()
    global model
    model = requantized(args.quantize)
    if args.quantize and args.write_fixture:
        raise SystemExit("--write-fixture is for the default model")

    import llama_cpp
    threads = str(args.threads)
    llm = llama_cpp.Llama(model_path=model, n_ctx=2048, n_batch=512, n_threads=args.threads,
                          n_threads_batch=args.threads, verbose=False)
    print("%s\nllama.cpp: llama-cpp-python %s, %d threads; tutor_llm: %s, %d threads"
          % (os.path.relpath(model, ROOT), getattr(llama_cpp, "__version__", "?"), args.threads,
             os.path.relpath(LLM_RUN, ROOT), args.threads))
    failures = 0

    # 1. tokenization
    same = 0
    for text in CORPUS:
        theirs = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        ours = ids_of(run_ours("tokenize", text).get("prompt_ids", "")) if text else []
        if text and ours == theirs:
            same += 1
        elif text:
            failures += 1
            print("  tokenization differs for %r:\n    llama.cpp %s\n    tutor_llm %s" % (text, theirs, ours))
    print("1. tokenization: %d of %d texts identical" % (same, sum(1 for t in CORPUS if t)))

    # 2 and 3. greedy decoding and top-1 agreement
    identical = self_identical = 0
    agree = steps = 0
    miss_gaps, all_gaps = [], []
    fixture = []
    for i, prompt in enumerate(PROMPTS):
        prompt_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        theirs, gaps = llama_greedy(llm, prompt_ids, GEN_TOKENS)
        self_identical += llama_greedy(llm, prompt_ids, GEN_TOKENS, one_at_a_time=True)[0] == theirs
        all_gaps += gaps
        ours = ids_of(run_ours("--threads", threads, "--max", str(GEN_TOKENS), "--ignore-end", "1",
                               "ids", ids_arg(prompt_ids))["ids"])
        top1 = ids_of(run_ours("--threads", threads, "teacher", ids_arg(prompt_ids), ids_arg(theirs))["top1"])
        a = sum(1 for x, y in zip(top1, theirs) if x == y)
        miss_gaps += [g for x, y, g in zip(top1, theirs, gaps) if x != y]
        agree += a
        steps += len(theirs)
        if ours == theirs:
            identical += 1
        else:
            failures += 1
            first = next(i for i, (x, y) in enumerate(zip(ours + [-1] * 64, theirs)) if x != y)
            print("  greedy differs for %r from token %d" % (prompt[:40], first))
        if a != len(theirs):
            failures += 1
            print("  top-1 differs for %r at %d of %d steps" % (prompt[:40], len(theirs) - a, len(theirs)))
        if i in FIXTURE_PROMPTS:
            fixture.append((prompt, prompt_ids, theirs[:FIXTURE_TOKENS]))
    print("2. greedy decoding, %d tokens: %d of %d prompts identical" % (GEN_TOKENS, identical, len(PROMPTS)))
    print("3. top-1 agreement under llama.cpp's sequence: %d of %d steps" % (agree, steps))
    if miss_gaps:
        import statistics
        print("   where they disagree, llama.cpp's own top-2 logit gap: median %.3f, max %.3f "
              "(over all steps: median %.3f)" % (statistics.median(miss_gaps), max(miss_gaps),
                                                 statistics.median(all_gaps)))
    print("   llama.cpp against itself, prompt fed one token at a time: %d of %d prompts identical"
          % (self_identical, len(PROMPTS)))

    if args.write_fixture and fixture:
        with open(FIXTURE, "w", encoding="utf-8", newline="\n") as f:
            f.write("# llm_greedy_smollm2.txt -- written by test/bench/llm_oracle.py from llama.cpp\n")
            f.write("# (llama-cpp-python %s): greedy continuations of the prompts below by\n"
                    % getattr(llama_cpp, "__version__", "?"))
            f.write("# SmolLM2-135M-Instruct.Q4_1.gguf, end tokens not stopping it.  Each\n")
            f.write("# case starts with its prompt line; text is escaped (\\n, \\\\).\n")
            for prompt, prompt_ids, cont in fixture:
                text = llm.detokenize(cont).decode("utf-8", errors="replace")
                f.write("prompt\t%s\n" % escape(prompt))
                f.write("prompt_ids\t%s\n" % " ".join(str(i) for i in prompt_ids))
                f.write("ids\t%s\n" % " ".join(str(i) for i in cont))
                f.write("text\t%s\n" % escape(text))
        print("wrote %s" % os.path.relpath(FIXTURE, ROOT))

    # 4. speed: the two runtimes take turns, so a slow spell of the machine
    # hits both; the best round of each counts
    import numpy as np
    n_vocab = llm.n_vocab()
    bench_ids = [(1000 + 7919 * i) % n_vocab for i in range(BENCH_PROMPT)]
    best_p = best_d = ours_p = ours_d = 0.0
    for _ in range(ROUNDS):
        time.sleep(0.5)         # let the other runtime's threads go idle
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(bench_ids)
        tp = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(BENCH_GEN):
            tok = int(np.argmax(last_logits(llm)))
            llm.eval([tok])
        td = time.perf_counter() - t0
        best_p = max(best_p, BENCH_PROMPT / tp)
        best_d = max(best_d, BENCH_GEN / td)
        time.sleep(0.5)
        f = run_ours("--threads", threads, "bench", str(BENCH_PROMPT), str(BENCH_GEN))
        ours_p = max(ours_p, float(f["prefill"].split("=")[1].split()[0]))
        ours_d = max(ours_d, float(f["decode"].split("=")[1].split()[0]))
    print("4. speed (%d-token prompt, then %d tokens; best of %d alternating rounds; %d threads):"
          % (BENCH_PROMPT, BENCH_GEN, ROUNDS, args.threads))
    print("   prefill: tutor_llm %.1f tokens/s, llama.cpp %.1f tokens/s, ratio %.2f" % (ours_p, best_p,
                                                                                       ours_p / best_p))
    print("   decode:  tutor_llm %.1f tokens/s, llama.cpp %.1f tokens/s, ratio %.2f" % (ours_d, best_d,
                                                                                       ours_d / best_d))
    print("oracle: %s" % ("all checks hold" if failures == 0 else "%d checks failed" % failures))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    run_beside_llm_run(__file__, main)
