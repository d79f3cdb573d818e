#!/usr/bin/env python3
"""PyTorch reference of tutor_llm's knowledge-tracing Transformer, on the CPU.

The same model as src/models/tl_kt.c (see the comment at the top of
src/models/tl_kt.h), the same sizes, optimiser, windows, batches and
evaluation protocol as src/pg/kt_train.c and src/pg/kt_data.c, trained on
the same files, so that tutor_llm's seconds per epoch and test AUC can be
set beside an idiomatic PyTorch implementation on the same threads.
One part of the C model is left out: the "repeat" vector added to a
question that repeats the item just answered.  It only acts on data with
item ids, so the speed comparison (on ASSIST2009 skill-level, which has
none) computes the same function.


  interaction embedding  a*C[s] + (1-a)*W[s] + mu_a[i]*V[s]
  encoder                [BOS, x_0 .. x_{T-2}] -> L pre-LN blocks (causal
                         attention with ALiBi slopes 2^(-8(h+1)/H), residual
                         dropout on both branches, MLP D -> 4D -> D with exact
                         GELU) -> LayerNorm -> h
  decoder                u = Qs[s] + mu_q[i]*Qv[s] attends (causal, ALiBi) over h,
                         z = LN(u + dropout(Wo attn)),
                         logit = w2 . GELU(W1 z + b1) + b2 + item_bias[i] + skill_bias[s]
  loss                   BCE with logits, mean over scored answers
  optimiser              AdamW (0.9, 0.999, eps 1e-8), decoupled decay on matrices,
                         embeddings, item offsets and item bias; grad-norm clip 1.0;
                         linear warm-up over min(100, batches per epoch) steps
  windows, batches       each training student cut into non-overlapping windows;
                         per epoch: shuffle windows, stable sort by length, group at
                         most batch_size windows and batch_size*window answers, shuffle
                         the batch order
  selection              a validation share of the students, AUC after every epoch,
                         the best epoch's parameters kept, patience epochs without gain stop
  test                   next-answer protocol, every answer scored once, windows with
                         a stride of window/2 (kt_eval_windows)

The random streams differ from tutor_llm's (NumPy and torch generators
instead of the core's), so the validation split and the batch order are
equal in law, not draw for draw.

Usage: kt_torch.py DATA_DIR [--dataset assist2009_skill] [--threads 2] [--epochs 30] ...
Prints one line per epoch and, last, one line "RESULT {json}".
"""
import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kt_benchmark as kb  # noqa: E402  (the dataset readers; imports nothing heavy)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

WARMUP_STEPS = 100
LN_EPS = 1e-5


# ---- data -------------------------------------------------------------------------------


class Vocab:
    """Ids to indexes, 0 = unknown or none, grown in first-seen order like tutor_llm's."""

    def __init__(self):
        self.index = {}

    def add(self, key):
        if key is None:
            return 0
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.index) + 1
        return i

    def get(self, key):
        return 0 if key is None else self.index.get(key, 0)

    def __len__(self):
        return len(self.index) + 1


class Packed:
    """Students' answers concatenated, oldest first."""

    def __init__(self, students, items, skills, grow, min_answers):
        it, sk, co, start, length = [], [], [], [], []
        n = 0
        for st in students:
            if len(st.correct) < min_answers:
                continue
            look_i = items.add if grow else items.get
            look_s = skills.add if grow else skills.get
            start.append(n)
            length.append(len(st.correct))
            for k in range(len(st.correct)):
                it.append(look_i(st.items[k] if st.items is not None else None))
                sk.append(look_s(st.skills[k] if st.skills is not None else None))
                co.append(st.correct[k])
            n += len(st.correct)
        self.item = np.asarray(it, dtype=np.int64)
        self.skill = np.asarray(sk, dtype=np.int64)
        self.correct = np.asarray(co, dtype=np.float32)
        self.start = np.asarray(start, dtype=np.int64)
        self.len = np.asarray(length, dtype=np.int64)
        self.n_students = len(length)
        self.n = n


def train_windows(d, students, window):
    """Non-overlapping windows (student, start, len, score_from), as kt_train_windows."""
    out = []
    for s in students:
        n = int(d.len[s])
        for start in range(0, n, window):
            out.append((s, start, min(window, n - start), 0))
    return out


