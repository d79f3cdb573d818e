#!/usr/bin/env python3
"""Knowledge-tracing benchmark of tutor_llm on public datasets.

Loads the datasets of DATA_DIR/kt (see the README there) into tables, trains
tutor_llm's Transformer (default options) and its PFA baseline on each
official training split with tutor.train_kt, scores the test split with
tutor.evaluate_kt, and prints test AUC beside the published figures.  On
ASSIST2009 skill-level it also runs the PyTorch reference (kt_torch.py, the
same model, optimiser and batches) on the same threads and prints both
seconds per epoch and both test AUCs.

Run through scripts/bench_kt.sh, which builds and installs tutor_llm, starts
a throwaway cluster (PGHOST/PGPORT/PGUSER/PGDATABASE in the environment) and
makes the Python environment.  Only the standard library is needed here;
the PyTorch reference needs numpy and torch.

    kt_benchmark.py DATA_DIR [--quick] [--datasets a,b] [--folds 1,2] [--epochs N]
"""
import argparse
import collections
import json
import math
import os
import platform
import re
import subprocess
import sys
import time

from psql_session import Psql, library_id, lit

HERE = os.path.dirname(os.path.abspath(__file__))

Student = collections.namedtuple("Student", "id items skills correct")

# Test AUCs published on these exact files (DATA_DIR/README.md) and our targets.
DATASETS = {
    "assist2009_skill": {
        "folder": "assist2009_skill", "format": 3,
        "train": ["assist2009_updated_train.csv"], "test": "assist2009_updated_test.csv",
        "published": "DKT 0.818-0.821, DKVMN ~0.816, SAKT 0.848", "target": 0.825,
    },
    "assist2009_pid": {
        "folder": "assist2009_pid", "format": 4, "folds": 5,
        # the official validation students join training; our internal split
        # then holds out the same share (20 of 80 = 0.25)
        "train": ["assist2009_pid_train{k}.csv", "assist2009_pid_valid{k}.csv"],
        "test": "assist2009_pid_test{k}.csv", "valid_fraction": 0.25,
        "published": "AKT-R ~0.835, DKT ~0.817, SAKT 0.752", "target": 0.835,
    },
    "statics2011": {
        "folder": "statics2011", "format": 3,
        "train": ["STATICS_train.csv"], "test": "STATICS_test.csv",
        "published": "DKT 0.829, DKVMN ~0.828, SAKT 0.853", "target": 0.835,
    },
    "synthetic5": {
        "folder": "synthetic5", "format": 3,
        "train": ["naive_c5_q50_s4000_v0_train.csv"], "test": "naive_c5_q50_s4000_v0_test.csv",
        "published": "DKVMN ~0.827, SAKT 0.832", "target": 0.830,
    },
}
ORDER = ["assist2009_skill", "assist2009_pid", "statics2011", "synthetic5"]
QUICK_DATASETS = ["assist2009_skill", "assist2009_pid"]
QUICK_EPOCHS = 2

EPOCH_RE = re.compile(r"epoch (\d+)/(\d+): loss (\S+), validation AUC (\S+), ([0-9.]+) s")


# ---- dataset files ----------------------------------------------------------------------


def _fields(line):
    """Comma-separated values; lines may end with a trailing comma."""
    return [x.strip() for x in line.strip().split(",") if x.strip() != ""]


