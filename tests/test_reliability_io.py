"""Files and formats under hostile or unlucky use: special files as paths,
pipes, compressed and BOM-prefixed text, huge group and field ids, crafted
model-file metadata, label types across save/load, how save treats the path,
CLI outputs that name an input, and clear errors for odd parameter values."""
import datetime
import gzip
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
import tracemalloc
import zipfile
from contextlib import contextmanager
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

import fmnumba
from fmnumba import FMClassifier, FMRegressor, _source, readers
from fmnumba._model_file import same_labels
from fmnumba._validation import per_feature_l2
from fmnumba.cli import main

try:
    from ._pipes import pipe_of, start_writer
except ImportError:
    from _pipes import pipe_of, start_writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = sp.random(50, 6, density=0.5, format="csr", random_state=0)
Y = np.random.default_rng(0).normal(size=50)
B = np.arange(50) % 3 == 0


@contextmanager
def deadline(seconds):
    """Fail (instead of hanging the suite) when the block runs past `seconds`."""
    def stop(*_):
        raise AssertionError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def svm_text(n=3000):
    return "".join(f"{i % 3} {i % 7 + 1}:1.5 {i % 5 + 9}:2\n" for i in range(n))


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def short_pipe_wait(monkeypatch):
    monkeypatch.setattr(_source, "PIPE_WAIT_S", 0.2)


# --- special files as paths ------------------------------------------------

@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_load_refuses_devices_at_once(device):
    with deadline(20), pytest.raises(fmnumba.ModelFileError, match="character device"):
        fmnumba.load(device)


def test_load_refuses_a_fifo_without_blocking(fifo):
    with deadline(20), pytest.raises(fmnumba.ModelFileError, match="FIFO"):
        fmnumba.load(fifo)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_data_readers_refuse_endless_binary_devices(device):
    with deadline(20), pytest.raises(ValueError, match="not a text data file"):
        readers.read_data(device)


def test_data_fifo_without_writer_is_refused(fifo, short_pipe_wait, capsys):
    with deadline(20), pytest.raises(ValueError, match="no process wrote"):
        readers.read_data(fifo)
    with deadline(20):
        code, _, err = cli(capsys, "fit", fifo, "--task", "r")
    assert code == 2 and "no process wrote" in err


def test_cli_predict_refuses_a_device_model(tmp_path, capsys):
    data = tmp_path / "d.svm"
    data.write_text(svm_text(10))
    with deadline(20):
        code, _, err = cli(capsys, "predict", "/dev/zero", data)
    assert code == 2 and "character device" in err


def test_stream_reads_are_bounded(monkeypatch):
    monkeypatch.setattr(_source, "max_stream_bytes", lambda: 1000)
    r, w = os.pipe()
    t = start_writer(w, iter(lambda: b"1 1:1\n" * 1000, None))  # endless, like `yes 1`
    try:
        with deadline(20), pytest.raises(ValueError, match="the most read into memory"):
            readers.read_data(f"/dev/fd/{r}")
    finally:
        os.close(r)
        t.join(10)


# --- pipes keep every row ---------------------------------------------------

@pytest.mark.parametrize("fmt", ["libsvm", "libffm", "ratings"])
def test_pipes_lose_no_rows(tmp_path, fmt):
    text = {"libsvm": svm_text(),
            "libffm": "".join(f"{i % 2} {i % 3}:{i % 11}:1 3:{20 + i % 4}:0.5\n"
                              for i in range(3000)),
            "ratings": "".join(f"{i % 50}\t{i % 70}\t{i % 5 + 1}\n" for i in range(3000))}[fmt]
    f = tmp_path / "plain.txt"
    f.write_text(text)
    ref = readers.read_data(f)
    path, r, t = pipe_of(text.encode())
    try:
        got = readers.read_data(path)
    finally:
        os.close(r)
        t.join(10)
    assert got.X.shape == ref.X.shape == (3000, ref.X.shape[1])
    assert (got.X != ref.X).nnz == 0 and np.array_equal(got.y, ref.y)


