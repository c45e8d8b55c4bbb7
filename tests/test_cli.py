"""The `fmnumba` command line: fit / predict / evaluate / recommend / demo,
libFM command lines, exit codes, encoder sidecars, side features, per-group
L2 options, JSON output, progress and plots.

Most tests call fmnumba.cli.main in-process (fast); a few run the real
`python -m fmnumba` / `fmnumba` entry points in a subprocess.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import dump_svmlight_file

from fmnumba import FMRegressor, load
from fmnumba.cli import main
from fmnumba.datasets import make_clicks, make_ratings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err):
    assert code == 2
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1 and errors[0] == lines[-1], err  # notes may come before


def fit_one_epoch(capsys, data, task, model, *extra):
    """`fmnumba fit` for one epoch on `data` into `model`, which must succeed."""
    code, _, err = run(capsys, "fit", data, "--task", task, *extra, "--epochs", 1,
                       "-m", model, "-q")
    assert code == 0, err
    return model


def refused(capsys, *argv):
    """The stderr of a command that must end in one user-error line."""
    code, _, err = run(capsys, *argv)
    assert_user_error(code, err)
    return err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small libsvm (regression, one-based), libsvm (classification), libffm
    and ratings files."""
    d = tmp_path_factory.mktemp("cli")
    rat = make_ratings(3000, n_users=60, n_items=40, n_context=(), random_state=1)
    Xtr, Xte, ytr, yte = rat.split(0.25, random_state=0)
    dump_svmlight_file(Xtr, ytr, str(d / "reg.train"), zero_based=False)
    dump_svmlight_file(Xte, yte, str(d / "reg.test"), zero_based=False)
    clk = make_clicks(3000, field_sizes=(50, 20, 5), random_state=2)
    Ctr, Cte, ctr, cte = clk.split(0.25, random_state=0)
    dump_svmlight_file(Ctr, 2 * ctr - 1, str(d / "clf.train"), zero_based=False)
    dump_svmlight_file(Cte, 2 * cte - 1, str(d / "clf.test"), zero_based=False)
    # libffm: field of column j from the field blocks
    offsets = np.cumsum((0,) + clk.field_sizes)
    field_of = np.searchsorted(offsets, np.arange(offsets[-1]), side="right") - 1
    for name, X, y in (("train", Ctr, ctr), ("test", Cte, cte)):
        with open(d / f"clf.{name}.libffm", "w") as fh:
            for r in range(X.shape[0]):
                cols = X.indices[X.indptr[r]:X.indptr[r + 1]]
                fh.write(f"{int(y[r])} " + " ".join(f"{field_of[c]}:{c}:1" for c in cols) + "\n")
    # ratings: user id = column + 1, item id = "m" + item column (string ids)
    cols = rat.X.indices.reshape(-1, 2)
    lines = [f"{u + 1}\tm{i - 60}\t{r:.3f}\t0\n" for (u, i), r in zip(cols, rat.y)]
    (d / "ratings.train").write_text("".join(lines[:2400]))
    (d / "ratings.test").write_text("".join(lines[2400:]))
    return d


# --- help and entry points --------------------------------------------------

