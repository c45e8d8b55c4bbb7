"""DaskFMRegressor / DaskFMClassifier on a real LocalCluster (2 worker
processes on 127.0.0.1): sync mode against single-machine Adam, local mode,
prediction, conversion, lazy readers, faults and bad partitions."""
import os
import signal

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("distributed")
import dask  # noqa: E402
import dask.array as da  # noqa: E402
from distributed import Client, LocalCluster, wait  # noqa: E402

from fmnumba import FMClassifier, FMRegressor, load  # noqa: E402
from fmnumba.dask import DaskFMClassifier, DaskFMRegressor, read_libsvm  # noqa: E402
from fmnumba.datasets import make_clicks, make_ratings  # noqa: E402

KW = dict(n_factors=4, max_iter=3, batch_size=64, random_state=0)
WORKER_MEMORY = 2 << 30


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit=WORKER_MEMORY) as cluster, \
            Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def ratings():
    d = make_ratings(4000, n_users=120, n_items=80, random_state=1)
    Xtr, Xte, ytr, yte = d.split(0.25, random_state=0)
    return Xtr.tocsr(), Xte.tocsr(), ytr, yte


def _dask(X, y, rows, sw=None):
    Xd = da.from_array(X, chunks=(rows, -1), asarray=False)
    yd = da.from_array(y, chunks=rows)
    out = [Xd, yd]
    if sw is not None:
        out.append(da.from_array(sw, chunks=rows))
    return out


def _on_one_worker(client, *arrays):
    """The arrays persisted on the first worker (so one shard holds every partition)."""
    w = sorted(client.scheduler_info(n_workers=-1)["workers"])[:1]
    out = [a.persist(workers=w) for a in arrays]
    wait(out)
    return out


def _rmse(p, y):
    return float(np.sqrt(np.mean((np.asarray(p) - y) ** 2)))


def test_sync_one_worker_is_single_machine_adam_bit_for_bit(client, ratings):
    Xtr, _, ytr, _ = ratings
    sw = np.random.default_rng(3).uniform(0.0, 2.0, Xtr.shape[0])
    sw[::17] = 0.0  # zero-weight rows are dropped, as the single-machine fit does
    ref = FMRegressor(**KW).fit(Xtr, ytr, sample_weight=sw)
    Xd, yd, wd = _on_one_worker(client, *_dask(Xtr, ytr, 700, sw))
    m = DaskFMRegressor(**KW, client=client).fit(Xd, yd, sample_weight=wd)
    assert m.dask_stats_["n_shards"] == 1 and m.dask_stats_["n_partitions"] == 5
    np.testing.assert_array_equal(m._state.P, ref._state.P)
    np.testing.assert_array_equal(m._state.M, ref._state.M)
    np.testing.assert_array_equal(m._state.S, ref._state.S)
    np.testing.assert_array_equal(m._state.bias_state, ref._state.bias_state)
    assert m._state.t == ref._state.t
    assert m.history_["train_loss"] == pytest.approx(ref.history_["train_loss"], rel=1e-12)


def test_sync_two_workers_matches_single_machine(client, ratings):
    Xtr, Xte, ytr, yte = ratings
    ref = FMRegressor(**KW).fit(Xtr, ytr)
    Xd, yd = _dask(Xtr, ytr, 750)  # not persisted: spread over both workers
    m = DaskFMRegressor(**KW, client=client).fit(Xd, yd)
    assert m.dask_stats_["n_shards"] == 2
    assert m._state.t == ref._state.t
    np.testing.assert_allclose(m._state.P, ref._state.P, rtol=1e-4, atol=1e-6)
    assert m.intercept_ == pytest.approx(ref.intercept_, rel=1e-6)
    p = m.predict(da.from_array(Xte, chunks=(300, -1), asarray=False))
    assert isinstance(p, da.Array)
    np.testing.assert_allclose(p.compute(), ref.predict(Xte), rtol=1e-5, atol=1e-5)


def test_local_mode_rmse_within_2_percent(client):
    d = make_ratings(8000, n_users=200, n_items=100, random_state=1)
    Xtr, Xte, ytr, yte = d.split(0.25, random_state=0)
    kw = dict(n_factors=4, max_iter=15, batch_size=64, learning_rate=0.02, random_state=0)
    ref = FMRegressor(**kw).fit(Xtr, ytr)
    Xd, yd = _dask(Xtr, ytr, 1500)
    m = DaskFMRegressor(**kw, client=client, mode="local", sync_every=8).fit(Xd, yd)
    assert m.dask_stats_["n_shards"] == 2 and m.n_iter_ == 15
    got = _rmse(m.to_local().predict(Xte), yte)
    want = _rmse(ref.predict(Xte), yte)
    assert got <= 1.02 * want, (got, want)


