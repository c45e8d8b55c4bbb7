"""State under failure: a failed or interrupted fit leaves the model it
found (or its last completed epoch), the divergence guard catches runaway
training, fitted models never hold non-finite values, the fit's memory is
budgeted before anything is allocated, and targets are not silently
converted."""
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import fmnumba
from fmnumba import DivergenceError, FMClassifier, FMRegressor
from fmnumba import _validation as validation
from fmnumba import training
from fmnumba.cli import main

try:
    from ._failing_kernels import FailingKernels
except ImportError:
    from _failing_kernels import FailingKernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(n=120, p=8, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, p, density=0.4, format="csr", random_state=seed, dtype=np.float64)
    y = X @ rng.normal(size=p) + 0.1 * rng.normal(size=n)
    return X, y


def reg(**kw):
    params = dict(max_iter=3, batch_size=32, n_jobs=1, random_state=0)
    params.update(kw)
    return FMRegressor(**params)


def snapshot(est):
    """Everything fitted about `est`, deep-copied, for exact comparison."""
    st = est._state
    return {
        "P": st.P.copy(), "bias": st.bias_state.copy(), "t": st.t,
        "M": None if st.M is None else st.M.copy(), "S": None if st.S is None else st.S.copy(),
        "history": {k: list(v) for k, v in est.history_.items()}, "n_iter": est.n_iter_,
        "n_features_in": est.n_features_in_, "rng": est._rng.get_state()[1].copy(),
        "rng_pos": est._rng.get_state()[2],
        "attrs": sorted(k for k in est.__dict__ if k.endswith("_") or k.startswith("_")),
    }


def assert_same(est, snap):
    now = snapshot(est)
    for key in ("P", "bias", "M", "S", "rng"):
        if snap[key] is None:
            assert now[key] is None, key
        else:
            np.testing.assert_array_equal(now[key], snap[key], err_msg=key)
    for key in ("t", "history", "n_iter", "n_features_in", "rng_pos", "attrs"):
        assert now[key] == snap[key], key


# --- a failed refit leaves the previous model ----------------------------------

def _assert_failed_refit_keeps_model(m, refit, exc, match=None):
    """refit(m) raises `exc` (its message matching `match`) and leaves m as it was."""
    before = snapshot(m)
    with pytest.raises(exc, match=match):
        refit(m)
    assert_same(m, before)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, MemoryError])
def test_refit_failing_in_parameter_initialisation_keeps_previous_model(monkeypatch, exc):
    """The new, wider model's tables fail to allocate (or Ctrl-C lands while
    they are drawn): n_features_in_, P, moments, history and RNG stay."""
    X, y = _data()
    m = reg().fit(X, y)
    before = snapshot(m)
    pred = m.predict(X)

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(training.FMState, "init", classmethod(lambda cls, *a, **k: boom()))
    wide = sp.hstack([X, sp.random(X.shape[0], 50, density=0.1, random_state=1)]).tocsr()
    with pytest.raises(exc):
        m.fit(wide, y)
    assert_same(m, before)
    monkeypatch.undo()
    np.testing.assert_array_equal(m.predict(X), pred)  # the old width still predicts
    with pytest.raises(ValueError, match="features"):
        m.predict(wide)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("at", [1, 2, 3])
def test_refit_interrupted_in_any_epoch_keeps_previous_model(monkeypatch, solver, at):
    X, y = _data()
    m = reg(solver=solver).fit(X, y)
    monkeypatch.setattr("fmnumba.estimators.get_kernels", lambda *a, **k: FailingKernels(at))
    X2, y2 = _data(seed=5)
    _assert_failed_refit_keeps_model(m, lambda m: m.set_params(max_iter=5).fit(X2, y2),
                                     KeyboardInterrupt)


def test_refit_that_diverges_keeps_previous_model():
    X, y = _data()
    m = reg().fit(X, y)
    _assert_failed_refit_keeps_model(m, lambda m: m.set_params(learning_rate=1e30).fit(X, y),
                                     DivergenceError)


