"""Run every peer runner on the a9a / synthetic test sets and summarise.

    python bench/peers/make_test_data.py --out /tmp/peerdata
    .venv-peers/bin/python bench/peers/smoke.py --data /tmp/peerdata --repeats 3

Each run is a separate subprocess (same interpreter as this script, i.e. the
peers' venv). Reports, per peer, the final metrics and the minimum over repeats
of fit_s / predict_s (1-minute load average printed alongside: the timings
are only meaningful on an otherwise idle machine).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = {  # name: (script, extra args for classification a9a, for synthetic regression)
    "xlearn": ("run_xlearn.py", ["--epochs", "8"], ["--epochs", "32"]),
    "modern-fm": ("run_modernfm.py", ["--epochs", "8"], ["--epochs", "32"]),
    "myfm": ("run_myfm.py", ["--epochs", "200"], ["--epochs", "100"]),
    "fastFM-mcmc": ("run_fastfm.py", ["--epochs", "16"], ["--epochs", "100"]),
    "fastFM-als": ("run_fastfm.py", ["--epochs", "10", "--solver", "als"],
                   ["--epochs", "20", "--solver", "als"]),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=None, help="comma-separated peer names")
    ap.add_argument("--k", type=int, default=8)
    a = ap.parse_args()
    names = a.only.split(",") if a.only else list(RUNS)
    sets = [("a9a", "classification", 1), ("synth", "regression", 2)]
    tmp = tempfile.mkdtemp(prefix="peers_smoke_")
    for ds, task, col in sets:
        for name in names:
            script, *args = RUNS[name]
            best = None
            for rep in range(a.repeats):
                out = os.path.join(tmp, f"{name}_{ds}_{rep}.json")
                cmd = [sys.executable, os.path.join(HERE, script),
                       "--train", os.path.join(a.data, f"{ds}_train.npz"),
                       "--test", os.path.join(a.data, f"{ds}_test.npz"),
                       "--task", task, "--k", str(a.k), "--threads", str(a.threads),
                       "--out", out] + args[col - 1]
                p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
                if p.returncode != 0:
                    print(f"{name:12s} {ds:6s} FAILED: {p.stderr.strip().splitlines()[-1:]}")
                    break
                r = json.load(open(out))
                if best is None or r["fit_s"] < best["fit_s"]:
                    best = r
            if best is None:
                continue
            f = best["final"]
            met = (f"auc {f['auc']:.4f} logloss {f['logloss']:.4f}" if task == "classification"
                   else f"rmse {f['rmse']:.4f}")
            print(f"{name:12s} {ds:6s} {best['solver'][:28]:28s} ep {f['epoch']:4d} {met} "
                  f"fit {best['fit_s']:.3f}s pred {best['predict_s']:.3f}s "
                  f"rss {best['peak_rss_mib']:.0f}MiB load1 {os.getloadavg()[0]:.1f}",
                  flush=True)
    print("json files in", tmp)


if __name__ == "__main__":
    main()
