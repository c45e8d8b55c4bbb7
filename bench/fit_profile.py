"""Where a public ``model.fit(X, y)`` spends its time: inside the kernels
or around them.

An FMRegressor (Adam, float32, early stopping off, n_jobs = --threads) is
fitted for --epochs epochs on the `large`-shaped synthetic set, with every
kernel fmnumba.cpu exports wrapped in a timer, and with timers on the
steps around them: validation (check_X), the state's initialisation, the
per-epoch snapshot of the rows an epoch changes and the divergence checks
(each includes the kernels it calls, e.g. the probe's predict), and on
the epoch loop as a whole. *outside* is the fit's wall time minus the
kernels' time, as a share of the kernels' time per epoch; *per-epoch
outside* is the epoch loop's time minus the kernels' (shuffling, the
snapshot, the divergence checks, history), the one-time setup before it
(validation, initialisation, the checks of the arguments) left out.

    python -m bench.fit_profile --synthetic 1000000 --k 8,64 --threads 2 --epochs 5
"""
import sys
import time
from collections import defaultdict
from contextlib import ExitStack, contextmanager
from unittest import mock

import numpy as np

from bench.protocol import write_json
from bench.report import md_table
from bench.timing import load_average, tool_parser

STEP_NAMES = {"check_X": "check_X", "FMState.init": "init", "ensure_adam": "Adam state",
              "guard setup": "guard setup", "snapshot": "snapshot",
              "divergence_reason": "divergence checks"}
# done once per fit inside the training loop's generator, before its first epoch
ONCE = ("ensure_adam", "guard setup")


@contextmanager
def _timers():
    """Patch fmnumba's kernels and the steps around them with accumulating
    timers; yields {name: seconds} and the list of kernel names."""
    from fmnumba import _validation as validation
    from fmnumba import cpu, estimators, training
    acc = defaultdict(float)

    def timed(real, label):
        def run(*a, **kw):
            t = time.perf_counter()
            try:
                return real(*a, **kw)
            finally:
                acc[label] += time.perf_counter() - t
        return run

    kernels = [n for n in cpu.__all__ if n != "session"]
    targets = [(cpu, n, n) for n in kernels] + [
        (validation, "check_X", "check_X"), (training, "divergence_reason", "divergence_reason"),
        (training._RowCopy, "take", "snapshot"), (training.FMState, "init", "FMState.init"),
        (training.FMState, "ensure_adam", "ensure_adam"),
        (training, "changing_rows", "guard setup"), (training, "probe_rows", "guard setup"),
        (training, "loss_scale", "guard setup"),
        (estimators._BaseFM, "_train", "epoch_loop")]
    with ExitStack() as stack:
        for owner, name, label in targets:
            # the bound attribute (a classmethod stays bound to its class)
            stack.enter_context(mock.patch.object(owner, name,
                                                  timed(getattr(owner, name), label)))
        yield acc, kernels


def _kernel_time(acc, kernels):
    # the probe's predict_csr runs inside divergence_reason: count it once, as kernel time
    return sum(acc[n] for n in kernels)


def measure(X, y, ks=(8, 64), threads=2, epochs=5, repeats=3):
    import numba
    import scipy.sparse as sp

    from fmnumba import FMRegressor
    X = sp.csr_matrix(X, dtype=np.float32)
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    y = np.asarray(y, dtype=np.float32)
    numba.set_num_threads(threads)
    res = {"n_rows": X.shape[0], "n_features": X.shape[1], "nnz": int(X.nnz),
           "epochs": epochs, "threads": threads, "repeats": repeats, "rows": []}
    for k in ks:
        def model():
            return FMRegressor(n_factors=k, dtype=np.float32, max_iter=epochs,
                               early_stopping=False, random_state=0, n_jobs=threads)
        model().set_params(max_iter=1).fit(X, y)  # compile outside the timing
        runs = []
        for _ in range(repeats):
            with _timers() as (acc, kernels):
                t = time.perf_counter()
                m = model().fit(X, y)
                wall = time.perf_counter() - t
            kern = _kernel_time(acc, kernels)
            div_kernel = acc["predict_csr"]  # the probe, inside divergence_reason
            steps = {n: acc[n] for n in STEP_NAMES}
            steps["divergence_reason"] -= div_kernel
            runs.append({"wall_s": wall, "kernel_s": kern, "steps_s": steps,
                         "outside_s": wall - kern,
                         "setup_s": wall - acc["epoch_loop"] + sum(acc[n] for n in ONCE),
                         "epochs_run": int(m.n_iter_),
                         "kernels_s": {n: acc[n] for n in kernels if acc[n]}})
        best = min(runs, key=lambda r: r["wall_s"])
        per_epoch_kernel = best["kernel_s"] / best["epochs_run"]
        res["rows"].append({
            "k": k, "runs": runs, "wall_s": best["wall_s"], "kernel_s": best["kernel_s"],
            "epoch_kernel_s": per_epoch_kernel,
            "outside_share": best["outside_s"] / best["epochs_run"] / per_epoch_kernel,
            "per_epoch_outside_share": (best["outside_s"] - best["setup_s"])
            / best["epochs_run"] / per_epoch_kernel,
            "setup_s": best["setup_s"],
            "steps_s": best["steps_s"], "kernels_s": best["kernels_s"]})
    return res