def test_refit_refused_for_memory_keeps_previous_model():
    X, y = _data()
    m = reg().fit(X, y)
    huge = sp.csr_matrix((np.ones(2), np.array([0, 2**40 - 1]), np.array([0, 1, 2])),
                         shape=(2, 2**40))
    _assert_failed_refit_keeps_model(m, lambda m: m.fit(huge, [1.0, 2.0]), MemoryError,
                                     match="GiB")


def test_failed_partial_fit_leaves_rng_so_continuation_is_identical(monkeypatch):
    """A partial_fit that fails before its epoch completes restores the
    generator too: the retried call trains exactly like an undisturbed one."""
    X, y = _data()
    a = reg().fit(X, y)
    b = reg().fit(X, y)
    before = snapshot(b)
    monkeypatch.setattr("fmnumba.estimators.get_kernels",
                        lambda *a, **k: FailingKernels(1, MemoryError))
    with pytest.raises(MemoryError):
        b.partial_fit(X, y)
    monkeypatch.undo()
    # the epoch's update happened before the failure: P was put back, and
    # Adam restarts its moments (documented), so compare with that restart
    np.testing.assert_array_equal(b._state.P, before["P"])
    assert b.history_ == before["history"] and b.n_iter_ == before["n_iter"]
    assert b._rng.get_state()[2] == before["rng_pos"]
    np.testing.assert_array_equal(b._rng.get_state()[1], before["rng"])
    # without a failing kernel a rejected call changes nothing at all
    c = reg().fit(X, y)
    snap_c = snapshot(c)
    with pytest.raises(ValueError):
        c.partial_fit(X, y, sample_weight=-np.ones(X.shape[0]))
    assert_same(c, snap_c)
    c.partial_fit(X, y)
    a.partial_fit(X, y)
    np.testing.assert_array_equal(a._state.P, c._state.P)


def test_first_fit_interrupted_keeps_its_completed_epochs(monkeypatch):
    X, y = _data()
    monkeypatch.setattr("fmnumba.estimators.get_kernels", lambda *a, **k: FailingKernels(3))
    m = reg(max_iter=5)
    with pytest.raises(KeyboardInterrupt):
        m.fit(X, y)
    assert m.n_iter_ == 2 == len(m.history_["train_loss"]) == len(m.history_["time_s"])
    monkeypatch.setattr("fmnumba.estimators.get_kernels", lambda *a, **k: FailingKernels(1))
    fresh = reg(max_iter=5)
    with pytest.raises(KeyboardInterrupt):
        fresh.fit(X, y)
    assert not hasattr(fresh, "_state") and not hasattr(fresh, "n_features_in_")


# --- Ctrl-C and history_ ------------------------------------------------------

_INTERRUPT_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    import numpy as np
    sys.path.insert(0, {root!r})
    import fmnumba
    from fmnumba.datasets import make_fm_data
    d = make_fm_data(4000, (200, 100, 20), random_state=0)
    Xv, yv = d.X[:500], d.y[:500]
    mode = sys.argv[1]
    rs = np.random.default_rng(0)
    m = fmnumba.FMRegressor(n_factors=4, max_iter=2, batch_size=64, random_state=0,
                            n_jobs=1).fit(d.X, d.y, eval_set=(Xv, yv))
    spans = []
    for _ in range(3):
        t0 = time.perf_counter()
        m.set_params(max_iter=3).fit(d.X, d.y, eval_set=(Xv, yv))
        spans.append(time.perf_counter() - t0)
    span = min(spans)
    bad, interrupted, kept_previous, refit = 0, 0, 0, 0

    def interrupt():
        if mode == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
        else:  # an exception at an arbitrary bytecode, not held by the training loop
            signal.setitimer(signal.ITIMER_REAL, 1e-6)

    def alarm(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGALRM, alarm)

    for i in range(4 * {n}):
        if interrupted >= {n}:
            break
        warm = i % 2 == 1
        m.set_params(warm_start=warm, max_iter=3)
        P = m._state.P.copy()
        hist = {{k: list(v) for k, v in m.history_.items()}}
        timer = threading.Timer(rs.uniform(0, span), interrupt)
        raised, done = False, False
        try:
            timer.start()
            m.fit(d.X, d.y, eval_set=(Xv, yv))
            done = True
            timer.join()
            time.sleep(0.005)
        except KeyboardInterrupt:
            raised = not done
        while True:  # let a late signal land before checking
            try:
                timer.join()
                time.sleep(0.005)
                break
            except KeyboardInterrupt:
                pass
        h = m.history_
        lens = {{k: len(v) for k, v in h.items()}}
        n = lens["train_loss"]  # val_score is recorded only with scoring=
        if (lens["val_loss"] != n or lens["time_s"] != n or lens.get("val_score", 0) not in (0, n)
                or m.n_iter_ != n):
            bad += 1
        if not np.all(np.isfinite(m._state.P)):
            bad += 1
        if raised:
            interrupted += 1
        else:  # the fit ended first: aim earlier
            span *= 0.8
        if raised and not warm:  # the previous model, or (signal just after return) the new one
            refit += 1
            same = np.array_equal(m._state.P, P) and h == hist
            kept_previous += int(same or (m.n_iter_ == 3 and h != hist))
    print(json.dumps({{"bad": bad, "interrupted": interrupted, "kept": kept_previous,
                       "refit": refit}}))
