"""Model files: bit-exact round trip, atomic save, clear errors (a
ModelFileError, which is a ValueError) for truncated, corrupted or foreign
files, and no code execution from a crafted file."""
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

import fmnumba
from fmnumba import FMClassifier, FMRegressor
from fmnumba import io as fio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = sp.random(60, 7, density=0.4, format="csr", random_state=0)
Y = np.random.default_rng(0).normal(size=60)


@pytest.fixture(scope="module")
def models():
    return {
        "reg": FMRegressor(n_factors=3, max_iter=3, random_state=0).fit(X, Y),
        "reg64_sgd": FMRegressor(n_factors=2, max_iter=2, solver="sgd", dtype=np.float64,
                                 random_state=1).fit(X, Y),
        "clf_str": FMClassifier(n_factors=3, max_iter=2, random_state=0).fit(X, np.where(Y > 0, "pos", "neg")),
        "clf_hinge": FMClassifier(n_factors=2, loss="hinge", max_iter=2).fit(X, (Y > 0).astype(int) + 1),
        "groups": FMRegressor(n_factors=np.int64(2), max_iter=2, groups=np.array([0, 0, 1, 1, 1, 2, 2]),
                              l2_reg_v=np.array([1e-3, 1e-4, 0.0]), random_state=np.int64(3)).fit(X, Y),
    }