def test_eval_set_history_and_to_local_roundtrip(client, ratings, tmp_path):
    Xtr, Xte, ytr, yte = ratings
    Xd, yd = _dask(Xtr, ytr, 1000)
    Xv, yv = _dask(Xte, yte, 500)
    m = DaskFMRegressor(**KW, client=client).fit(Xd, yd, eval_set=(Xv, yv))
    local = m.to_local()
    assert isinstance(local, FMRegressor)
    assert len(m.history_["val_loss"]) == 3
    # the recorded validation loss is the squared loss of the fitted model
    assert m.history_["val_loss"][-1] == pytest.approx(
        0.5 * np.mean((local.predict(Xte) - yte) ** 2), rel=1e-4)
    local.save(tmp_path / "m.npz")
    back = load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.predict(Xte), local.predict(Xte))
    np.testing.assert_array_equal(m.predict(Xv).compute(), local.predict(Xte))


def test_classifier_sync_labels_and_proba(client):
    d = make_clicks(3000, field_sizes=(60, 40, 10), random_state=2)
    X = d.X.tocsr()
    labels = np.where(d.y > 0, "click", "none")
    kw = dict(n_factors=4, max_iter=3, batch_size=128, random_state=0)
    ref = FMClassifier(**kw).fit(X, labels)
    Xd = da.from_array(X, chunks=(750, -1), asarray=False)
    yd = da.from_array(labels, chunks=750)
    m = DaskFMClassifier(**kw, client=client).fit(Xd, yd)
    assert list(m.classes_) == ["click", "none"]
    np.testing.assert_allclose(m._state.P, ref._state.P, rtol=1e-4, atol=1e-6)
    proba = m.predict_proba(Xd)
    assert proba.shape[1] == 2
    np.testing.assert_allclose(proba.compute(), ref.predict_proba(X), atol=1e-5)
    assert (m.predict(Xd).compute() == ref.predict(X)).mean() > 0.99
    assert isinstance(m.to_local(), FMClassifier)


def test_dataframe_input(client, ratings):
    dd = pytest.importorskip("dask.dataframe")
    import pandas as pd
    Xtr, _, ytr, _ = ratings
    dense = Xtr[:1200, :60].toarray()
    cols = [f"f{i}" for i in range(dense.shape[1])]
    ddf = dd.from_pandas(pd.DataFrame(dense, columns=cols), npartitions=3)
    ys = dd.from_pandas(pd.Series(ytr[:1200]), npartitions=3)
    ref = FMRegressor(**KW).fit(dense, ytr[:1200])
    m = DaskFMRegressor(**KW, client=client).fit(ddf, ys)
    np.testing.assert_allclose(m._state.P, ref._state.P, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m.predict(ddf).compute(), ref.predict(dense), atol=1e-5)
    assert list(m.feature_names_in_) == cols


def test_read_libsvm_one_partition_per_file_and_block(client, ratings, tmp_path):
    from sklearn.datasets import dump_svmlight_file
    Xtr, _, ytr, _ = ratings
    cuts = [0, 900, 2000, Xtr.shape[0]]
    for i in range(3):
        dump_svmlight_file(Xtr[cuts[i]:cuts[i + 1]], ytr[cuts[i]:cuts[i + 1]],
                           str(tmp_path / f"part{i}.svm"), zero_based=False)
    X, y = read_libsvm(str(tmp_path / "part*.svm"), n_features=Xtr.shape[1])
    assert X.numblocks == (3, 1)
    got, gy = X.compute(), y.compute()
    assert (got != Xtr).nnz == 0
    np.testing.assert_allclose(gy, ytr, rtol=1e-12)
    Xb, yb = read_libsvm(str(tmp_path / "part*.svm"), n_features=Xtr.shape[1], blocksize=8000)
    assert Xb.numblocks[0] > 3
    assert (Xb.compute() != Xtr).nnz == 0
    X1, y1 = _on_one_worker(client, X, y)
    m = DaskFMRegressor(**KW, client=client).fit(X1, y1)
    ref = FMRegressor(**KW).fit(got, gy)
    np.testing.assert_array_equal(m._state.P, ref._state.P)


class _Killer:
    """Kills the process of the worker holding the second shard at step `at`."""

    def __init__(self, at):
        self.at = at
        self.killed = None

    def __call__(self, coord, step):
        if self.killed is None and coord.stats["steps"] == self.at and len(coord.addresses) > 1:
            addr = coord.addresses[-1]
            pid = coord.client.run(os.getpid, workers=[addr])[addr]
            os.kill(pid, signal.SIGKILL)
            self.killed = addr