""")


@pytest.mark.parametrize("mode", ["sigint", "alarm"])
def test_interrupts_at_random_points_keep_history_consistent(mode):
    """40 interrupts at random moments inside fit(..., eval_set=...), alternating
    fresh refits and warm starts: every list in history_ has n_iter_
    entries, the parameters are finite, and an interrupted refit leaves the
    previous model (never a partial new one). 'sigint' sends a real Ctrl-C; 'alarm' raises
    KeyboardInterrupt from a signal handler at whatever bytecode runs."""
    script = _INTERRUPT_SCRIPT.format(root=ROOT, n=40)
    out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    import json
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["bad"] == 0, r
    assert r["interrupted"] == 40, r  # the interrupts really landed inside fits
    if mode == "sigint":
        assert r["kept"] == r["refit"], r


def test_sigint_is_held_to_the_end_of_the_epoch(monkeypatch):
    """A Ctrl-C during an epoch is raised once that epoch is recorded."""
    import signal
    X, y = _data()
    from fmnumba import cpu
    calls = []

    class Kern(FailingKernels):
        def adam_epoch(self, *a):
            out = cpu.adam_epoch(*a)
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGINT)
            return out

    monkeypatch.setattr("fmnumba.estimators.get_kernels", lambda *a, **k: Kern(0))
    m = reg(max_iter=10)
    with pytest.raises(KeyboardInterrupt):
        m.fit(X, y, eval_set=(X, y))
    assert m.n_iter_ == 2 == len(m.history_["val_loss"]) == len(m.history_["time_s"])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --- runaway training ---------------------------------------------------------

def test_huge_learning_rate_is_runaway_training():
    """learning_rate=1e6 keeps the loss finite (about 1e23) but runs away."""
    X, y = _data(n=400)
    with pytest.raises(DivergenceError, match="training loss reached .* starting scale"):
        reg(learning_rate=1e6, max_iter=5).fit(X, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_single_step_to_huge_parameters_is_caught(dtype):
    """One batch, one epoch at lr 1e30: the loss measured before the step is
    fine; the parameters it leaves are not."""
    X, y = _data(n=50)
    with pytest.raises(DivergenceError,
                       match="parameter reached|non-finite|parameters it ended with"):
        reg(learning_rate=1e30, max_iter=1, batch_size=1000, dtype=dtype).fit(X, y)


def test_runaway_with_warn_keeps_sane_parameters():
    X, y = _data(n=400)
    m = reg(learning_rate=1e6, max_iter=5, on_divergence="warn")
    with pytest.warns(RuntimeWarning, match="diverged"):
        m.fit(X, y)
    assert training.abs_max(m._state.P) < 1.0  # the initial model, not a runaway one
    assert np.all(np.isfinite(m.predict(X)))


def test_cli_huge_learning_rate_exits_2(tmp_path, capsys):
    from sklearn.datasets import dump_svmlight_file
    X, y = _data(n=60)
    path = tmp_path / "train.svm"
    dump_svmlight_file(X, y, str(path))
    code = main(["fit", str(path), "--task", "r", "--lr", "1e30", "--epochs", "1",
                 "--model", str(tmp_path / "m.npz"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "diverged" in err and "learning_rate" in err and "Traceback" not in err
    assert not (tmp_path / "m.npz").exists()


def test_early_stopping_divergence_restores_the_best_epoch(monkeypatch):
    """With early stopping the guard's one copy is the best epoch's: a
    divergence puts it back, as a completed fit would."""
    X, y = _data(n=400)
    m = reg(max_iter=4, early_stopping=True, n_iter_no_change=10, on_divergence="warn",
            learning_rate=0.01)
    ref = reg(max_iter=2, early_stopping=True, n_iter_no_change=10,
              learning_rate=0.01).fit(X, y)
    real = training.divergence_reason
    seen = []

    def third_diverges(*a):
        seen.append(1)
        return "non-finite loss" if len(seen) == 3 else real(*a)

    monkeypatch.setattr(training, "divergence_reason", third_diverges)
    with pytest.warns(RuntimeWarning, match="best epoch"):
        m.fit(X, y)
    assert m.n_iter_ == 2
    best = int(np.argmin(ref.history_["val_loss"]))
    if best == 1:  # epoch 2 was the best: the same parameters as the 2-epoch fit
        np.testing.assert_array_equal(m._state.P, ref._state.P)


def test_row_copy_holds_only_rows_that_change():
    """Features absent from the training rows are not copied by the guard,
    and restoring the copy puts every parameter back exactly."""
    X = sp.random(50, 1000, density=0.002, format="csr", random_state=0, dtype=np.float32)
    X.eliminate_zeros()
    rows = training.changing_rows(X, 1000, 9 * 4)
    assert rows is not None and rows.dtype == np.int32
    assert set(rows.tolist()) == set(X.indices.tolist())
    st = training.FMState.init(1000, 8, np.float32, 0.1, 0.0, np.random.default_rng(0))
    copy = training._RowCopy(st, rows)
    P0 = st.P.copy()
    st.P[rows] += 1.0
    st.bias_state[0] = 5.0
    copy.put(st)
    np.testing.assert_array_equal(st.P, P0)
    assert st.bias_state[0] == 0.0
    dense = sp.csr_matrix(np.ones((3, 10), dtype=np.float32))
    assert training.changing_rows(dense, 10, 36) is None


# --- fitted models hold finite values only ------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_std_bounded_per_dtype(dtype):
    X, y = _data()
    lim = training.init_std_limit(dtype)
    with pytest.raises(ValueError, match="init_std"):
        reg(init_std=1e39 if dtype == np.float32 else 1e300, dtype=dtype).fit(X, y)
    with pytest.raises(ValueError, match="init_std"):
        reg(init_std=lim * 2, dtype=dtype).fit(X, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("init_std", [1e-3, 1.0, 1e4, "limit"])
@pytest.mark.parametrize("lr", [1e-3, 1e3, 1e30])
@pytest.mark.parametrize("on_div", ["raise", "warn"])
def test_any_hyperparameters_leave_finite_saveable_model(tmp_path, dtype, init_std, lr, on_div):
    X, y = _data(n=80)
    std = training.init_std_limit(dtype) if init_std == "limit" else init_std
    m = reg(init_std=std, learning_rate=lr, dtype=dtype, on_divergence=on_div, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            m.fit(X, y)
        except DivergenceError:
            pass
    if not hasattr(m, "_state"):
        return
    st = m._state
    for a in (st.P, st.M, st.S, st.bias_state):
        assert a is None or np.all(np.isfinite(a))
    assert training.abs_max(st.P) <= training.param_limit(dtype)
    m.save(tmp_path / "m.npz")
    back = fmnumba.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back._state.P, st.P)


def test_save_refuses_what_load_rejects(tmp_path):
    X, y = _data()
    m = reg().fit(X, y)
    m._state.P[0, 1] = np.nan
    with pytest.raises(ValueError, match="save: .*NaN or inf"):
        m.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    m = reg().fit(X, y)
    m._state.S[0, 0] = np.inf
    with pytest.raises(ValueError, match="Adam second moments"):
        m.save(tmp_path / "m.npz")
    m = reg().fit(X, y)
    m.history_["time_s"].pop()
    with pytest.raises(ValueError, match="history_"):
        m.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


# --- targets --------------------------------------------------------------------

def test_targets_beyond_float32_resolution_warn():
    X, y = _data(n=200)
    big = 1e15 + np.random.default_rng(0).normal(size=200)
    with pytest.warns(validation.TargetPrecisionWarning, match="float32 resolves"):
        reg(max_iter=1).fit(X, big)
    with pytest.warns(validation.TargetPrecisionWarning, match="float64 resolves"):
        reg(max_iter=1, dtype=np.float64).fit(X, 1e18 + np.arange(200.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", validation.TargetPrecisionWarning)
        reg(max_iter=1).fit(X, y)
        reg(max_iter=1).fit(X, np.full(200, 1e15))  # constant: nothing to resolve
        reg(max_iter=1, dtype=np.float64).fit(X, big)


@pytest.mark.parametrize("y", [np.arange(40) + 1j, np.arange(40).astype(complex),
                               np.array([1 + 2j] * 40, dtype=object),
                               np.array(["1.5"] * 40), np.array(["1.5"] * 40, dtype=object),
                               np.arange(40).astype("datetime64[s]")])
def test_regressor_rejects_complex_and_text_targets(y):
    X = sp.random(40, 5, density=0.5, format="csr", random_state=0)
    with pytest.raises(ValueError, match="^y: "):
        reg().fit(X, y)


# --- memory budget ----------------------------------------------------------------

def test_huge_factor_count_refused_before_allocating():
    """2 features, k = 10**8: the tables are 3.2 GB, the per-batch q buffer
    (batch × k) 100 GB; the budget counts it and refuses, naming batch_size."""
    X = sp.random(300, 2, density=1.0, format="csr", random_state=0)
    with pytest.raises(MemoryError, match="batch_size") as e:
        reg(n_factors=10**8, batch_size=256).fit(X, np.ones(300))
    assert "GiB" in str(e.value) and "n_factors" in str(e.value)


def test_budget_counts_every_part():
    """fit_memory's parts for a 20M-feature k = 1 model: the guard's copy
    and Adam's per-feature counts are counted, and a machine just smaller
    than the total refuses the fit."""
    n, k = 20_000_000, 1
    parts = validation.fit_memory(n, k, np.float32, "adam", n_rows=10, batch_nnz=100)
    table = n * (1 + k) * 4
    assert parts["tables"] == 3 * table and parts["copy"] == table
    assert parts["features"] == 9 * n  # int64 counts and a one-byte mask
    sgd = validation.fit_memory(n, k, np.float32, "sgd", n_rows=10)
    assert sgd["tables"] == table and sgd["features"] == n and sgd["batch"] == 0
    total = sum(parts.values())
    orig = validation._physical_memory
    try:
        validation._physical_memory = lambda: total - 1
        with pytest.raises(MemoryError, match="GiB"):
            validation.check_model_size(n, k, np.float32, "adam", n_rows=10, batch_nnz=100)
        validation._physical_memory = lambda: total
        validation.check_model_size(n, k, np.float32, "adam", n_rows=10, batch_nnz=100)
    finally:
        validation._physical_memory = orig


def test_max_batch_nnz_bounds_every_batch():
    X = sp.random(500, 30, density=0.2, format="csr", random_state=3)
    bound = validation.max_batch_nnz(X, 64)
    lengths = np.diff(X.indptr)
    for seed in range(20):
        order = np.random.default_rng(seed).permutation(500)
        for a in range(0, 500, 64):
            assert lengths[order[a:a + 64]].sum() <= bound
    assert validation.max_batch_nnz(X, 10_000) == X.nnz


def test_refit_scores_the_model_being_trained():
    """The new state is built aside during a refit; the validation scorer
    must score it, not the previous model the estimator still holds."""
    X, y = _data()
    X2, y2 = _data(seed=7)
    m = reg(max_iter=1).fit(X, y)
    m.set_params(max_iter=3, scoring="neg_mean_squared_error").fit(X2, y2, eval_set=(X2, y2))
    from sklearn.metrics import mean_squared_error
    assert m.history_["val_score"][-1] == pytest.approx(-mean_squared_error(y2, m.predict(X2)),
                                                        rel=1e-6)