def _arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _write(path, arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _with_meta(src, dst, **changes):
    arrays = _arrays(src)
    meta = json.loads(arrays["meta"].tobytes())
    meta.update(changes)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    _write(dst, arrays)
    return dst


def _bad_load(path, *keywords):
    with pytest.raises(fmnumba.ModelFileError) as ei:
        fmnumba.load(path)
    msg = str(ei.value)
    assert "not a valid fmnumba model file" in msg and str(path) in msg
    for kw in keywords:
        assert kw in msg, msg
    return msg


def test_model_file_error_is_a_value_error():
    assert issubclass(fmnumba.ModelFileError, ValueError)
    assert fio.ModelFileError is fmnumba.ModelFileError


@pytest.mark.parametrize("name", ["reg", "reg64_sgd", "clf_str", "clf_hinge", "groups"])
def test_round_trip_is_bit_exact(models, name, tmp_path):
    m = models[name]
    path = tmp_path / "m.npz"
    m.save(path)
    m2 = fmnumba.load(path)
    assert type(m2) is type(m)
    for a, b in ((m._state.P, m2._state.P), (m._state.bias_state, m2._state.bias_state)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    if m._state.M is not None:
        assert np.array_equal(m._state.M, m2._state.M) and np.array_equal(m._state.S, m2._state.S)
    assert m2._state.t == m._state.t and m2.n_iter_ == m.n_iter_
    assert m2.history_ == m.history_
    np.testing.assert_array_equal(m2.predict(X), m.predict(X))
    if hasattr(m, "classes_"):
        assert m2.classes_.tolist() == m.classes_.tolist()
    p1, p2 = m.get_params(), m2.get_params()
    for k in p1:
        assert np.array_equal(np.asarray(p1[k]), np.asarray(p2[k])) or k == "random_state", k
    # a loaded model can go on training (Adam moments and step count kept)
    m2.partial_fit(X, m.predict(X) if name.startswith("clf") else Y)
    assert np.all(np.isfinite(m2.predict(X) if not name.startswith("clf") else m2.decision_function(X)))


def test_file_holds_no_pickle_and_json_metadata(models, tmp_path):
    path = tmp_path / "m.npz"
    models["clf_str"].save(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["M.npy", "P.npy", "S.npy", "bstate.npy", "meta.npy",
                                          "rng_keys.npy"]
    arrays = _arrays(path)  # allow_pickle defaults to False
    meta = json.loads(arrays["meta"].tobytes())
    assert meta["format"] == "fmnumba-model" and meta["format_version"] == fio.FORMAT_VERSION
    assert meta["fmnumba_version"] == fmnumba.__version__
    assert meta["classes"] == ["neg", "pos"] and meta["dtype"] == "float32"
    assert meta["params"]["n_factors"] == 3


# --- atomic save ---------------------------------------------------------------

def test_failed_save_keeps_the_previous_file(models, tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    models["reg"].save(path)
    before = path.read_bytes()

    def broken_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half a model")
        raise OSError("disk full")

    monkeypatch.setattr(fio.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        models["clf_str"].save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]  # the temporary file is gone
    monkeypatch.undo()
    assert type(fmnumba.load(path)) is FMRegressor


def test_interrupted_save_keeps_the_previous_file(models, tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    models["reg"].save(path)

    def interrupted(fh, **arrays):
        fh.write(b"PK")
        raise KeyboardInterrupt

    monkeypatch.setattr(fio.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        models["reg64_sgd"].save(path)
    monkeypatch.undo()
    assert fmnumba.load(path)._state.P.dtype == np.float32
    assert os.listdir(tmp_path) == ["m.npz"]


def test_process_killed_mid_save_never_leaves_a_half_model(tmp_path):
    """SIGKILL in the middle of writing: the final name holds the old model or
    nothing, never a partial file."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {ROOT!r})
        import numpy as np, scipy.sparse as sp
        import fmnumba
        from fmnumba import io as fio
        X = sp.random(30, 5, density=0.5, format="csr", random_state=0)
        m = fmnumba.FMRegressor(max_iter=1).fit(X, np.ones(30))
        real = fio.np.savez
        def dying(fh, **arrays):
            real(fh, **arrays)
            fh.flush()
            fh.truncate(fh.tell() // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        fio.np.savez = dying
        m.save(sys.argv[1])
    """)
    fresh = tmp_path / "fresh.npz"
    r = subprocess.run([sys.executable, "-c", script, str(fresh)], timeout=120)
    assert r.returncode == -9
    assert not fresh.exists()
    old = tmp_path / "old.npz"
    FMRegressor(max_iter=1).fit(X, Y).save(old)
    before = old.read_bytes()
    r = subprocess.run([sys.executable, "-c", script, str(old)], timeout=120)
    assert r.returncode == -9 and old.read_bytes() == before


def test_save_rejects_unstorable_parameters(models, tmp_path):
    m = FMRegressor(max_iter=1, groups=[0] * 7, l2_reg_w=[object()]).set_params()
    m._state = models["reg"]._state
    m.n_iter_, m.history_ = 1, {"train_loss": [], "val_loss": [], "time_s": []}
    with pytest.raises(TypeError, match="l2_reg_w"):
        m.save(tmp_path / "x.npz")
    assert not os.listdir(tmp_path)


# --- load: missing, truncated, corrupted, foreign, crafted -----------------------

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        fmnumba.load(tmp_path / "nope.npz")
    _bad_load(tmp_path, "directory")


@pytest.mark.parametrize("cut", [0, 10, 100, 0.5, -10])
def test_truncated_file(models, tmp_path, cut):
    path = tmp_path / "m.npz"
    models["reg"].save(path)
    raw = path.read_bytes()
    n = int(cut * len(raw)) if isinstance(cut, float) else cut
    path.write_bytes(raw[:n])
    _bad_load(path)


def test_corrupted_bytes(models, tmp_path):
    path = tmp_path / "m.npz"
    models["clf_str"].save(path)
    raw = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for _ in range(60):
        bad = bytearray(raw)
        for j in rng.integers(0, len(raw), 3):
            bad[j] ^= 0xFF
        path.write_bytes(bytes(bad))
        try:
            m = fmnumba.load(path)
        except fmnumba.ModelFileError as e:
            assert "not a valid fmnumba model file" in str(e)
        else:  # a flip in an unused zip field: the model must still be intact
            assert np.all(np.isfinite(m._state.P))


@pytest.mark.parametrize("content", [b"", b"hello world", b"\x93NUMPY garbage", os.urandom(2000)],
                         ids=["empty", "text", "npy-magic", "random"])
def test_foreign_bytes(tmp_path, content):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    _bad_load(path)


def test_foreign_npz_and_npy(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.arange(3))
    _bad_load(path, "metadata missing")
    npy = tmp_path / "a.npy"
    np.save(npy, np.arange(3))
    _bad_load(npy, "zip")


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.path.join(os.getcwd(), 'PWNED')}",))


def test_crafted_pickle_payload_never_runs(tmp_path, models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "PWNED"
    # 1. a raw pickle under a model name
    (tmp_path / "a.npz").write_bytes(pickle.dumps(_Evil()))
    _bad_load(tmp_path / "a.npz")
    # 2. an .npz whose arrays are pickled objects, with valid metadata
    models["reg"].save(tmp_path / "good.npz")
    arrays = _arrays(tmp_path / "good.npz")
    for target in ("P", "meta"):
        crafted = dict(arrays)
        crafted[target] = np.array([_Evil()], dtype=object)
        buf = io.BytesIO()
        np.savez(buf, **crafted, allow_pickle=True)
        (tmp_path / "b.npz").write_bytes(buf.getvalue())
        _bad_load(tmp_path / "b.npz", "Python objects")
    # 3. a single pickled .npy
    buf = io.BytesIO()
    np.save(buf, np.array([_Evil()], dtype=object), allow_pickle=True)
    (tmp_path / "c.npz").write_bytes(buf.getvalue())
    _bad_load(tmp_path / "c.npz")
    assert not marker.exists()


def test_header_claiming_a_huge_array_is_refused_without_allocating(tmp_path, models):
    models["reg"].save(tmp_path / "good.npz")
    arrays = _arrays(tmp_path / "good.npz")
    path = tmp_path / "bomb.npz"
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12, 4)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in arrays.items():
            b = io.BytesIO()
            np.save(b, v)
            zf.writestr(k + ".npy", buf.getvalue() + b"\0" * 64 if k == "P" else b.getvalue())
    _bad_load(path, "claim")


@pytest.mark.parametrize("change,keyword", [
    (dict(format="something-else"), "format tag"),
    (dict(format_version=99), "newer"),
    (dict(format_version="1"), "format version"),
    (dict(estimator="os.system"), "unknown estimator"),
    (dict(n_features=8), "shape"),
    (dict(n_factors=2), "shape"),
    (dict(dtype="float16"), "dtype"),
    (dict(dtype="object"), "dtype"),
    (dict(history=[1, 2]), "history"),
    (dict(t=-1), "t must be"),
    (dict(n_iter="many"), "n_iter"),
    (dict(params={"n_factors": -1}), "n_factors"),
    (dict(params={"zzz": 1}), "unknown parameters"),
    (dict(params=[1, 2]), "params"),
    (dict(classes=["a", "a"]), "classes"),
    (dict(classes=["a", "b", "c"]), "classes"),
    (dict(classes=[{"x": 1}, 2]), "classes"),
    (dict(classes_dtype="|O"), "classes"),
    (dict(feature_names_in=[1, 2]), "feature_names_in"),
])
def test_inconsistent_metadata(models, tmp_path, change, keyword):
    src = tmp_path / "good.npz"
    models["clf_str"].save(src)
    if "params" in change and isinstance(change["params"], dict):
        meta = json.loads(_arrays(src)["meta"].tobytes())
        change = dict(params={**meta["params"], **change["params"]})
    _bad_load(_with_meta(src, tmp_path / "bad.npz", **change), keyword)


def test_metadata_not_json_or_too_deep(models, tmp_path):
    models["reg"].save(tmp_path / "good.npz")
    arrays = _arrays(tmp_path / "good.npz")
    for meta in (b"\xff\xfe not utf8", b"{not json", b"[" * 100_000, b"[1, 2]"):
        arrays["meta"] = np.frombuffer(meta, dtype=np.uint8)
        _write(tmp_path / "bad.npz", arrays)
        _bad_load(tmp_path / "bad.npz")


@pytest.mark.parametrize("target,value,keyword", [
    ("P", "nan", "non-finite"), ("P", "f16", "dtype"), ("P", "shape", "shape"),
    ("bstate", "inf", "non-finite"), ("M", "drop", "moments"), ("X", "extra", "unexpected"),
])
def test_inconsistent_arrays(models, tmp_path, target, value, keyword):
    models["reg"].save(tmp_path / "good.npz")
    arrays = _arrays(tmp_path / "good.npz")
    if value == "nan":
        arrays[target] = arrays[target].copy()
        arrays[target][0, 0] = np.nan
    elif value == "inf":
        arrays[target] = arrays[target].copy()
        arrays[target][0] = np.inf
    elif value == "f16":
        arrays[target] = arrays[target].astype(np.float16)
    elif value == "shape":
        arrays[target] = arrays[target][:-1]
    elif value == "drop":
        del arrays[target]
    else:
        arrays[target] = np.zeros(3)
    _write(tmp_path / "bad.npz", arrays)
    _bad_load(tmp_path / "bad.npz", keyword)


# --- the command line: bad model and data files exit 2 with one line ---------------

def test_cli_bad_model_and_data_files_exit_2(models, tmp_path, capsys):
    cli = pytest.importorskip("fmnumba.cli")
    data = tmp_path / "d.libsvm"
    data.write_text("".join(f"{Y[i]:.3f} " + " ".join(f"{j + 1}:{X[i, j]:.3f}" for j in
                                                        X[i].indices) + "\n" for i in range(20)))
    good = tmp_path / "m.npz"
    models["reg"].save(good)
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[:300])
    crafted = tmp_path / "crafted.npz"
    arrays = _arrays(good)
    arrays["P"] = np.array([_Evil()], dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays, allow_pickle=True)
    crafted.write_bytes(buf.getvalue())
    nan = tmp_path / "nan.libsvm"
    nan.write_text("1 1:nan 2:1\n0 3:1\n")
    cases = [["predict", trunc, data], ["evaluate", crafted, data], ["predict", good, nan],
             ["fit", nan, "--task", "r", "-q"]]
    for argv in cases:
        code = cli.main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        assert err.count("\n") == 1 and "Traceback" not in err and "error" in err, err
    assert not (tmp_path / "PWNED").exists()


def test_version_1_files_still_load(models, tmp_path):
    """Files of the first format version (no generator state) load and predict."""
    src = tmp_path / "v2.npz"
    models["clf_str"].save(src)
    arrays = _arrays(src)
    meta = json.loads(arrays.pop("meta").tobytes())
    del arrays["rng_keys"], meta["rng"]
    meta["format_version"] = 1
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    _write(tmp_path / "v1.npz", arrays)
    m = fmnumba.load(tmp_path / "v1.npz")
    assert np.array_equal(m.predict(X), models["clf_str"].predict(X))
    assert not hasattr(m, "_rng")


def test_prefix_groups_round_trip(tmp_path):
    """groups= as {feature-name prefix: group id} is stored as a mapping and
    resolved again against the stored feature names."""
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X.toarray(), columns=[f"{'ab'[j % 2]}{j}" for j in range(X.shape[1])])
    m = FMRegressor(n_factors=2, max_iter=2, random_state=0, n_jobs=1,
                    groups={"a": 0, "b": 1}, l2_reg_v=[0.01, 0.1]).fit(df, Y)
    m.save(tmp_path / "m.npz")
    m2 = fmnumba.load(tmp_path / "m.npz")
    assert m2.groups == {"a": 0, "b": 1}
    assert np.array_equal(m2.predict(df), m.predict(df))
    m.partial_fit(df, Y)
    m2.partial_fit(df, Y)
    assert np.array_equal(m2._state.P, m._state.P)