def test_cli_fit_on_process_substitution_sees_every_row(tmp_path):
    (tmp_path / "train.svm").write_text(svm_text())
    cmd = (f"{sys.executable} -m fmnumba fit <(cat train.svm) --task r --epochs 1 "
           "--quiet --model m.npz")
    proc = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr
    assert "on 3000 rows" in proc.stdout


# --- gzip and byte-order marks ---------------------------------------------

def test_gzip_file_is_read_like_the_plain_file(tmp_path):
    plain, gz = tmp_path / "a.svm", tmp_path / "a.svm.gz"
    plain.write_text(svm_text(200))
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = readers.read_data(plain), readers.read_data(gz)
    assert (a.X != b.X).nnz == 0 and np.array_equal(a.y, b.y)


def test_corrupt_gzip_gives_a_short_clear_error(tmp_path):
    gz = tmp_path / "a.svm.gz"
    gz.write_bytes(gzip.compress(svm_text(2000).encode())[:300])
    with pytest.raises(ValueError) as ei:
        readers.read_data(gz)
    msg = str(ei.value)
    assert "gzip" in msg and len(msg) < 300 and "\\x" not in msg


@pytest.mark.parametrize("text", [svm_text(20), "1 0:1:1 1:2:0.5\n0 1:3:1\n",
                                  "userId,movieId,rating\n1,10,4\n2,10,3\n"])
def test_utf8_bom_is_skipped(tmp_path, text):
    plain, bom = tmp_path / "a.txt", tmp_path / "b.txt"
    plain.write_text(text)
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    a, b = readers.read_data(plain), readers.read_data(bom)
    assert (a.X != b.X).nnz == 0 and np.array_equal(a.y, b.y)


def test_binary_garbage_error_is_short(tmp_path):
    f = tmp_path / "m.npz"
    FMRegressor(max_iter=1).fit(X, Y).save(f)
    with pytest.raises(ValueError, match="zip archive") as ei:
        readers.read_data(f)
    assert len(str(ei.value)) < 300


def _with_peak_memory(fn, *args):
    """fn(*args) and the peak bytes Python allocated while it ran (tracemalloc)."""
    tracemalloc.start()
    try:
        out = fn(*args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, peak


def _assert_refused_in_little_memory(path, match):
    """Loading `path` raises ModelFileError matching `match`, peaking under 50 MiB."""
    def load():
        with pytest.raises(fmnumba.ModelFileError, match=match):
            fmnumba.load(path)
    assert _with_peak_memory(load)[1] < 50 << 20


# --- large group and field ids ----------------------------------------------

def test_group_cost_does_not_scale_with_the_largest_id():
    groups = np.array([0, 3_000_000, 2_147_483_646, 5])
    out, peak = _with_peak_memory(per_feature_l2, "l2_reg_v", 0.01, groups, 4)
    assert out.tolist() == [0.01] and peak < 1 << 20
    with pytest.raises(ValueError, match=r"2 values but groups defines 3000001 groups"):
        per_feature_l2("l2_reg_v", [0.1, 0.2], np.array([0, 3_000_000]), 2)


def test_absurd_group_id_is_named():
    with pytest.raises(ValueError, match="groups: group id 3000000000 is too large"):
        FMRegressor(max_iter=1, groups=np.r_[0, 1, 2, 3, 4, 3_000_000_000]).fit(X, Y)


def test_cli_group_by_field_with_a_huge_field_id(tmp_path, capsys):
    f = tmp_path / "t.ffm"
    lines = [f"{i % 2} 0:{i % 5}:1 1:{5 + i % 3}:1\n" for i in range(200)]
    lines.append("1 2147483646:9:1\n")
    f.write_text("".join(lines))
    with deadline(120):
        code, out, err = cli(capsys, "fit", f, "--task", "c", "--group-by-field",
                             "--epochs", "1", "--quiet")
    assert code == 0, err
    code, _, err = cli(capsys, "fit", f, "--task", "c", "--l2-v", "0.1,0.2", "--quiet")
    assert code == 2 and "2147483647 fields" in err


def test_libffm_field_id_beyond_int32_is_refused(tmp_path):
    f = tmp_path / "t.ffm"
    f.write_text("1 0:1:1\n0 4294967297:2:1\n")
    with pytest.raises(ValueError, match=r"line 2: field index '4294967297' is too large"):
        readers.load_libffm(f)


# --- model-file metadata: sizes bounded, every failure a ModelFileError ----

def _arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _rewrite(src, dst, meta_change=None, arrays_change=None, compress=False):
    arrays = _arrays(src)
    meta = json.loads(arrays["meta"].tobytes())
    if meta_change:
        meta_change(meta)
    if arrays_change:
        arrays_change(arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(dst, "wb") as fh:
        (np.savez_compressed if compress else np.savez)(fh, **arrays)
    return dst


@pytest.fixture(scope="module")
def clf():
    return FMClassifier(n_factors=2, max_iter=2, random_state=0).fit(X, np.where(B, "y", "n"))


@pytest.mark.parametrize("dtype_text", ["<U1000000000", "<U999999999999", "(100000000,)f8",
                                        "V100000000", "|S1000000000", "O" * 5000])
def test_declared_widths_are_bounded_before_allocation(clf, tmp_path, dtype_text):
    src = tmp_path / "m.npz"
    clf.save(src)
    bad = _rewrite(src, tmp_path / "bad.npz",
                   meta_change=lambda m: m.update(classes_dtype=dtype_text))
    _assert_refused_in_little_memory(bad, "classes")


def test_array_header_claiming_more_than_the_file_is_refused(clf, tmp_path):
    src, bad = tmp_path / "m.npz", tmp_path / "bad.npz"
    clf.save(src)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**8, 3)})
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "P.npy":
                data = header.getvalue()
            zout.writestr(name, data)
    _assert_refused_in_little_memory(bad, "declares")


