"""The `fmnumba` command line: fit / predict / evaluate / demo, exit codes,
encoder sidecars, per-group L2 options, progress and plots.

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

@pytest.mark.parametrize("cmd", ["fit", "predict", "evaluate", "demo"])
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
    m = json.loads(out.splitlines()[1])
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
    model = tmp_path / "h.npz"
    code, _, err = run(capsys, "fit", files / "clf.train", "--task", "c", "--loss", "hinge",
                       "--epochs", 1, "-m", model, "-q")
    assert code == 0, err
    code, out, _ = run(capsys, "evaluate", model, files / "clf.test", "--json")
    assert code == 0 and "logloss" not in json.loads(out)
    code, _, err = run(capsys, "predict", model, files / "clf.test", "--proba")
    assert_user_error(code, err)
    assert "logistic" in err


def test_narrower_libsvm_file_at_predict(capsys, files, tmp_path):
    model = tmp_path / "m.npz"
    assert run(capsys, "fit", files / "reg.train", "--task", "r", "--epochs", 1,
               "-m", model, "-q")[0] == 0
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
    enc = RatingEncoder().fit(users.astype(str), items.astype(str))
    est = load(model)
    X = enc.transform(users.astype(str)[:3][::-1], items.astype(str)[:3][::-1])
    np.testing.assert_allclose(got, est.predict(X), rtol=1e-6)
    # unknown ids: still a prediction per row, and a note on stderr
    small.write_text("99999\tm0\t3\t0\nnobody\tnothing\t4\t0\n")
    code, out, err = run(capsys, "predict", model, small)
    assert code == 0 and len(out.split()) == 2 and "not seen in training" in err


def test_ratings_model_needs_its_sidecar(capsys, files, tmp_path):
    model = tmp_path / "r.npz"
    assert run(capsys, "fit", files / "ratings.train", "--task", "r", "--epochs", 1,
               "-m", model, "-q")[0] == 0
    os.remove(str(model) + ".encoder.json")
    code, _, err = run(capsys, "predict", model, files / "ratings.test")
    assert_user_error(code, err)
    assert "encoder" in err


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
    model = tmp_path / "c.npz"
    assert run(capsys, "fit", files / "clf.train", "--task", "c", "--epochs", 1,
               "-m", model, "-q")[0] == 0
    code, _, err = run(capsys, "predict", model, files / "clf.test.libffm")
    assert_user_error(code, err)
    assert "libffm" in err and "libsvm" in err
    code, _, err = run(capsys, "evaluate", model, files / "reg.test")  # labels not ±1
    assert_user_error(code, err)
    assert "classes" in err


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