@pytest.mark.parametrize("cmd", ["fit", "predict", "evaluate", "recommend", "demo"])
def test_help_for_each_command(capsys, cmd):
    assert main([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"fmnumba {cmd}" in out


def test_fit_help_documents_libfm_mapping(capsys):
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    for libfm in ("-task r", "-train", "-test", "-dim", "-iter", "-out"):
        assert libfm in out
    for ours in ("--task", "--test", "--factors", "--epochs", "--out"):
        assert ours in out


def test_no_command_is_a_usage_error(capsys):
    code, _, err = run(capsys)
    assert code == 2 and "choose a command" in err


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "fmnumba", "--help"], capture_output=True,
                       text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0
    assert "fit" in r.stdout and "demo" in r.stdout


def test_console_script():
    exe = shutil.which("fmnumba")
    if exe is None:
        pytest.skip("the fmnumba console script is not on PATH (pip install -e .)")
    r = subprocess.run([exe, "predict", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--proba" in r.stdout


# --- fit / predict / evaluate -------------------------------------------------

def test_regression_round_trip(capsys, files, tmp_path):
    model, pred = tmp_path / "m.npz", tmp_path / "pred.txt"
    code, out, err = run(capsys, "fit", files / "reg.train", "--task", "r", "--test",
                         files / "reg.test", "--epochs", 5, "--model", model, "--out", pred,
                         "--quiet")
    assert code == 0, err
    assert "rmse" in out and "mae" in out
    assert err == ""  # --quiet: no progress bar
    assert model.exists() and Path(str(model) + ".encoder.json").exists()
    lines = pred.read_text().splitlines()
    n_test = sum(1 for _ in open(files / "reg.test"))
    assert len(lines) == n_test
    # `predict` writes the same values as fit --out
    code, out, err = run(capsys, "predict", model, files / "reg.test")
    assert code == 0, err
    assert out.splitlines() == lines
    # evaluate --json agrees with the model's own predictions
    code, out, err = run(capsys, "evaluate", model, files / "reg.test", "--json")
    assert code == 0, err
    m = json.loads(out)
    assert set(m) == {"rmse", "mae", "n_rows"} and m["n_rows"] == n_test
    y = np.array([float(ln.split()[0]) for ln in open(files / "reg.test")])
    p = np.array([float(v) for v in lines])
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((p - y) ** 2)), rel=1e-5)
    code, out, _ = run(capsys, "evaluate", model, files / "reg.test")
    assert code == 0 and out.splitlines()[1].split()[0] == "metric"


def test_fit_options_reach_the_estimator(capsys, files, tmp_path):
    model = tmp_path / "m.npz"
    code, _, err = run(capsys, "fit", files / "reg.train", "--task", "regression",
                       "--factors", 3, "--epochs", 2, "--solver", "sgd", "--learning-rate",
                       0.005, "--batch-size", 64, "--l2-w", 0.001, "--l2-v", 0.002,
                       "--init-std", 0.01, "--seed", 7, "--n-jobs", 1, "-m", model, "-q")
    assert code == 0, err
    est = load(model)
    p = est.get_params()
    assert (p["n_factors"], p["max_iter"], p["solver"], p["learning_rate"], p["batch_size"],
            p["l2_reg_w"], p["l2_reg_v"], p["init_std"], p["random_state"], p["n_jobs"]) == \
        (3, 2, "sgd", 0.005, 64, 0.001, 0.002, 0.01, 7, 1)
    assert est.n_iter_ == 2


def test_classification_labels_and_proba(capsys, files, tmp_path):
    model = tmp_path / "c.npz"
    code, out, err = run(capsys, "fit", files / "clf.train", "--task", "c", "--test",
                         files / "clf.test", "--epochs", 3, "-m", model, "-q", "--json")
    assert code == 0, err
    doc = json.loads(out)  # stdout is exactly one JSON document
    assert "fitted FMClassifier" in err and f"model written to {model}" in err
    assert doc["estimator"] == "FMClassifier" and doc["epochs"] == 3
    assert doc["model"] == str(model) and doc["n_rows"] > 0
    m = doc["test"]
    assert set(m) == {"auc", "logloss", "accuracy", "n_rows"}
    assert 0.5 < m["auc"] <= 1
    code, out, _ = run(capsys, "predict", model, files / "clf.test")
    assert code == 0 and set(out.split()) <= {"-1", "1"}
    code, out, _ = run(capsys, "predict", model, files / "clf.test", "--proba", "-o",
                       tmp_path / "p.txt")
    assert code == 0 and out == ""
    p = np.loadtxt(tmp_path / "p.txt")
    assert p.ndim == 1 and np.all((p > 0) & (p < 1))


def test_hinge_classifier_has_no_proba(capsys, files, tmp_path):
    model = fit_one_epoch(capsys, files / "clf.train", "c", tmp_path / "h.npz", "--loss", "hinge")
    code, out, _ = run(capsys, "evaluate", model, files / "clf.test", "--json")
    assert code == 0 and "logloss" not in json.loads(out)
    assert "logistic" in refused(capsys, "predict", model, files / "clf.test", "--proba")


def test_narrower_libsvm_file_at_predict(capsys, files, tmp_path):
    model = fit_one_epoch(capsys, files / "reg.train", "r", tmp_path / "m.npz")
    n_features = load(model).n_features_in_
    # keep only the first token after the label: far fewer columns than the model
    narrow = tmp_path / "narrow.txt"
    narrow.write_text("".join(" ".join(ln.split()[:2]) + "\n"
                              for ln in open(files / "reg.test") if ln.split()[1].startswith("1")))
    assert max(int(ln.split()[1].split(":")[0]) for ln in open(narrow)) < n_features
    code, out, err = run(capsys, "predict", model, narrow)
    assert code == 0, err
    assert len(out.splitlines()) == len(narrow.read_text().splitlines())


def test_ratings_encoder_is_kept(capsys, files, tmp_path):
    """predict/evaluate map user and item ids through the training encoder,
    even for a file holding a few ids in another order."""
    from fmnumba.readers import RatingEncoder, load_ratings
    model = tmp_path / "r.npz"
    code, out, err = run(capsys, "fit", files / "ratings.train", "--task", "r", "--epochs", 3,
                         "--test", files / "ratings.test", "-m", model, "-q")
    assert code == 0, err
    side = json.loads(Path(str(model) + ".encoder.json").read_text())
    assert side["format"] == "ratings" and "m0" in side["items"]
    # a file with only 3 rows, reversed: a fresh encoder would give other columns
    rows = (files / "ratings.train").read_text().splitlines()[:3][::-1]
    small = tmp_path / "small.tsv"
    small.write_text("\n".join(rows) + "\n")
    code, out, err = run(capsys, "predict", model, small)
    assert code == 0, err
    got = np.array(out.split(), dtype=float)
    users, items, _ = load_ratings(files / "ratings.train")
    enc = RatingEncoder().fit(users, items)  # the same id order as the CLI's
    est = load(model)
    X = enc.transform(users[:3][::-1], items[:3][::-1])
    np.testing.assert_allclose(got, est.predict(X), rtol=1e-6)
    # unknown ids: still a prediction per row, and a note on stderr
    small.write_text("99999\tm0\t3\t0\nnobody\tnothing\t4\t0\n")
    code, out, err = run(capsys, "predict", model, small)
    assert code == 0 and len(out.split()) == 2 and "not seen in training" in err


def test_ratings_model_needs_its_sidecar(capsys, files, tmp_path):
    model = fit_one_epoch(capsys, files / "ratings.train", "r", tmp_path / "r.npz")
    os.remove(str(model) + ".encoder.json")
    assert "encoder" in refused(capsys, "predict", model, files / "ratings.test")


# --- per-group L2 from the command line ----------------------------------------

def test_group_by_field_libffm(capsys, files, tmp_path):
    """--group-by-field + per-group lists: a huge L2 on field 1 crushes that
    field's weights and factors (to within Adam's step size) while fields
    0 and 2 keep theirs."""
    model = tmp_path / "g.npz"
    code, _, err = run(capsys, "fit", files / "clf.train.libffm", "--task", "c", "--epochs", 3,
                       "--batch-size", 32, "--n-jobs", 1, "--group-by-field", "--l2-v", "0,1e6,0",
                       "--l2-w", "0,1e6,0", "-m", model, "-q")
    assert code == 0, err
    est = load(model)
    np.testing.assert_array_equal(np.asarray(est.get_params()["groups"])[:75],
                                  np.repeat([0, 1, 2], [50, 20, 5]))
    V, w = est.factors_, est.coef_
    rms = lambda a: float(np.sqrt(np.mean(np.square(a))))  # noqa: E731
    # field 1 = columns 50..69 (field sizes 50, 20, 5)
    assert rms(V[50:70]) < 0.05 * rms(V[:50])
    assert rms(V[50:70]) < 0.05 * rms(V[70:])
    assert rms(w[50:70]) < 0.05 * rms(w[:50])
    code, out, err = run(capsys, "evaluate", model, files / "clf.test.libffm", "--json")
    assert code == 0, err


def test_group_lists_for_ratings_and_errors(capsys, files, tmp_path):
    code, _, err = run(capsys, "fit", files / "ratings.train", "--task", "r", "--epochs", 1,
                       "--l2-v", "0.001,0.01", "-q")
    assert code == 0, err
    code, _, err = run(capsys, "fit", files / "ratings.train", "--task", "r", "--l2-v",
                       "0.001,0.01,0.1", "-q")
    assert_user_error(code, err)
    assert "2 groups" in err
    code, _, err = run(capsys, "fit", files / "reg.train", "--task", "r", "--group-by-field")
    assert_user_error(code, err)
    assert "libffm" in err


# --- errors: exit 2, one line, no traceback -------------------------------------

@pytest.mark.parametrize("argv_fn", [
    lambda f, t: ["fit", t / "missing.txt", "--task", "r"],
    lambda f, t: ["fit", f / "reg.train"],                          # --task missing
    lambda f, t: ["fit", f / "reg.train", "--task", "ranking"],
    lambda f, t: ["fit", f / "reg.train", "--task", "r", "--factors", "0"],
    lambda f, t: ["fit", f / "reg.train", "--task", "r", "--l2-v", "x"],
    lambda f, t: ["fit", f / "reg.train", "--task", "r", "--loss", "logistic"],
    lambda f, t: ["fit", f / "reg.train", "--task", "c"],          # continuous labels
    lambda f, t: ["fit", f / "reg.train", "--task", "r", "--out", t / "p.txt"],
    lambda f, t: ["fit", t, "--task", "r"],                         # a directory
    lambda f, t: ["predict", t / "nomodel.npz", f / "reg.test"],
    lambda f, t: ["predict", f / "reg.test", f / "reg.test"],      # not a model
    lambda f, t: ["evaluate", f / "reg.test", f / "reg.test"],
    lambda f, t: ["demo", "--n-jobs", "0"],
])
def test_bad_input_exits_2_with_one_line(capsys, files, tmp_path, argv_fn):
    code, _, err = run(capsys, *argv_fn(files, tmp_path))
    assert_user_error(code, err)


def test_malformed_data_line(capsys, files, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 1:0.5 2:1\n0 3:oops\n")
    code, _, err = run(capsys, "fit", bad, "--task", "c", "-q")
    assert_user_error(code, err)
    assert "line 2" in err


def test_wrong_format_and_labels_for_model(capsys, files, tmp_path):
    model = fit_one_epoch(capsys, files / "clf.train", "c", tmp_path / "c.npz")
    err = refused(capsys, "predict", model, files / "clf.test.libffm")
    assert "libffm" in err and "libsvm" in err
    assert "classes" in refused(capsys, "evaluate", model, files / "reg.test")  # labels not ±1


def test_errors_in_a_subprocess_have_no_traceback(files, tmp_path):
    r = subprocess.run([sys.executable, "-m", "fmnumba", "evaluate", str(tmp_path / "x.npz"),
                        str(files / "reg.test")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1


# --- progress and plots ------------------------------------------------------

def test_progress_flags(capsys, files):
    code, _, err = run(capsys, "fit", files / "reg.train", "--task", "r", "--epochs", 2,
                       "--verbose")
    assert code == 0 and "fmnumba fit" in err and "epoch" in err
    code, _, err = run(capsys, "fit", files / "reg.train", "--task", "r", "--epochs", 2)
    assert code == 0 and err == ""  # stderr is not a terminal under pytest: silent


def test_plot_option_writes_png(capsys, files, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve.png"
    code, out, err = run(capsys, "fit", files / "reg.train", "--task", "r", "--epochs", 3,
                         "--test", files / "reg.test", "--plot", png, "-q")
    assert code == 0, err
    data = png.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)


# --- demo --------------------------------------------------------------------

def test_demo_quick(capsys):
    code, out, err = run(capsys, "demo", "--quick", "--n-jobs", "1", "--seed", "3")
    assert code == 0, err
    for phrase in ("test RMSE", "global mean RMSE", "noise floor", "test AUC", "logloss",
                   "base rate AUC 0.5000", "compile", "fit"):
        assert phrase in out


def test_demo_figures_beat_the_baselines():
    import io
    from fmnumba.cli import run_demo
    res = run_demo(n_jobs=1, seed=0, quick=True, out=io.StringIO())
    r, c = res["ratings"], res["clicks"]
    assert r["noise_floor_rmse"] < r["rmse"] < r["baseline_rmse"]
    assert 0.5 < c["auc"] <= c["noise_floor_auc"] + 0.02
    assert c["noise_floor_logloss"] - 0.02 <= c["logloss"] < c["baseline_logloss"]


def test_fit_regressor_equals_api(capsys, files, tmp_path):
    """The CLI fit is the API fit: same data, same seed -> same parameters."""
    from fmnumba.readers import load_libsvm
    model = tmp_path / "m.npz"
    assert run(capsys, "fit", files / "reg.train", "--task", "r", "--epochs", 2, "--seed", 5,
               "--n-jobs", 1, "-m", model, "-q")[0] == 0
    X, y = load_libsvm(files / "reg.train", zero_based=False)
    api = FMRegressor(max_iter=2, random_state=5, n_jobs=1).fit(X, y)
    cli = load(model)
    np.testing.assert_array_equal(api.factors_, cli.factors_)
    np.testing.assert_array_equal(api.coef_, cli.coef_)


def test_fit_out_to_stdout_keeps_stdout_clean(capsys, files):
    code, out, err = run(capsys, "fit", files / "clf.train", "--task", "c", "--epochs", 1,
                         "--test", files / "clf.test", "--out", "-", "--proba", "-q")
    assert code == 0, err
    values = np.array(out.split(), dtype=float)
    assert values.size == sum(1 for _ in open(files / "clf.test"))
    assert "auc" in err


def test_model_too_large_for_memory_exits_2(capsys, tmp_path):
    """A feature index in the billions with many factors: the model size check
    refuses it before allocating (MemoryError) and the CLI exits 2, no traceback."""
    train = tmp_path / "huge.libsvm"
    train.write_text("1 3000000000:1\n0 1:1\n")
    code = main(["fit", str(train), "--task", "c", "--factors", "512", "--epochs", "1",
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "GiB" in err and "n_factors" in err and "Traceback" not in err


# --- start-up -------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["fit", "--help"],
                                  ["recommend", "--help"]])
def test_version_and_help_import_no_numerics(argv):
    """--version and --help import neither NumPy nor Numba (nor the kernels)."""
    code = ("import sys\nfrom fmnumba.cli import main\n"
            f"rc = main({argv!r})\n"
            "heavy = [m for m in ('numpy', 'numba', 'scipy', 'sklearn', 'fmnumba.estimators')"
            " if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)\nsys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stderr


def test_help_defaults_read_from_source_match_the_estimators():
    from fmnumba import FMClassifier
    from fmnumba.cli.parser import estimator_defaults_from_source
    reg, clf = estimator_defaults_from_source()
    for src, est in ((reg, FMRegressor()), (clf, FMClassifier())):
        params = est.get_params()
        assert set(src) == set(params)
        for k, v in src.items():
            if not isinstance(v, str) or isinstance(params[k], str):
                assert v == params[k], k


# --- libFM command lines --------------------------------------------------------

def _lines(path):
    return [ln for ln in Path(path).read_text().splitlines() if ln.strip()]


def test_libfm_regression_command_line_verbatim(capsys, files, tmp_path):
    """A libFM manual-style command line runs as written and writes one
    prediction per test line; it is the same fit as fmnumba's options."""
    pred = tmp_path / "pred.txt"
    code, out, err = run(capsys, "fit", "-task", "r", "-train", files / "reg.train",
                         "-test", files / "reg.test", "-dim", "1,1,8", "-iter", 4,
                         "-method", "sgd", "-learn_rate", 0.01, "-regular", "0,0.01,0.02",
                         "-init_stdev", 0.1, "-out", pred, "-seed", 3, "-verbosity", 0,
                         "--n-jobs", 1)
    assert code == 0, err
    got = np.array(_lines(pred), dtype=float)
    assert got.size == len(_lines(files / "reg.test"))
    ref = tmp_path / "ref.txt"
    code, _, err = run(capsys, "fit", files / "reg.train", "--task", "regression", "--test",
                       files / "reg.test", "--factors", 8, "--epochs", 4, "--solver", "sgd",
                       "--learning-rate", 0.01, "--l2-w", 0.01, "--l2-v", 0.02,
                       "--init-std", 0.1, "--out", ref, "--seed", 3, "-q", "--n-jobs", 1)
    assert code == 0, err
    np.testing.assert_array_equal(got, np.array(_lines(ref), dtype=float))


def test_libfm_classification_writes_probabilities(capsys, files, tmp_path):
    """-task c -out writes P(y = 1) per test line, as libFM does; the line
    may omit 'fit' (a bare libFM command line)."""
    pred = tmp_path / "p.txt"
    model = tmp_path / "m.npz"
    code, out, err = run(capsys, "-task", "c", "-train", files / "clf.train", "-test",
                         files / "clf.test", "-dim", "1,1,4", "-iter", 3,
                         "-out", pred, "-save_model", model, "-verbosity", 0)
    assert code == 0, err
    p = np.array(_lines(pred), dtype=float)
    assert p.size == len(_lines(files / "clf.test"))
    assert np.all((p > 0) & (p < 1))
    assert "default -method mcmc" in err or "mcmc" in load(model).solver
    est = load(model)
    from fmnumba.readers import load_libsvm
    X, _ = load_libsvm(files / "clf.test", zero_based=False, n_features=est.n_features_in_)
    np.testing.assert_allclose(p, est.predict_proba(X)[:, 1], rtol=1e-6)


@pytest.mark.parametrize("extra, needle", [
    (["-relation", "rel.x"], "-relation has no counterpart"),
    (["-load_model", "m"], "-load_model has no counterpart"),
    (["-rlog", "log.txt"], "-rlog has no counterpart"),
    (["-cache_size", "100"], "-cache_size has no counterpart"),
    (["-method", "sgda"], "-method sgda (SGD with adaptive regularisation) has no counterpart"),
    (["-dim", "0,1,8"], "always fits the bias and the linear terms"),
    (["-dim", "1,1"], "expected 'k0,k1,k'"),
    (["-regular", "0,1"], "expected 1 or 3 values"),
    (["-frobnicate", "1"], "unknown libFM flag -frobnicate"),
    (["-iter"], "-iter needs a value"),
    (["-task", "x"], "-task 'x'"),
])
def test_libfm_flags_without_counterpart_exit_2(capsys, files, extra, needle):
    base = ["fit", "-train", str(files / "reg.train")]
    if "-task" not in extra:
        base += ["-task", "r"]
    code, _, err = run(capsys, *base, *extra)
    assert_user_error(code, err)
    assert needle in err


def test_libfm_bayesian_methods_map_or_say_not_available(capsys, files, tmp_path):
    from fmnumba.cli import _fit_choices, build_parser
    solvers = _fit_choices(build_parser(), "solver")
    for method in ("mcmc", "als"):
        code, _, err = run(capsys, "fit", "-task", "r", "-train", files / "reg.train",
                           "-iter", 2, "-method", method, "-save_model", tmp_path / "m.npz",
                           "-verbosity", 0)
        if method in solvers:
            assert code == 0, err
            assert load(tmp_path / "m.npz").solver == method
        else:
            assert_user_error(code, err)
            assert f"-method {method}: the {method.upper()} solver is not available" in err


def test_fmnumba_short_options_are_not_libfm():
    from fmnumba.cli.libfm import is_libfm
    assert not is_libfm(["fit", "a9a", "-t", "c", "-k", "8", "-o", "p.txt"])
    assert not is_libfm(["predict", "m.npz", "-train"])
    assert is_libfm(["fit", "-task", "c", "-train", "a9a"])
    assert is_libfm(["-train", "a9a", "-task", "c"])


def test_libfm_meta_and_validation(capsys, files, tmp_path):
    """-meta gives per-feature groups (per-group L2 lists check against
    them); -validation's loss is recorded per epoch."""
    n_feat = max(int(t.split(":")[0]) for ln in _lines(files / "reg.train")
                 for t in ln.split()[1:])
    meta = tmp_path / "groups.txt"
    meta.write_text("".join(f"{0 if j < 60 else 1}\n" for j in range(n_feat)))
    model = tmp_path / "m.npz"
    code, _, err = run(capsys, "fit", "-task", "r", "-train", files / "reg.train", "-meta",
                       meta, "-validation", files / "reg.test", "-iter", 2,
                       "-save_model", model, "--l2-v", "0.01,0.05", "-verbosity", 0)
    assert code == 0, err
    est = load(model)
    assert np.asarray(est.groups).tolist() == [0 if j < 60 else 1 for j in range(n_feat)]
    assert len(est.history_["val_loss"]) == 2
    code, _, err = run(capsys, "fit", "-task", "r", "-train", files / "reg.train", "-meta",
                       meta, "--l2-v", "0.01,0.05,0.1", "-verbosity", 0)
    assert_user_error(code, err)
    assert "--l2-v has 3 values" in err and "2 groups in --meta" in err
    meta.write_text("0\n1\n")
    code, _, err = run(capsys, "fit", "-task", "r", "-train", files / "reg.train", "-meta",
                       meta, "-verbosity", 0)
    assert_user_error(code, err)
    assert f"2 group ids for {n_feat} features" in err


# --- JSON, id order, side features -------------------------------------------------

def test_fit_json_is_one_document_on_stdout(capsys, files, tmp_path):
    code, out, err = run(capsys, "fit", files / "reg.train", "--task", "r", "--test",
                         files / "reg.test", "--epochs", 1, "--json", "-m", tmp_path / "m.npz",
                         "--out", tmp_path / "p.txt", "-q")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["epochs"] == 1 and set(doc["test"]) == {"rmse", "mae", "n_rows"}
    assert doc["predictions"] == str(tmp_path / "p.txt")
    assert "1 epoch in" in err and "model written" in err and "predictions written" in err
    code, _, err = run(capsys, "fit", files / "reg.train", "--task", "r", "--test",
                       files / "reg.test", "--json", "--out", "-")
    assert_user_error(code, err)
    assert "--json and --out - both write to stdout" in err


def test_cli_and_python_give_the_same_ratings_model(capsys, files, tmp_path):
    """Numeric user ids (1..60) are ordered numerically by the CLI as by
    load_movielens, so the same file, seed and settings give the same model."""
    from fmnumba.readers import load_movielens
    model = tmp_path / "m.npz"
    assert run(capsys, "fit", files / "ratings.train", "--task", "r", "--epochs", 2,
               "--seed", 4, "--n-jobs", 1, "-m", model, "-q")[0] == 0
    X, y, enc = load_movielens(files / "ratings.train")
    api = FMRegressor(max_iter=2, random_state=4, n_jobs=1).fit(X, y)
    cli = load(model)
    np.testing.assert_array_equal(api.factors_, cli.factors_)
    np.testing.assert_array_equal(api.coef_, cli.coef_)
    side = json.loads(Path(str(model) + ".encoder.json").read_text())
    assert side["users"] == [str(u) for u in enc.users_]
    assert side["users"][:3] == ["1", "2", "3"]


@pytest.fixture(scope="module")
def side_files(files):
    """User and item attribute files for the ratings fixture (MovieLens
    u.user / u.item layouts and a generic CSV)."""
    d = files
    (d / "u.user").write_text("".join(f"{u}|{18 + u % 40}|{'MF'[u % 2]}|job{u % 4}|0{u:04d}\n"
                                      for u in range(1, 61)))
    flags = lambda j: "|".join("1" if (j + g) % 7 == 0 or g == j % 19 else "0"
                               for g in range(19))
    (d / "items.csv").write_text("item_id,price,tags\n" + "".join(
        f"m{j},{j % 5 + 1},{'a|b' if j % 2 else 'c'}\n" for j in range(40)))
    (d / "u.item").write_text("".join(f"{j}|Film {j} (1995)|01-Jan-1995||http://x|{flags(j)}\n"
                                      for j in range(40)))
    return d


def test_side_features_fit_predict_and_groups(capsys, side_files, tmp_path):
    from fmnumba.readers import load_movielens
    d = side_files
    model = tmp_path / "m.npz"
    code, _, err = run(capsys, "fit", d / "ratings.train", "--task", "r", "--epochs", 2,
                       "--user-features", d / "u.user", "--item-features", d / "items.csv",
                       "--group-by-field", "--l2-v", "0.01,0.02,0.03,0.04,0.05,0.06,0.07",
                       "--seed", 2, "--n-jobs", 1, "-m", model, "-q")
    assert code == 0, err
    X, y, enc = load_movielens(d / "ratings.train", user_features=d / "u.user",
                               item_features=d / "items.csv")
    assert enc.group_names_ == ["user", "item", "user.age", "user.gender", "user.occupation",
                                "item.price", "item.tags"]
    api = FMRegressor(max_iter=2, random_state=2, n_jobs=1, groups=enc.fields_,
                      l2_reg_v=[0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07]).fit(X, y)
    cli = load(model)
    np.testing.assert_array_equal(api.factors_, cli.factors_)
    # predict maps new rows through the recorded attribute tables
    code, out, err = run(capsys, "predict", model, d / "ratings.test")
    assert code == 0, err
    Xt, _, _ = load_movielens(d / "ratings.test", encoder=enc)
    np.testing.assert_allclose(np.array(out.split(), dtype=float), api.predict(Xt), rtol=1e-6)
    code, _, err = run(capsys, "fit", d / "ratings.train", "--task", "r",
                       "--group-by-field", "--l2-v", "0.01,0.02,0.03")
    assert_user_error(code, err)
    assert "groups (user, item)" in err
    code, _, err = run(capsys, "fit", d / "reg.train", "--task", "r", "--item-features",
                       d / "items.csv")
    assert_user_error(code, err)
    assert "--item-features is for ratings files" in err


def test_movielens_item_genres_from_the_cli(capsys, side_files, tmp_path):
    d = side_files
    model = tmp_path / "m.npz"
    code, _, err = run(capsys, "fit", d / "ratings.train", "--task", "r", "--epochs", 1,
                       "--item-features", d / "u.item", "-m", model, "-q")
    assert code == 0, err
    side = json.loads(Path(str(model) + ".encoder.json").read_text())
    assert side["groups"] == ["user", "item", "item.genre"]
    assert side["item_features"]["names"] == ["genre"]


# --- recommend ------------------------------------------------------------------

def test_recommend_command_matches_the_api(capsys, side_files, tmp_path):
    from fmnumba import recommend
    from fmnumba.readers import RatingEncoder, load_ratings
    d = side_files
    model = tmp_path / "m.npz"
    assert run(capsys, "fit", d / "ratings.train", "--task", "r", "--epochs", 2,
               "--item-features", d / "u.item", "-m", model, "-q")[0] == 0
    users = tmp_path / "users.txt"
    users.write_text("7\n3\n")
    code, out, err = run(capsys, "recommend", model, "--users", users, "-n", 4,
                         "--exclude", d / "ratings.train")
    assert code == 0, err
    rows = [ln.split("\t") for ln in out.splitlines()]
    assert [r[0] for r in rows] == ["7"] * 4 + ["3"] * 4
    assert [r[1] for r in rows] == ["1", "2", "3", "4"] * 2
    side = json.loads(Path(str(model) + ".encoder.json").read_text())
    enc = RatingEncoder.from_json(side)
    eu, ei, _ = load_ratings(d / "ratings.train", id_type=str)
    rec = recommend(load(model), enc, ["7", "3"], n=4, exclude=(eu, ei))
    assert [r[2] for r in rows] == rec.items.ravel().tolist()
    np.testing.assert_allclose([float(r[3]) for r in rows], rec.scores.ravel(), rtol=1e-6)
    rated = {(u, i) for u, i in zip(eu, ei)}
    assert not any((r[0], r[2]) in rated for r in rows)
    code, out, err = run(capsys, "recommend", model, "-n", 2, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc) == 60 and all(len(v) == 2 for v in doc.values())


def test_recommend_command_errors(capsys, files, tmp_path):
    lib = tmp_path / "lib.npz"
    assert run(capsys, "fit", files / "reg.train", "--task", "r", "--epochs", 1, "-m", lib,
               "-q")[0] == 0
    code, _, err = run(capsys, "recommend", lib)
    assert_user_error(code, err)
    assert "needs a model trained on a ratings file" in err
    rat = tmp_path / "r.npz"
    assert run(capsys, "fit", files / "ratings.train", "--task", "r", "--epochs", 1, "-m",
               rat, "-q")[0] == 0
    users = tmp_path / "u.txt"
    users.write_text("nobody\n")
    code, _, err = run(capsys, "recommend", rat, "--users", users)
    assert_user_error(code, err)
    assert "unknown ids ['nobody']" in err
    code, _, err = run(capsys, "recommend", rat, "-n", 41)
    assert_user_error(code, err)
    assert "n=41 exceeds the number of candidate items (40)" in err
    code, _, err = run(capsys, "recommend", rat, "-n", 0)
    assert_user_error(code, err)
    code, _, err = run(capsys, "recommend", rat, "--users", tmp_path / "missing.txt")
    assert_user_error(code, err)
    assert "no such file" in err