def test_compressed_members_are_refused(clf, tmp_path):
    src = tmp_path / "m.npz"
    clf.save(src)
    with pytest.raises(fmnumba.ModelFileError, match="compressed"):
        fmnumba.load(_rewrite(src, tmp_path / "z.npz", compress=True))


def test_any_failure_while_loading_is_a_model_file_error(clf, tmp_path):
    src = tmp_path / "m.npz"
    clf.save(src)
    for i, change in enumerate([
            lambda m: m.update(params={**m["params"], "groups": {"a": 1}}),
            lambda m: m.update(params={**m["params"], "l2_reg_v": [[1.0]]}),
            lambda m: m.update(classes=[["datetime", "not a date"], ["int", 1]],
                               classes_dtype="|O"),
            lambda m: m.update(history={"train_loss": "x"}),
            lambda m: m.update(rng={"pos": 1, "has_gauss": 0, "cached_gaussian": "x"})]):
        with pytest.raises(fmnumba.ModelFileError, match="not a valid fmnumba model file"):
            fmnumba.load(_rewrite(src, tmp_path / f"bad{i}.npz", meta_change=change))


# --- the loader accepts only what a fit can produce -------------------------

def _set(key, value):
    return lambda m: m.update({key: value})


@pytest.mark.parametrize("change,why", [
    (_set("t", 2**64), "t must be"),
    (_set("n_iter", 2**63), "n_iter must be"),
    (_set("n_iter", 5), "n_iter=5"),
    (_set("format_version", True), "format version"),
    (_set("format_version", -1), "format version"),
    (_set("format_version", 0), "format version"),
    (_set("classes", [float("nan"), 1.0]), "classes"),
    (_set("classes", ["y", "n"]), "sorted order"),
    (_set("classes_dtype", "<f8"), "classes"),
    (lambda m: m["history"].update(time_s=[1.0]), "times"),
    (lambda m: m["history"].update(time_s=[2.0, 1.0]), "decreases"),
    (lambda m: m["history"].update(val_loss=[1.0, 1.0, 1.0]), "validation losses"),
    (lambda m: m["history"].update(train_loss=[-1.0, 1.0]), "negative"),
    (lambda m: m["history"].update(extra=[]), "history"),
    (_set("surprise", 1), "unknown fields"),
    (lambda m: m["rng"].update(pos=10**4), "rng"),
    (lambda m: m["params"].update(dtype="float64"), "dtype"),
])
def test_loader_rejects_values_no_fit_produces(clf, tmp_path, change, why):
    src = tmp_path / "m.npz"
    clf.save(src)
    with pytest.raises(fmnumba.ModelFileError, match=why):
        fmnumba.load(_rewrite(src, tmp_path / "bad.npz", meta_change=change))