def read_file(path, fmt):
    """Students of one file.  3-line format: length / skill ids / answers, with item
    ids absent (the ids are the skill or question index, as in the published
    DKT/DKVMN figures); 4-line format: row,user_id / problem ids / skill ids / answers."""
    with open(path) as f:
        lines = [ln for ln in f if ln.strip() != ""]
    if len(lines) % fmt != 0:
        raise ValueError("%s: %d non-empty lines is not a multiple of %d" % (path, len(lines), fmt))
    out = []
    for k in range(0, len(lines), fmt):
        if fmt == 3:
            n = int(_fields(lines[k])[0])
            skills, answers = _fields(lines[k + 1]), _fields(lines[k + 2])
            sid, items = str(k // 3 + 1), None
        else:
            head = _fields(lines[k])
            sid = head[1] if len(head) > 1 else head[0]
            items, skills, answers = _fields(lines[k + 1]), _fields(lines[k + 2]), _fields(lines[k + 3])
            n = len(answers)
        if len(skills) != n or len(answers) != n or (items is not None and len(items) != n):
            raise ValueError("%s: student at line %d has mismatched lengths" % (path, k + 1))
        out.append(Student(sid, items, skills, [int(a) for a in answers]))
    return out


def split_files(name, split, fold):
    spec = DATASETS[name]
    names = spec["train"] if split == "train" else [spec["test"]]
    return [os.path.join(spec["folder"], n.format(k=fold)) for n in names]


def read_split(data_dir, name, split, fold=1):
    """Students of the train (official train, plus valid for AKT folds) or test split."""
    kt = os.path.join(data_dir, "kt") if os.path.isdir(os.path.join(data_dir, "kt")) else data_dir
    out = []
    for rel in split_files(name, split, fold):
        out.extend(read_file(os.path.join(kt, rel), DATASETS[name]["format"]))
    return out


# ---- PostgreSQL through psql --------------------------------------------------------------


def load_table(db, table, students):
    """(Re)create a table of answers and COPY the students into it."""
    rows = []
    for st in students:
        for t, c in enumerate(st.correct):
            item = st.items[t] if st.items is not None else ""
            rows.append("%s,%s,%s,%d,%d\n" % (st.id, item, st.skills[t], c, t))
    db.run(["DROP TABLE IF EXISTS %s" % table,
            "CREATE TABLE %s (student_id bigint, item_id bigint, skill_id bigint, "
            "correct smallint, answered_at int)" % table,
            "COPY %s FROM STDIN WITH (FORMAT csv)" % table],
           stdin_data="".join(rows))
    db.run(["ANALYZE %s" % table])
    return len(rows)


# ---- one benchmark item -----------------------------------------------------------------


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    return (xs[(len(xs) - 1) // 2] + xs[len(xs) // 2]) / 2.0


def fmt(x, digits=4):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return "%.*f" % (digits, x)


def train_and_evaluate(db, ds, fold, kind, train_table, test_table, options):
    model = "%s_f%d_%s" % (ds, fold, kind) if "folds" in DATASETS[ds] else "%s_%s" % (ds, kind)
    epochs = []

    def notice(msg):
        m = EPOCH_RE.search(msg)
        if m:
            epochs.append(float(m.group(5)))
        print("      %s: %s" % (model, msg), flush=True)

    print("    training %s on %s, options %s" % (model, train_table, json.dumps(options)), flush=True)
    load_before = os.getloadavg()[0]
    t0 = time.time()
    out, _ = db.run(["SELECT tutor.train_kt(%s, %s, %s::jsonb)" % (lit(model), lit(train_table),
                                                                    lit(json.dumps(options)))],
                    on_notice=notice)
    report = json.loads(out)
    wall = time.time() - t0
    eval_options = {"columns": options["columns"]} if "columns" in options else {}
    out, _ = db.run(["SELECT tutor.evaluate_kt(%s, %s, %s::jsonb)" % (lit(model), lit(test_table),
                                                                       lit(json.dumps(eval_options)))])
    ev = json.loads(out)
    res = {
        "dataset": ds, "fold": fold, "kind": kind, "model": model, "options": options,
        "train_report": report, "evaluation": ev, "train_wall_seconds": wall,
        "epoch_seconds": epochs,
        "epoch_seconds_mean": sum(epochs) / len(epochs) if epochs else None,
        "epoch_seconds_median": median(epochs),
        # other work on the machine skews the timings: the 1-minute load average
        # before training and after evaluation (this run alone adds about the threads)
        "loadavg_before": load_before, "loadavg_after": os.getloadavg()[0],
    }
    print("    %s: test AUC %s (n %d, accuracy %s), best validation AUC %s at epoch %s of %s, "
          "%s s/epoch (NOTICE mean), %.0f s in all, load average %.2f -> %.2f" % (
              model, fmt(ev.get("auc")), ev.get("n", 0), fmt(ev.get("accuracy")),
              fmt(report.get("best_valid_auc")), report.get("best_epoch"), report.get("epochs"),
              fmt(res["epoch_seconds_mean"], 1), wall, res["loadavg_before"], res["loadavg_after"]), flush=True)
    return res


def run_torch(args, ds, fold, epochs, threads):
    """The PyTorch reference as a subprocess; returns its RESULT or a skip reason."""
    try:
        import torch  # noqa: F401
        import numpy  # noqa: F401
    except Exception as e:     # missing or broken installation
        return None, "%s: %s" % (type(e).__name__, e)
    cmd = [sys.executable, os.path.join(HERE, "kt_torch.py"), args.data_dir, "--dataset", ds,
           "--fold", str(fold), "--threads", str(threads), "--epochs", str(epochs),
           "--patience", "1000"]   # exactly tutor_llm's number of epochs, best validation epoch kept
    if DATASETS[ds].get("valid_fraction"):
        cmd += ["--valid-fraction", str(DATASETS[ds]["valid_fraction"])]
    print("    $ " + " ".join(cmd[1:]), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result = None
    tail = []
    for line in proc.stdout:
        line = line.rstrip("\n")
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
        else:
            print("      torch: " + line, flush=True)
            tail = (tail + [line])[-20:]
    rc = proc.wait()
    if result is not None:
        result["loadavg_after"] = os.getloadavg()[0]
    if rc != 0 or result is None:
        raise RuntimeError("the PyTorch reference failed (exit %d): %s" % (rc, "\n".join(tail)))
    return result, None


# ---- main -------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description="tutor_llm knowledge-tracing benchmark")
    ap.add_argument("data_dir", help="the datasets folder (with kt/ inside, or kt/ itself)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: %s, fold 1, %d epochs" % ("+".join(QUICK_DATASETS), QUICK_EPOCHS))
    ap.add_argument("--datasets", help="comma-separated, of: " + ", ".join(ORDER))
    ap.add_argument("--folds", help="folds of assist2009_pid (default 1-5; --quick: 1)")
    ap.add_argument("--models", default="transformer,pfa", help="transformer,pfa")
    ap.add_argument("--epochs", type=int, help="epochs option for every model (default: tutor_llm's)")
    ap.add_argument("--time-budget", type=float, help="time_budget option (seconds) for every model")
    ap.add_argument("--options", type=json.loads, default={},
                    help='JSON merged into every train_kt options, e.g. \'{"dropout": 0.2}\'; its "columns" '
                         'also go to evaluate_kt (\'{"columns": {"item_id": null}}\' ignores the items)')
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="tutor.threads and torch threads (default: CPUs, %(default)s)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    ap.add_argument("--torch-dataset", default="assist2009_skill")
    ap.add_argument("--torch-epochs", type=int,
                    help="epochs of the reference (default: as many as tutor_llm's Transformer ran)")
    ap.add_argument("--psql", default=os.environ.get("PSQL_BIN", "psql"))
    ap.add_argument("--json-out", help="write every result here as JSON")
    args = ap.parse_args(argv)

    datasets = args.datasets.split(",") if args.datasets else (QUICK_DATASETS if args.quick else ORDER)
    for d in datasets:
        if d not in DATASETS:
            ap.error("unknown dataset %r (have %s)" % (d, ", ".join(ORDER)))
    folds = [int(x) for x in args.folds.split(",")] if args.folds else ([1] if args.quick else [1, 2, 3, 4, 5])
    kinds = args.models.split(",")
    epochs = args.epochs if args.epochs else (QUICK_EPOCHS if args.quick else None)

    db = Psql(args.psql, args.threads)
    db.run(["CREATE EXTENSION IF NOT EXISTS tutor_llm"])
    version = db.value("SELECT tutor.version()")
    device = db.value("SELECT backend || ' ' || name || ', ' || threads || ' threads, BLAS ' || coalesce(blas, '?') "
                      "FROM tutor.device_info() WHERE selected")
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lib = library_id()
    print("tutor_llm %s (library %s) on %s; %s (%d CPUs); datasets %s; folds %s; %s" % (
        version, lib or "?", device, cpu, os.cpu_count() or 0, ",".join(datasets), ",".join(map(str, folds)),
        "quick" if args.quick else "full"), flush=True)

    results, torch_result, torch_note, failures = [], None, None, []
    for ds in datasets:
        spec = DATASETS[ds]
        for fold in (folds if "folds" in spec else [1]):
            suffix = str(fold) if "folds" in spec else ""
            tables = {}
            t0 = time.time()
            for split in ("train", "test"):
                tables[split] = "kt_%s_%s%s" % (ds, split, suffix)
                n = load_table(db, tables[split], read_split(args.data_dir, ds, split, fold))
                print("  %s: %d answers from %s" % (tables[split], n, ", ".join(split_files(ds, split, fold))),
                      flush=True)
            print("  loaded in %.1f s" % (time.time() - t0), flush=True)
            for kind in kinds:
                options = {} if kind == "transformer" else {"kind": kind}
                if spec.get("valid_fraction"):
                    options["valid_fraction"] = spec["valid_fraction"]
                if epochs:
                    options["epochs"] = epochs
                if args.time_budget:
                    options["time_budget"] = args.time_budget
                options.update(args.options)
                now = library_id()
                if now != lib:
                    msg = "tutor_llm.so changed during the run (%s -> %s): figures from here on are of another build" % (lib, now)
                    print("    WARNING: " + msg, flush=True)
                    failures.append(msg)
                    lib = now
                try:
                    res = train_and_evaluate(db, ds, fold, kind, tables["train"], tables["test"], options)
                except Exception as e:
                    print("    FAILED %s %s fold %d: %s" % (ds, kind, fold, e), flush=True)
                    failures.append("%s/%s/%d: %s" % (ds, kind, fold, e))
                    continue
                res["library"] = lib
                results.append(res)
                if kind == "transformer" and ds == args.torch_dataset and fold == folds[0] \
                        and torch_result is None and torch_note is None:
                    if args.no_torch:
                        torch_note = "--no-torch"
                        continue
                    n_ep = args.torch_epochs or int(res["train_report"]["epochs"])
                    try:
                        torch_result, torch_note = run_torch(args, ds, fold, n_ep, args.threads)
                    except Exception as e:
                        print("    FAILED PyTorch reference: %s" % e, flush=True)
                        failures.append("torch: %s" % e)
                        torch_note = "failed: %s" % str(e).splitlines()[0]
                    if torch_result is not None:
                        torch_result["tutor_model"] = res["model"]
    if torch_result is None and torch_note is None:
        torch_note = "%s's Transformer was not run" % args.torch_dataset

    print_table(results)
    print_torch(results, torch_result, torch_note, args.threads)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"tutor_llm": version, "library": lib, "device": device, "cpu": cpu, "quick": args.quick,
                       "results": results, "torch": torch_result, "torch_note": torch_note,
                       "failures": failures}, f, indent=2)
        print("\nresults written to %s" % args.json_out)
    if failures:
        print("\n%d failure(s):\n  %s" % (len(failures), "\n  ".join(failures)))
        return 1
    return 0


def print_table(results):
    head = ["dataset", "model", "test AUC", "published reference", "target", "epochs run", "s/epoch"]
    rows = []
    by_kind = collections.defaultdict(list)
    for r in results:
        spec = DATASETS[r["dataset"]]
        name = r["dataset"] + (" fold %d" % r["fold"] if "folds" in spec else "")
        rep = r["train_report"]
        rows.append([name, r["kind"], fmt(r["evaluation"].get("auc")), spec["published"],
                     fmt(spec["target"], 3) if r["kind"] == "transformer" else "",
                     "%s (best %s)" % (rep.get("epochs"), rep.get("best_epoch")),
                     fmt(r["epoch_seconds_mean"], 1)])
        if "folds" in spec:
            by_kind[(r["dataset"], r["kind"])].append(r)
    for (ds, kind), rs in sorted(by_kind.items()):
        if len(rs) > 1:
            aucs = [x["evaluation"]["auc"] for x in rs]
            mean = sum(aucs) / len(aucs)
            sd = math.sqrt(sum((a - mean) ** 2 for a in aucs) / (len(aucs) - 1))
            rows.append(["%s mean of %d folds" % (ds, len(rs)), kind, "%s ± %s" % (fmt(mean), fmt(sd)),
                         DATASETS[ds]["published"], fmt(DATASETS[ds]["target"], 3) if kind == "transformer" else "",
                         "", ""])
    widths = [max(len(str(x[i])) for x in rows + [head]) for i in range(len(head))]
    line = " | ".join(h.ljust(w) for h, w in zip(head, widths))
    print("\n" + line)
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print("(test AUC: tutor.evaluate_kt on the official test split, every answer scored; "
          "s/epoch: mean of the per-epoch NOTICE times, training plus validation)")


def print_torch(results, tr, note, threads):
    print()
    if tr is None:
        print("PyTorch reference skipped: %s" % note)
        return
    tu = next(r for r in results if r["model"] == tr["tutor_model"])
    ts, tt = tu["epoch_seconds_mean"], tr["seconds_per_epoch"]
    print("PyTorch reference on %s (same model, sizes, optimiser, windows and batches; %d threads each)" % (
        tr["dataset"], threads))
    print("  torch %s, %d threads, BLAS %s (%s), %s, mkldnn %s, CPU capability %s, AdamW %s" % (
        tr["torch"], tr["threads"], tr["blas"], tr["mkl"], tr["onednn"], "on" if tr["mkldnn_enabled"] else "off",
        tr["cpu_capability"], tr["optimizer"]))
    ms, mt = tu["epoch_seconds_median"], tr.get("seconds_per_epoch_median")
    print("  s/epoch (training + validation), mean: tutor_llm %s, torch %s -> tutor_llm speed-up %sx" % (
        fmt(ts, 2), fmt(tt, 2), fmt(tt / ts if ts else float("nan"), 2)))
    print("  s/epoch (training + validation), median: tutor_llm %s, torch %s -> tutor_llm speed-up %sx "
          "(the median resists epochs slowed by other work on the machine)" % (
              fmt(ms, 2), fmt(mt, 2), fmt(mt / ms if ms and mt else float("nan"), 2)))
    print("  s/epoch (training only): torch %s" % fmt(tr["train_seconds_per_epoch"], 2))
    print("  test AUC: tutor_llm %s (epochs %s, best %s), torch %s (epochs %s, best %s); difference %s" % (
        fmt(tu["evaluation"]["auc"]), tu["train_report"]["epochs"], tu["train_report"]["best_epoch"],
        fmt(tr.get("test_auc")), tr["epochs"], tr["best_epoch"],
        fmt(tu["evaluation"]["auc"] - tr.get("test_auc", float("nan")))))


if __name__ == "__main__":
    sys.exit(main())
