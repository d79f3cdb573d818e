#!/usr/bin/env python3
"""llm_memory.py -- what a second backend using the same language model
costs in memory, and the model's speed through SQL (a benchmark).

Needs a running cluster with tutor_llm (PGHOST/PGPORT/PGUSER/PGDATABASE in
the environment; scripts/bench_llm.sh starts one) and the /proc of its
backends (run on the database machine, as root or the cluster's user).

Two sessions load the default model and generate 64 tokens each.  For
each backend it reads /proc/PID/smaps_rollup before loading and after
generating and prints the growth of:

  Private   pages only this process holds (Private_Clean + Private_Dirty):
            what the backend really adds to the machine
  Rss       every resident page it maps, including the model file's pages
            that the page cache shares with every other backend
  Pss       Rss with shared pages divided among their users

The weights are a read-only shared mapping of the GGUF file, so the
second backend's Private growth is its tokenizer, KV cache and scratch.
"""
import os
import subprocess
import sys
import time

PROMPT = "The three most important things to learn in algebra are"


class Session:
    """One interactive psql: a backend that stays alive between queries."""

    def __init__(self):
        self.p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def query(self, sql):
        self.p.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo __done__\n")
        self.p.stdin.flush()
        lines = []
        for line in self.p.stdout:
            line = line.rstrip("\n")
            if line == "__done__":
                return "\n".join(lines)
            lines.append(line)
        raise SystemExit("psql ended early")

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def rollup(pid):
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    out["Private"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def growth(before, after):
    return {k: (after[k] - before[k]) / 1024.0 for k in ("Private", "Rss", "Pss")}


def measure(name):
    s = Session()
    pid = int(s.query("SELECT pg_backend_pid()"))
    s.query("SET client_min_messages = warning")
    before = rollup(pid)
    t0 = time.perf_counter()
    s.query("SELECT tutor.llm_load('default', current_setting('tutor.llm_model'))")
    load_s = time.perf_counter() - t0
    text = s.query("SELECT tutor.generate('%s', '{\"max_tokens\": 64, \"ignore_end\": true}')" % PROMPT)
    after = rollup(pid)
    g = growth(before, after)
    print("%s backend (pid %d): load %.3f s; growth after loading and 64 tokens: "
          "Private %.1f MB, Rss %.1f MB, Pss %.1f MB" % (name, pid, load_s, g["Private"], g["Rss"], g["Pss"]))
    return s, g, text


def speed(s):
    s.query("SELECT tutor.generate('warm up', '{\"max_tokens\": 4}')")
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        s.query("SELECT tutor.generate('%s', '{\"max_tokens\": 128, \"ignore_end\": true}')" % PROMPT)
        best = max(best, 128 / (time.perf_counter() - t0))
    print("through SQL: 128 tokens after a %d-byte prompt: %.1f tokens/s (best of 3, prefill and "
          "round trip included)" % (len(PROMPT), best))


def main():
    a, ga, text_a = measure("first")
    b, gb, text_b = measure("second")
    print("same text in both sessions: %s" % (text_a == text_b))
    target = 10.0
    print("a second backend adds %.1f MB of private memory (goal: under %.0f MB): %s"
          % (gb["Private"], target, "met" if gb["Private"] < target else "NOT met"))
    speed(b)
    a.close()
    b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