@pytest.mark.parametrize("name,change,why", [
    ("S", lambda a: a.__setitem__("S", -np.abs(a["S"]) - 1), "negative"),
    ("bstate", lambda a: a["bstate"].__setitem__(2, -1.0), "negative"),
    ("rng_keys", lambda a: a.__setitem__("rng_keys", np.zeros(624, np.uint32)), "rng"),
    ("rng_keys", lambda a: a.__setitem__("rng_keys", np.zeros(3, np.uint32)), "rng_keys"),
])
def test_loader_rejects_arrays_no_fit_produces(clf, tmp_path, name, change, why):
    src = tmp_path / "m.npz"
    clf.save(src)
    with pytest.raises(fmnumba.ModelFileError, match=why):
        fmnumba.load(_rewrite(src, tmp_path / "bad.npz", arrays_change=change))


# --- labels and training continue exactly across save/load -------------------

LABELS = {
    "object ints": np.array([0 if b else 1 for b in B], dtype=object),
    "numpy scalars in object": np.array([np.int64(3) if b else np.int64(5) for b in B],
                                        dtype=object),
    "datetime64": np.where(B, np.datetime64("2020-01-01"), np.datetime64("2021-06-01T12:00")),
    "object datetimes": np.array([datetime.datetime(2020, 1, 1, 5) if b
                                  else datetime.datetime(2021, 1, 1) for b in B], dtype=object),
    "object dates": np.array([datetime.date(2020, 1, 1) if b else datetime.date(2021, 1, 1)
                              for b in B], dtype=object),
    "timedelta64": np.where(B, np.timedelta64(1, "s"), np.timedelta64(3, "s")),
    "uint64 beyond float": np.where(B, np.uint64(2**64 - 1), np.uint64(2**64 - 2)),
    "bool": B.copy(),
    "float": np.where(B, -1.0, 1.0),
    "str": np.where(B, "no", "yes"),
    "object mixed int and float": np.array([1 if b else 2.0 for b in B], dtype=object),
}


@pytest.mark.parametrize("kind", list(LABELS))
def test_labels_keep_type_and_value(tmp_path, kind):
    y = LABELS[kind]
    m = FMClassifier(n_factors=2, max_iter=2, random_state=0).fit(X, y)
    m.save(tmp_path / "m.npz")
    m2 = fmnumba.load(tmp_path / "m.npz")
    assert same_labels(m2.classes_, m.classes_)
    p, p2 = m.predict(X), m2.predict(X)
    assert p.dtype == p2.dtype and all(type(a) is type(b) and a == b for a, b in zip(p, p2))


def test_unstorable_labels_are_refused_at_save(tmp_path):
    class Label(int):
        pass
    y = np.array([Label(0) if b else Label(1) for b in B], dtype=object)
    m = FMClassifier(n_factors=2, max_iter=1).fit(X, y)
    with pytest.raises(TypeError, match="cannot be stored"):
        m.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("cls,y,solver", [(FMRegressor, Y, "adam"), (FMRegressor, Y, "sgd"),
                                          (FMClassifier, B, "adamw")])
def test_loaded_model_continues_training_bit_for_bit(tmp_path, cls, y, solver):
    a = cls(n_factors=3, max_iter=2, random_state=7, solver=solver, n_jobs=1).fit(X, y)
    a.save(tmp_path / "m.npz")
    b = fmnumba.load(tmp_path / "m.npz")
    for m in (a, b):
        m.partial_fit(X, y)
        m.set_params(warm_start=True, max_iter=2)
        m.fit(X, y)
    for attr in ("P", "bias_state", "M", "S", "t"):
        va, vb = getattr(a._state, attr), getattr(b._state, attr)
        assert np.array_equal(va, vb) if va is not None else vb is None, attr
    assert a.history_["train_loss"] == b.history_["train_loss"]
    assert a.n_iter_ == b.n_iter_ == 5