def eval_windows(d, students, window):
    """Windows that score each answer once with window/2 context, as kt_eval_windows."""
    out = []
    stride = max(1, window // 2)
    for s in students:
        n = int(d.len[s])
        scored = start = 0
        while scored < n:
            ln = min(window, n - start)
            out.append((s, start, ln, scored - start))
            scored = start + ln
            start = scored - (window - stride)
    return out


def make_batches(w, max_windows, max_tokens):
    """Batch boundaries over windows sorted by length, as kt_make_batches."""
    starts = []
    first = 0
    while first < len(w):
        last = first + 1
        longest = w[first][2]
        while last < len(w) and last - first < max_windows and \
                (last - first + 1) * max(longest, w[last][2]) <= max_tokens:
            longest = max(longest, w[last][2])
            last += 1
        starts.append(first)
        first = last
    starts.append(len(w))
    return starts


def fill_batch(d, w):
    """(items, skills, correct, valid, weight) tensors of shape (B, T)."""
    B = len(w)
    T = max(x[2] for x in w)
    items = np.zeros((B, T), dtype=np.int64)
    skills = np.zeros((B, T), dtype=np.int64)
    correct = np.zeros((B, T), dtype=np.float32)
    valid = np.zeros((B, T), dtype=bool)
    weight = np.zeros((B, T), dtype=np.float32)
    for b, (s, start, ln, score_from) in enumerate(w):
        base = int(d.start[s]) + start
        items[b, :ln] = d.item[base:base + ln]
        skills[b, :ln] = d.skill[base:base + ln]
        correct[b, :ln] = d.correct[base:base + ln]
        valid[b, :ln] = True
        weight[b, score_from:ln] = 1.0
    return (torch.from_numpy(items), torch.from_numpy(skills), torch.from_numpy(correct),
            torch.from_numpy(valid), torch.from_numpy(weight))


def auc_score(p, y):
    """ROC AUC with average ranks for ties (the Mann-Whitney statistic)."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y) > 0.5
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    n = len(ps)
    # runs of equal scores share their average rank
    edges = np.concatenate(([0], np.flatnonzero(np.diff(ps)) + 1, [n]))
    avg = (edges[:-1] + edges[1:] + 1) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(avg, np.diff(edges))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# ---- model ------------------------------------------------------------------------------


def alibi_bias(heads, window):
    """(H, W, W): -slope_h * (i - j) on and below the diagonal, -inf above it."""
    slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)])
    pos = torch.arange(window)
    dist = (pos[:, None] - pos[None, :]).float()
    bias = -slopes[:, None, None] * dist[None]
    return bias.masked_fill(dist[None] < 0, float("-inf"))


def linear(d_in, d_out):
    lin = nn.Linear(d_in, d_out)
    nn.init.normal_(lin.weight, 0.0, 0.02)
    nn.init.zeros_(lin.bias)
    return lin


class Block(nn.Module):
    """Pre-LN Transformer block: causal ALiBi attention and a GELU MLP, residual dropout."""

    def __init__(self, D, H, F_, p):
        super().__init__()
        self.H = H
        self.p = p
        self.ln1 = nn.LayerNorm(D, eps=LN_EPS)
        self.qkv = linear(D, 3 * D)     # the q, k, v linears as one matmul
        self.o = linear(D, D)
        self.ln2 = nn.LayerNorm(D, eps=LN_EPS)
        self.w1 = linear(D, F_)
        self.w2 = linear(F_, D)

    def forward(self, x, bias):
        B, T, D = x.shape
        H = self.H
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        a = a.transpose(1, 2).reshape(B, T, D)
        x = x + F.dropout(self.o(a), self.p, self.training)
        return x + F.dropout(self.w2(F.gelu(self.w1(self.ln2(x)))), self.p, self.training)


class KT(nn.Module):
    def __init__(self, n_items, n_skills, D, H, L, window, p):
        super().__init__()
        self.D, self.H, self.p = D, H, p

        def emb(rows, cols):
            return nn.Parameter(torch.randn(rows, cols) * 0.02)

        self.C = emb(n_skills, D)
        self.W = emb(n_skills, D)
        self.V = emb(n_skills, D)
        self.mu_a = nn.Parameter(torch.zeros(n_items))
        self.bos = nn.Parameter(torch.randn(D) * 0.02)
        self.Qs = emb(n_skills, D)
        self.Qv = emb(n_skills, D)
        self.mu_q = nn.Parameter(torch.zeros(n_items))
        self.blocks = nn.ModuleList([Block(D, H, 4 * D, p) for _ in range(L)])
        self.enc_ln = nn.LayerNorm(D, eps=LN_EPS)
        self.dq = linear(D, D)
        self.dkv = linear(D, 2 * D)     # the decoder's k and v linears as one matmul
        self.do = linear(D, D)
        self.dec_ln = nn.LayerNorm(D, eps=LN_EPS)
        self.w1 = linear(D, D)
        self.w2 = linear(D, 1)
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.skill_bias = nn.Parameter(torch.zeros(n_skills))
        self.register_buffer("bias", alibi_bias(H, window), persistent=False)

    def param_groups(self, weight_decay):
        """Decay as tutor_llm's layout tables: matrices, embeddings, item offsets and bias."""
        no_decay_ids = {id(self.bos), id(self.skill_bias)}
        for mod in self.modules():
            if isinstance(mod, nn.LayerNorm):
                no_decay_ids.update({id(mod.weight), id(mod.bias)})
            elif isinstance(mod, nn.Linear):
                no_decay_ids.add(id(mod.bias))
        decay = [p for p in self.parameters() if id(p) not in no_decay_ids]
        rest = [p for p in self.parameters() if id(p) in no_decay_ids]
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": rest, "weight_decay": 0.0}]

    def forward(self, items, skills, correct, valid):
        B, T = items.shape
        D, H = self.D, self.H
        vmask = valid.unsqueeze(-1).to(torch.float32)
        bias = self.bias[:, :T, :T]
        # encoder input: BOS, then the interaction embedding of answers 0..T-2
        a = correct[:, :-1].unsqueeze(-1)
        s = skills[:, :-1]
        x = a * self.C[s] + (1.0 - a) * self.W[s] + self.mu_a[items[:, :-1]].unsqueeze(-1) * self.V[s]
        x = torch.cat([self.bos.expand(B, 1, D), x], dim=1) * vmask
        for blk in self.blocks:
            x = blk(x, bias)
        hs = self.enc_ln(x)
        # decoder: the question attends to the states h_0 .. h_p
        u = (self.Qs[skills] + self.mu_q[items].unsqueeze(-1) * self.Qv[skills]) * vmask
        q = self.dq(u).view(B, T, H, D // H).transpose(1, 2)
        k, v = self.dkv(hs).view(B, T, 2, H, D // H).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(B, T, D)
        z = self.dec_ln(u + F.dropout(self.do(att), self.p, self.training))
        logit = self.w2(F.gelu(self.w1(z))).squeeze(-1)
        return logit + self.item_bias[items] + self.skill_bias[skills]


# ---- training ---------------------------------------------------------------------------


def predict(model, d, windows, max_tokens):
    """Probabilities and labels of the scored positions of eval windows."""
    w = sorted(windows, key=lambda x: x[2])
    starts = make_batches(w, max_tokens, max_tokens)
    probs, labels = [], []
    model.eval()
    with torch.inference_mode():
        for b in range(len(starts) - 1):
            items, skills, correct, valid, weight = fill_batch(d, w[starts[b]:starts[b + 1]])
            p = torch.sigmoid(model(items, skills, correct, valid))
            keep = weight > 0
            probs.append(p[keep].numpy())
            labels.append(correct[keep].numpy())
    model.train()
    return np.concatenate(probs), np.concatenate(labels)


def blas_info():
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=([^,\s]+)", cfg)
    blas = m.group(1) if m else "?"
    mkl = next((line.strip(" -") for line in cfg.splitlines() if "Math Kernel Library" in line), "")
    dnn = next((line.strip(" -") for line in cfg.splitlines() if "MKL-DNN" in line or "oneDNN" in line), "")
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:       # older torch
        cap = "?"
    return {"blas": blas, "mkl": mkl.split(" Build")[0], "onednn": dnn.split(" (Git")[0],
            "mkldnn_enabled": bool(torch.backends.mkldnn.is_available()), "cpu_capability": cap}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("--dataset", default="assist2009_skill", choices=sorted(kb.DATASETS))
    ap.add_argument("--fold", type=int, default=1, help="fold of assist2009_pid")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-4)  # tutor_llm's default
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--valid-fraction", type=float, default=None,
                    help="default: the dataset's (0.1; 0.25 for assist2009_pid)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--no-test", action="store_true", help="skip the test evaluation")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    info = blas_info()
    info.update(torch=torch.__version__, threads=torch.get_num_threads())
    print("torch %s, %d threads, BLAS %s (%s), %s, mkldnn %s, CPU capability %s" % (
        info["torch"], info["threads"], info["blas"], info["mkl"], info["onednn"],
        "on" if info["mkldnn_enabled"] else "off", info["cpu_capability"]), flush=True)

    spec = kb.DATASETS[args.dataset]
    vf = spec.get("valid_fraction", 0.1) if args.valid_fraction is None else args.valid_fraction
    t_load = time.perf_counter()
    items, skills = Vocab(), Vocab()
    train = Packed(kb.read_split(args.data_dir, args.dataset, "train", args.fold), items, skills, True, 2)
    test = None if args.no_test else \
        Packed(kb.read_split(args.data_dir, args.dataset, "test", args.fold), items, skills, False, 1)
    rng = np.random.RandomState(args.seed)
    order = rng.permutation(train.n_students)
    n_valid = min(int(math.floor(vf * train.n_students)), train.n_students - 1)
    valid_students, train_students = order[:n_valid], order[n_valid:]
    train_w = train_windows(train, train_students, args.window)
    valid_w = eval_windows(train, valid_students, args.window)
    load_seconds = time.perf_counter() - t_load

    model = KT(len(items), len(skills), args.d_model, args.heads, args.layers, args.window, args.dropout)
    n_params = sum(p.numel() for p in model.parameters())
    try:
        opt = torch.optim.AdamW(model.param_groups(args.weight_decay), lr=args.lr, betas=(0.9, 0.999),
                                eps=1e-8, fused=True)
        opt_kind = "fused"
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.AdamW(model.param_groups(args.weight_decay), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
        opt_kind = "default"
    item_params = [model.mu_a, model.mu_q, model.item_bias]
    print("%s: %d students (%d train, %d valid), %d answers, %d items, %d skills, %d parameters, "
          "%d training windows, AdamW %s, data loaded in %.1f s" % (
              args.dataset, train.n_students, len(train_students), n_valid, train.n, len(items) - 1,
              len(skills) - 1, n_params, len(train_w), opt_kind, load_seconds), flush=True)

    max_tokens = args.batch_size * args.window
    best_auc, best_epoch, since_best, steps = -1.0, 0, 0, 0
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    epoch_seconds, train_seconds = [], []
    epochs_run = 0
    last_loss = float("nan")
    model.train()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        perm = rng.permutation(len(train_w))
        w = sorted((train_w[i] for i in perm), key=lambda x: x[2])   # stable: ties stay shuffled
        starts = make_batches(w, args.batch_size, max_tokens)
        n_batches = len(starts) - 1
        warmup = min(WARMUP_STEPS, n_batches)
        loss_sum = 0.0
        for b in rng.permutation(n_batches):
            it, sk, co, va, wt = fill_batch(train, w[starts[b]:starts[b + 1]])
            steps += 1
            lr = args.lr * (steps / warmup if steps < warmup else 1.0)
            for g in opt.param_groups:
                g["lr"] = lr
            logits = model(it, sk, co, va)
            loss = (F.binary_cross_entropy_with_logits(logits, co, reduction="none") * wt).sum() / wt.sum()
            opt.zero_grad(set_to_none=False)
            loss.backward()
            for p in item_params:       # the unknown item keeps no offset and no bias
                p.grad[0] = 0.0
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss_sum += loss.item()
        t_train = time.perf_counter() - t0
        last_loss = loss_sum / max(n_batches, 1)
        if n_valid > 0:
            vp, vy = predict(model, train, valid_w, max_tokens)
            auc = auc_score(vp, vy)
        else:
            auc = float("nan")
        t_epoch = time.perf_counter() - t0
        epochs_run = epoch
        epoch_seconds.append(t_epoch)
        train_seconds.append(t_train)
        if n_valid == 0 or math.isnan(auc) or auc > best_auc + 1e-5:
            best_auc = best_auc if math.isnan(auc) else auc
            best_epoch, since_best = epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since_best += 1
        print("epoch %d/%d: loss %.4f, validation AUC %.4f, %.1f s (training %.1f s, %d batches)" % (
            epoch, args.epochs, last_loss, auc, t_epoch, t_train, n_batches), flush=True)
        if since_best >= args.patience:
            break
    model.load_state_dict(best_state)

    result = {"dataset": args.dataset, "epochs": epochs_run, "best_epoch": best_epoch,
              "best_valid_auc": best_auc, "train_loss": last_loss,
              "seconds_per_epoch": sum(epoch_seconds) / max(len(epoch_seconds), 1),
              "seconds_per_epoch_median": float(np.median(epoch_seconds)) if epoch_seconds else None,
              "epoch_seconds": epoch_seconds,
              "train_seconds_per_epoch": sum(train_seconds) / max(len(train_seconds), 1),
              "load_seconds": load_seconds, "parameters": n_params, "optimizer": opt_kind}
    result.update(info)
    if test is not None:
        t0 = time.perf_counter()
        tp, ty = predict(model, test, eval_windows(test, range(test.n_students), args.window), max_tokens)
        result.update(test_auc=auc_score(tp, ty), test_n=int(len(ty)),
                      test_accuracy=float(((tp >= 0.5) == (ty > 0.5)).mean()),
                      test_seconds=time.perf_counter() - t0)
        print("test: AUC %.4f, accuracy %.4f, n %d" % (result["test_auc"], result["test_accuracy"],
                                                       result["test_n"]), flush=True)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