def report(res, load):
    lines = [
        "# model.fit(X, y): time inside the kernels and around them", "",
        f"`python -m bench.fit_profile --synthetic {res['n_rows']} --k "
        f"{','.join(str(r['k']) for r in res['rows'])} --threads {res['threads']} "
        f"--epochs {res['epochs']}` (NUMBA_NUM_THREADS={res['threads']}; large-shaped set: "
        f"{res['n_rows']:,} rows x {res['n_features']:,} features, {res['nnz']:,} nnz, "
        "float32 CSR with int32 indices; FMRegressor, Adam, early stopping off; fastest of "
        f"{res['repeats']} fits, JIT warmed by a first fit). Load average (1, 5, 15 min): "
        f"{load[0]} at the start, {load[1]} at the end.", "",
        "*kernels*: the wall time of fmnumba.cpu's kernels (the Adam epochs, the probe's "
        "predict); *outside / epoch*: the fit's wall time minus that, per epoch, as a share of "
        "one epoch's kernel time; *epoch loop*: the same for the epoch loop alone (shuffling, "
        "snapshot, divergence checks, history), the one-time setup before it left out; "
        "*setup*: the fit's time before the first epoch (validation, drawing the initial "
        "factors, and once per fit inside the loop: allocating Adam's moments, the guard's "
        "list of changing rows, probe rows and loss scale). Steps in ms over the whole fit.",
        ""]
    head = ["k", "fit s", "kernels s", "epoch (kernels) s", "outside / epoch", "epoch loop",
            "setup ms"] + [f"{name} ms" for name in STEP_NAMES.values()]
    rows = [[r["k"], f"{r['wall_s']:.3f}", f"{r['kernel_s']:.3f}", f"{r['epoch_kernel_s']:.3f}",
             f"{100 * r['outside_share']:.1f}%", f"{100 * r['per_epoch_outside_share']:.1f}%",
             f"{1e3 * r['setup_s']:.1f}"] + [f"{1e3 * r['steps_s'][n]:.1f}" for n in STEP_NAMES]
            for r in res["rows"]]
    lines.append(md_table(head, rows))
    lines += ["", "Per epoch, outside the kernels (target: at most 5% of an epoch): " + "; ".join(
        f"k={r['k']} {100 * r['per_epoch_outside_share']:.1f}% "
        f"({'met' if r['per_epoch_outside_share'] <= 0.05 else 'missed'})" for r in res["rows"])
        + ". A whole fit of this many epochs adds its setup, mostly drawing the initial "
        "factors: " + "; ".join(f"k={r['k']} {100 * r['outside_share']:.1f}% of an epoch "
                                f"per epoch" for r in res["rows"]) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = tool_parser(__doc__, data=False)  # --threads, --out (the markdown goes beside it)
    p.add_argument("--synthetic", type=int, default=1_000_000, help="rows of the large set")
    p.add_argument("--k", default="8,64")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    from fmnumba import datasets as D
    d = D.make_fm_data(a.synthetic, D.large_field_sizes(a.synthetic), random_state=0)
    start = load_average()
    res = measure(d.X, d.y, tuple(int(k) for k in a.k.split(",")), a.threads, a.epochs,
                  a.repeats)
    md = report(res, (start, load_average()))
    write_json(res, a.out)
    if a.out:
        with open(a.out.rsplit(".", 1)[0] + ".md", "w") as f:
            f.write(md)
    sys.stdout.write(md)


if __name__ == "__main__":
    main()