# --- save and the path it is given -------------------------------------------

@pytest.fixture(scope="module")
def reg():
    return FMRegressor(n_factors=2, max_iter=1, random_state=0).fit(X, Y)


def test_save_follows_a_symlink(reg, tmp_path):
    target, link = tmp_path / "real.npz", tmp_path / "link.npz"
    target.write_bytes(b"old")
    link.symlink_to(target)
    reg.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert np.array_equal(fmnumba.load(target)._state.P, reg._state.P)


def test_save_to_a_dangling_symlink_creates_its_target(reg, tmp_path):
    target, link = tmp_path / "new.npz", tmp_path / "link.npz"
    link.symlink_to(target)
    reg.save(link)
    assert link.is_symlink() and target.is_file()


@pytest.mark.parametrize("where", ["/dev/null", "fifo", "dir"])
def test_save_refuses_non_regular_targets(reg, tmp_path, where):
    path = {"/dev/null": "/dev/null", "fifo": tmp_path / "f", "dir": tmp_path}[where]
    if where == "fifo":
        os.mkfifo(path)
    before = os.stat(path)
    with pytest.raises(ValueError, match="not a regular file"):
        reg.save(path)
    after = os.stat(path)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_model_file_gets_the_umask_permissions(reg, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        reg.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == mode


def test_replaced_model_file_keeps_its_permissions(reg, tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"x")
    os.chmod(path, 0o640)
    reg.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_save_errors_name_the_target(reg, tmp_path):
    target = tmp_path / "missing" / "m.npz"
    with pytest.raises(OSError) as ei:
        reg.save(target)
    assert ei.value.filename == str(target) and ".tmp" not in str(ei.value)


def test_save_refuses_non_finite_parameters(tmp_path):
    m = FMRegressor(n_factors=2, max_iter=1).fit(X, Y)
    m._state.P[0, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        m.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


# --- the CLI never overwrites its inputs -------------------------------------

@pytest.fixture
def svm_files(tmp_path):
    train, test = tmp_path / "train.svm", tmp_path / "test.svm"
    train.write_text(svm_text(60))
    test.write_text(svm_text(30))
    return train, test


@pytest.mark.parametrize("how", ["model=train", "out=test", "out=train", "model=test-link",
                                 "out=model", "model=train-hardlink"])
def test_cli_fit_refuses_outputs_that_are_inputs(svm_files, tmp_path, capsys, how):
    train, test = svm_files
    link = tmp_path / "alias"
    if how == "model=test-link":
        link.symlink_to(test)
    if how == "model=train-hardlink":
        os.link(train, link)
    args = {"model=train": ["--model", train], "out=test": ["--out", test],
            "out=train": ["--out", train], "model=test-link": ["--model", link],
            "out=model": ["--model", tmp_path / "m.npz", "--out", tmp_path / "m.npz"],
            "model=train-hardlink": ["--model", link]}[how]
    before = train.read_bytes(), test.read_bytes()
    code, out, err = cli(capsys, "fit", train, "--task", "r", "--test", test, "--epochs", "1",
                         "--quiet", *args)
    assert code == 2 and "is the same file as" in err, err
    assert "fitted" not in out
    assert (train.read_bytes(), test.read_bytes()) == before


def test_cli_predict_refuses_out_equal_to_data_or_model(svm_files, tmp_path, capsys):
    train, test = svm_files
    model = tmp_path / "m.npz"
    assert cli(capsys, "fit", train, "--task", "r", "--epochs", "1", "--quiet",
               "--model", model)[0] == 0
    for out in (test, model):
        before = out.read_bytes()
        code, _, err = cli(capsys, "predict", model, test, "--out", out)
        assert code == 2 and "is the same file as" in err
        assert out.read_bytes() == before


def test_cli_checks_the_model_path_before_fitting(svm_files, tmp_path, capsys):
    train, _ = svm_files
    for model in (tmp_path / "no" / "m.npz", "/dev/null", tmp_path):
        code, out, err = cli(capsys, "fit", train, "--task", "r", "--quiet", "--model", model)
        assert code == 2 and "--model" in err and "fitted" not in out, err


# --- clear errors for odd values ----------------------------------------------

@pytest.mark.parametrize("param", ["max_iter", "batch_size", "n_factors", "n_iter_no_change"])
def test_integers_beyond_int64_are_named(param):
    with pytest.raises(ValueError, match=f"{param} must be an integer within int64"):
        FMRegressor(**{param: 10**30}).fit(X, Y)


def test_cli_epochs_beyond_int64(svm_files, capsys):
    code, _, err = cli(capsys, "fit", svm_files[0], "--task", "r", "--epochs", str(10**30))
    assert code == 2 and "--epochs" in err and "2**63" in err


def test_fraction_learning_rate_trains_as_its_float():
    a = FMRegressor(max_iter=2, random_state=0, learning_rate=Fraction(1, 100)).fit(X, Y)
    b = FMRegressor(max_iter=2, random_state=0, learning_rate=0.01).fit(X, Y)
    assert np.array_equal(a._state.P, b._state.P)
    with pytest.raises(ValueError, match="learning_rate must be a finite number"):
        FMRegressor(learning_rate=Fraction(10**400, 1)).fit(X, Y)


@pytest.mark.parametrize("n_jobs", [0, -5, 1.5, "2", True])
def test_n_jobs_set_after_fit_is_checked_at_the_next_call(reg, n_jobs):
    m = FMRegressor(n_factors=2, max_iter=1, random_state=0).fit(X, Y)
    m.set_params(n_jobs=n_jobs)
    with pytest.raises(ValueError, match="n_jobs must be"):
        m.predict(X)
    with pytest.raises(ValueError, match="n_jobs must be"):
        m.partial_fit(X, Y)


def test_all_denormal_weights_train_like_equal_weights():
    a = FMRegressor(max_iter=2, random_state=0).fit(X, Y, sample_weight=np.full(50, 5e-324))
    b = FMRegressor(max_iter=2, random_state=0).fit(X, Y)
    assert np.array_equal(a._state.P, b._state.P)


def test_zip_member_count_is_bounded(tmp_path):
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(40):
            zf.writestr(f"a{i}.npy", b"")
    with pytest.raises(fmnumba.ModelFileError, match="members"):
        fmnumba.load(path)


def test_symlink_loop_model_path_is_a_model_file_error(tmp_path):
    loop = tmp_path / "loop.npz"
    loop.symlink_to(loop)
    with pytest.raises(fmnumba.ModelFileError, match="symbolic links"):
        fmnumba.load(loop)


def test_socket_paths_are_refused_clearly(tmp_path):
    import socket
    path = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    with pytest.raises(fmnumba.ModelFileError, match="socket"):
        fmnumba.load(path)
    with pytest.raises(ValueError, match="socket"):
        readers.read_data(path)


def test_utf16_text_gets_a_clear_error(tmp_path):
    f = tmp_path / "a.svm"
    f.write_bytes("1 1:2\n".encode("utf-16"))
    with pytest.raises(ValueError, match="UTF-16"):
        readers.read_data(f)


def test_slow_compressed_pipe_is_recognised(tmp_path):
    text = svm_text(100)
    r, w = os.pipe()

    def late_bytes():  # the first bytes arrive late, one at a time
        time.sleep(0.3)
        for byte in gzip.compress(text.encode()):
            yield bytes([byte])
    t = start_writer(w, late_bytes())
    try:
        got = readers.read_data(f"/dev/fd/{r}")
    finally:
        os.close(r)
        t.join(10)
    plain = tmp_path / "a.svm"
    plain.write_text(text)
    ref = readers.read_data(plain)
    assert (got.X != ref.X).nnz == 0 and np.array_equal(got.y, ref.y)
