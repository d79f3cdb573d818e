#!/usr/bin/env python3
"""llm_trace.py -- where tutor_llm's forward pass and llama.cpp's part ways,
op by op, on the same GGUF (a diagnostic, not part of the test command).

    python3 test/bench/llm_trace.py [--threads N] [--steps N] [--prompt TEXT] [--quantize TYPE]

llama.cpp (the oracle's llama-cpp-python, without flash attention as the
oracle runs it) evaluates the prompt in one batch and then its own greedy
continuation for --steps tokens, handing every intermediate tensor to an
eval callback.  build/core/llm_run then feeds the same tokens the same
way (`trace` mode), writing its intermediates under llama.cpp's names.
For each step and each op the script prints how many values are
bit-identical and the largest difference, and marks the first op of each
step that differs: the place to look.
"""
import argparse
import ctypes
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_cpp_env import ROOT, requantized, run_beside_llm_run  # noqa: E402

LLM_RUN = os.path.join(ROOT, "build", "core", "llm_run")
# the ops both runtimes name, in the order a layer computes them
LAYER_OPS = ["attn_norm", "Qcur", "Kcur", "Vcur", "kqv_out", "attn_out", "ffn_inp", "ffn_norm",
             "ffn_gate", "ffn_up", "ffn_swiglu", "ffn_out", "l_out"]
FINAL_OPS = ["embd", "result_norm", "result_output"]


def trace_llama(model, prompt, steps, threads):
    """The prompt's ids, llama.cpp's intermediates {(step, layer, name):
    (rows, cols) array} and its greedy continuation."""
    import numpy as np
    import llama_cpp as L

    class Tensor(ctypes.Structure):      # struct ggml_tensor of this ggml
        _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p),
                    ("ne", ctypes.c_int64 * 4), ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int),
                    ("op_params", ctypes.c_int32 * 16), ("flags", ctypes.c_int32),
                    ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                    ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p),
                    ("name", ctypes.c_char * 64), ("extra", ctypes.c_void_p), ("padding", ctypes.c_char * 8)]

    found, step = {}, [0]

    def on_tensor(ptr, ask, _user):
        if ask:
            return True
        t = Tensor.from_address(ptr)
        name = t.name.decode(errors="replace")
        base, _, layer = name.partition("-")
        if t.type != 0 or " " in name or (base not in LAYER_OPS and name not in FINAL_OPS):
            return True
        ne, nb = list(t.ne), list(t.nb)
        size = sum((ne[i] - 1) * nb[i] for i in range(4)) + 4
        flat = np.frombuffer((ctypes.c_char * size).from_address(t.data), dtype=np.float32)
        a = np.lib.stride_tricks.as_strided(flat, shape=ne[::-1], strides=nb[::-1])
        rows = ne[1] * ne[2] * ne[3] if base not in ("Qcur", "Kcur", "Vcur") else ne[2] * ne[3]
        found[(step[0], int(layer) if layer else -1, base)] = np.array(a).reshape(rows, -1)
        return True

    callback = L.ggml_backend_sched_eval_callback(on_tensor)
    quiet = L.llama_log_callback(lambda *a: None)     # kept alive while llama.cpp runs
    L.llama_log_set(quiet, None)
    L.llama_backend_init()
    lm = L.llama_model_load_from_file(model.encode(), L.llama_model_default_params())
    cp = L.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = 2048, 512, 512
    cp.n_threads = cp.n_threads_batch = threads
    cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
    cp.cb_eval = callback
    ctx = L.llama_init_from_model(lm, cp)
    vocab = L.llama_model_get_vocab(lm)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    text = prompt.encode()
    ids = (L.llama_token * (len(text) + 8))()
    n = L.llama_tokenize(vocab, text, len(text), ids, len(ids), True, True)
    prompt_ids = list(ids[:n])
    feed, cont = list(prompt_ids), []
    for s in range(steps + 1):
        step[0] = s
        arr = (L.llama_token * len(feed))(*feed)
        if L.llama_decode(ctx, L.llama_batch_get_one(arr, len(feed))) != 0:
            raise SystemExit("llama_decode failed")
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        feed = [int(np.argmax(logits))]
        cont.append(feed[0])
    L.llama_free(ctx)
    return prompt_ids, found, cont[:steps]


def trace_ours(model, prompt_ids, cont, threads):
    import numpy as np
    found = {}
    with tempfile.NamedTemporaryFile(suffix=".trace") as f:
        out = subprocess.run([LLM_RUN, model, "--threads", str(threads), "trace",
                              ",".join(map(str, prompt_ids)), ",".join(map(str, cont)) or "", f.name],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit("llm_run failed: %s" % out.stderr.strip())
        data = open(f.name, "rb").read()
    at, head = 0, struct.Struct("<ii32siq")
    while at < len(data):
        step, layer, name, rows, cols = head.unpack_from(data, at)
        at += head.size
        a = np.frombuffer(data, dtype=np.float32, count=rows * cols, offset=at).reshape(rows, cols)
        at += 4 * rows * cols
        found[(step, layer, name.rstrip(b"\0").decode())] = a
    return found


def compare(a, b):
    """(identical values, values, largest |difference|) over the rows both
    have (llama.cpp keeps only the last token's rows in its last layer)."""
    import numpy as np
    r = min(a.shape[0], b.shape[0])
    a, b = a[-r:], b[-r:]
    return int(np.sum(a.view(np.uint32) == b.view(np.uint32))), a.size, float(np.max(np.abs(a - b)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--prompt", default="The three most important things to learn in algebra are")
    ap.add_argument("--layers", type=int, default=3, help="layers printed in full per step")
    ap.add_argument("--quantize", metavar="TYPE", help="the default model requantized (llm_oracle.py)")
    args = ap.parse_args()
    model = requantized(args.quantize)
    prompt_ids, theirs, cont = trace_llama(model, args.prompt, args.steps, args.threads)
    ours = trace_ours(model, prompt_ids, cont, args.threads)
    print("prompt: %d tokens; continuation %s" % (len(prompt_ids), cont))
    differing = 0
    for step in range(args.steps + 1):
        first = None
        layers = sorted({k[1] for k in theirs if k[0] == step and k[1] >= 0})
        order = [(-1, "embd")] + [(l, op) for l in layers for op in LAYER_OPS] + \
            [(-1, op) for op in FINAL_OPS[1:]]
        for layer, op in order:
            key = (step, layer, op)
            if key not in theirs or key not in ours:
                continue
            same, n, diff = compare(theirs[key], ours[key])
            if same != n and first is None:
                first = key
            if layer < args.layers:
                print("step %d layer %2d %-13s identical %6d of %6d  max |diff| %.3g"
                      % (step, layer, op, same, n, diff))
        print("step %d: %s" % (step, "first difference at layer %d, %s" % first[1:] if first
                                 else "every traced value identical"))
        differing += first is not None
    print("trace: %d of %d steps with a difference" % (differing, args.steps + 1))
    return 1 if differing else 0


if __name__ == "__main__":
    run_beside_llm_run(__file__, main)