@pytest.mark.parametrize("mode", ["sync", "local"])
def test_killed_worker_resumes_from_last_synchronisation(client, ratings, mode):
    Xtr, _, ytr, _ = ratings
    kw = dict(KW, max_iter=2, mode=mode, sync_every=4)
    Xd, yd = _dask(Xtr, ytr, 1500)
    clean = DaskFMRegressor(**kw, client=client).fit(Xd, yd)
    m = DaskFMRegressor(**kw, client=client)
    m._on_step = kill = _Killer(at=10)
    m.fit(Xd, yd)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed process
    assert kill.killed is not None and m.dask_stats_["recoveries"] >= 1
    assert m.n_iter_ == 2 and m._state.t == clean._state.t
    assert np.isfinite(m._state.P).all()
    if mode == "sync":  # the same steps from the same state: the fault-free model
        np.testing.assert_allclose(m._state.P, clean._state.P, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(m._state.bias_state, clean._state.bias_state, rtol=1e-6)


def _bad_block(kind, n, nf):
    rng = np.random.default_rng(0)
    X = sp.random(n, nf, density=0.2, format="csr", random_state=1, dtype=np.float64)
    if kind == "nan":
        X.data[3] = np.nan
    elif kind == "index":
        X.indices[2] = nf + 5  # out of range: bypasses scipy's constructor checks
    elif kind == "oom":
        raise MemoryError("Unable to allocate 80.0 GiB for an array")
    del rng
    return X


@pytest.mark.parametrize("kind,err,match", [
    ("nan", ValueError, r"X partition 1: contains NaN or inf"),
    ("index", ValueError, r"X partition 1: index \d+ at row \d+ is out of range"),
    ("empty", ValueError, r"X partition 1: has 0 rows"),
    ("oom", MemoryError, r"X partition 1: the worker ran out of memory"),
])
def test_bad_partition_names_it(client, kind, err, match):
    nf, n = 30, 200
    good = sp.random(n, nf, density=0.2, format="csr", random_state=2)
    if kind == "empty":  # chunks of 200, 0 and 200 rows
        X = da.from_array(sp.vstack([good, good]).tocsr(), chunks=((n, 0, n), (nf,)),
                          asarray=False)
        y = da.ones(2 * n, chunks=((n, 0, n),))
    else:
        X = da.concatenate([da.from_array(good, chunks=(n, -1), asarray=False),
                            da.from_delayed(dask.delayed(_bad_block)(kind, n, nf),
                                            shape=(n, nf), dtype=np.float64,
                                            meta=sp.csr_matrix((0, nf)))], axis=0)
        y = da.ones(2 * n, chunks=n)
    with pytest.raises(err, match=match):
        DaskFMRegressor(**KW, client=client).fit(X, y)


def test_bad_targets_and_weights_name_the_partition(client, ratings):
    Xtr, _, ytr, _ = ratings
    y = ytr.copy()
    y[1500] = np.nan
    Xd, yd = _dask(Xtr, y, 1000)
    with pytest.raises(ValueError, match=r"y partition 1: contains NaN or inf"):
        DaskFMRegressor(**KW, client=client).fit(Xd, yd)
    sw = np.ones_like(ytr)
    sw[2500] = -1
    Xd, yd, wd = _dask(Xtr, ytr, 1000, sw)
    with pytest.raises(ValueError, match=r"sample_weight partition 2: contains negative"):
        DaskFMRegressor(**KW, client=client).fit(Xd, yd, sample_weight=wd)


def test_replica_larger_than_worker_memory_is_refused_before_allocating(client):
    from fmnumba._validation import _physical_memory
    k, nf = 7, (WORKER_MEMORY // 32) * 5 // 4  # replica: 1.25x the worker's memory_limit
    have = _physical_memory()
    if have is None or 4 * nf * (1 + k) * 4 > have:
        pytest.skip("the client's own model-size check needs 4 tables in this machine's RAM")
    cols = np.random.default_rng(0).integers(0, nf, size=(100, 3))
    cols.sort(axis=1)
    Xs = sp.csr_matrix((np.ones(300, np.float32), cols.ravel().astype(np.int32),
                        np.arange(0, 301, 3, dtype=np.int32)), shape=(100, nf))
    X = da.from_array(Xs, chunks=(50, -1), asarray=False)
    y = da.ones(100, chunks=50)
    with pytest.raises(MemoryError, match=r"X partition \d.*memory_limit"):
        DaskFMRegressor(n_factors=k, max_iter=1, client=client).fit(X, y)


def test_parameter_and_input_errors(client, ratings):
    Xtr, _, ytr, _ = ratings
    Xd, yd = _dask(Xtr, ytr, 1000)
    with pytest.raises(ValueError, match="mode='bogus'"):
        DaskFMRegressor(mode="bogus", client=client).fit(Xd, yd)
    with pytest.raises(ValueError, match="sync_every"):
        DaskFMRegressor(mode="local", sync_every=0, client=client).fit(Xd, yd)
    with pytest.raises(ValueError, match="learning_rate"):
        DaskFMRegressor(learning_rate=-1, client=client).fit(Xd, yd)
    with pytest.raises(TypeError, match="dask array"):
        DaskFMRegressor(client=client).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="rechunk"):
        DaskFMRegressor(client=client).fit(da.from_array(Xtr, chunks=(1000, 50),
                                                         asarray=False), yd)
    with pytest.raises(ValueError, match="partitions"):
        DaskFMRegressor(client=client).fit(Xd, da.from_array(ytr, chunks=500))
    with pytest.raises(ValueError, match="early_stopping"):
        DaskFMRegressor(early_stopping=True, client=client).fit(Xd, yd)
