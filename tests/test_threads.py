"""Threading: a fork-safe layer (forking after a fit works), one thread per
worker of a process pool, and concurrent fits from threads."""
import os
import subprocess
import sys
import textwrap
import threading

import numba
import numpy as np
import pytest

from fmnumba import FMRegressor
from fmnumba._threads import resolve_threads
from fmnumba.datasets import make_ratings

USER_LAYER = os.environ.get("NUMBA_THREADING_LAYER")


@pytest.fixture(scope="module")
def ratings():
    return make_ratings(3000, n_users=60, n_items=40, n_context=(), random_state=0)


@pytest.mark.skipif(bool(USER_LAYER), reason="NUMBA_THREADING_LAYER chosen by the user")
def test_layer_is_fork_and_thread_safe(ratings):
    FMRegressor(max_iter=1, n_jobs=2, random_state=0).fit(ratings.X, ratings.y)
    assert numba.threading_layer() in ("tbb", "workqueue")


_FORK_SCRIPT = textwrap.dedent("""
    import json, multiprocessing as mp
    import numpy as np
    from joblib import Parallel, delayed
    from fmnumba import FMRegressor
    from fmnumba._threads import resolve_threads
    from fmnumba.datasets import make_ratings

    d = make_ratings(3000, n_users=60, n_items=40, n_context=(), random_state=0)
    m = FMRegressor(max_iter=2, n_jobs=2, random_state=0).fit(d.X, d.y)

    def work(i):
        fit = FMRegressor(max_iter=2, random_state=0).fit(d.X, d.y)
        return [float(m.predict(d.X[:50]).sum()), float(fit.predict(d.X[:50]).sum()),
                resolve_threads(None)]

    with mp.get_context("fork").Pool(2) as pool:
        a = pool.map(work, range(3))
    b = Parallel(n_jobs=2, backend="multiprocessing")(delayed(work)(i) for i in range(3))
    here = FMRegressor(max_iter=2, random_state=0).fit(d.X, d.y)
    print(json.dumps({"pool": a, "joblib": b, "parent": [float(m.predict(d.X[:50]).sum()),
                      float(here.predict(d.X[:50]).sum())]}))
""")


def test_fork_after_fit_works():
    """A fork pool and joblib's multiprocessing backend after a parallel fit
    (GNU OpenMP kills such children and the parent waits for ever)."""
    import json
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    p = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "fork() called" not in p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for rows in (out["pool"], out["joblib"]):
        assert len(rows) == 3
        for predicted, refit, threads in rows:
            assert predicted == out["parent"][0] and refit == out["parent"][1]
            assert threads == 1          # a pool worker does not oversubscribe


def _threads_in_worker():
    return resolve_threads(None), resolve_threads(1)


def test_loky_workers_use_their_thread_limit():
    from joblib import Parallel, delayed
    got = Parallel(n_jobs=2, backend="loky")(delayed(_threads_in_worker)() for _ in range(2))
    limit = max(1, os.cpu_count() // 2)
    assert all(d <= limit and one == 1 for d, one in got)


def test_environment_limit_is_honoured(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert resolve_threads(None) == 1
    assert resolve_threads(-1) == numba.config.NUMBA_NUM_THREADS   # asked for explicitly


def test_concurrent_fits_from_threads_match_serial(ratings):
    kw = dict(max_iter=3, n_jobs=2, random_state=0, early_stopping=False)
    ref = FMRegressor(**kw).fit(ratings.X, ratings.y)
    models = [FMRegressor(**kw) for _ in range(3)]
    errors = []

    def run(m):
        try:
            m.fit(ratings.X, ratings.y)
        except BaseException as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for m in models:
        np.testing.assert_array_equal(m._state.P, ref._state.P)


@pytest.mark.skipif(bool(USER_LAYER), reason="NUMBA_THREADING_LAYER chosen by the user")
def test_choice_survives_a_config_reload():
    """numba.config reloaded from the environment after import (as numba-cuda
    does): the fork-safe layer chosen at import still runs the kernels."""
    script = textwrap.dedent("""
        import numba
        import fmnumba
        from fmnumba import FMRegressor
        from fmnumba.datasets import make_ratings
        import os
        os.environ["NUMBA_OPT"] = "3"   # Numba re-reads its config when the environment changes
        numba.config.reload_config()
        assert numba.config.THREADING_LAYER == "default"
        d = make_ratings(500, n_users=20, n_items=20, n_context=(), random_state=0)
        FMRegressor(max_iter=1, n_jobs=2).fit(d.X, d.y)
        print(numba.config.THREADING_LAYER, numba.threading_layer())
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    loaded = p.stdout.split()[-1]
    assert loaded in ("tbb", "workqueue")


def test_threadpoolctl_sees_numbas_pool():
    from threadpoolctl import threadpool_info
    pools = [i for i in threadpool_info() if i["user_api"] == "numba"]
    assert len(pools) == 1
    assert pools[0]["threading_layer"] == numba.threading_layer()
    assert pools[0]["num_threads"] == numba.get_num_threads()


def test_threadpool_limits_bound_a_default_fit(ratings, monkeypatch):
    """threadpool_limits(1) around a fit with n_jobs=None runs its kernels
    on one thread (as scikit-learn's own estimators do); an explicit n_jobs
    still wins, and the limit is lifted afterwards."""
    import fmnumba.cpu as cpu
    from threadpoolctl import threadpool_limits
    seen = []
    real = cpu.sgd_epoch

    def spy(X, y, sw, order, n_threads, *rest):
        seen.append((n_threads, numba.get_num_threads()))
        return real(X, y, sw, order, n_threads, *rest)
    monkeypatch.setattr(cpu, "sgd_epoch", spy)
    kw = dict(solver="sgd", max_iter=1, random_state=0)
    before = numba.get_num_threads()
    FMRegressor(**kw).fit(ratings.X, ratings.y)
    free = seen.pop()
    assert free == (resolve_threads(None),) * 2
    with threadpool_limits(limits=1):
        FMRegressor(**kw).fit(ratings.X, ratings.y)
        assert seen.pop() == (1, 1)
        FMRegressor(n_jobs=2, **kw).fit(ratings.X, ratings.y)
        assert seen.pop() == (min(2, numba.config.NUMBA_NUM_THREADS),) * 2
    assert numba.get_num_threads() == before
    FMRegressor(**kw).fit(ratings.X, ratings.y)
    assert seen.pop() == free


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_explicit_n_jobs_reaches_the_adam_epoch(ratings, monkeypatch):
    """An environment thread limit bounds only n_jobs=None: the Adam epochs
    of a fit with n_jobs=2 run on two threads (when its batches are heavy
    enough that fmnumba does not choose one thread itself)."""
    import fmnumba.cpu as cpu
    from fmnumba.cpu import adam
    seen = []
    real = cpu.adam_epoch

    def spy(*a):
        seen.append(numba.get_num_threads())
        return real(*a)
    monkeypatch.setattr(cpu, "adam_epoch", spy)
    monkeypatch.setattr(adam, "serial_is_faster", lambda X, batch_size, P: False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    FMRegressor(max_iter=1, n_jobs=2, random_state=0).fit(ratings.X, ratings.y)
    assert seen == [2]
    FMRegressor(max_iter=1, random_state=0).fit(ratings.X, ratings.y)
    assert seen[-1] == 1
