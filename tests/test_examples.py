"""The scripts in examples/ run on small data and print their metric line."""
import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnumba.datasets import make_ratings

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def run_example(name, *args):
    return subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def example_parser(name):
    """The example's own argparse parser (its build_parser())."""
    if str(EXAMPLES) not in sys.path:  # the scripts import their shared module
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name[:-3]}", EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


@pytest.mark.parametrize("name", ["movielens.py", "criteo.py", "a9a.py"])
def test_help(name):
    """--help lists every option the script accepts, each with its description."""
    r = run_example(name, "--help")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())  # argparse wraps long help lines
    actions = [a for a in example_parser(name)._actions
               if not isinstance(a, argparse._HelpAction)]
    assert any(a.option_strings == ["--quick"] for a in actions)
    for action in actions:
        what = "/".join(action.option_strings) or action.dest
        assert action.help, f"{name}: {what} has no help text"
        for flag in action.option_strings:
            assert flag in text, f"{name} --help does not list {flag}"
        assert " ".join(action.help.split()) in text, f"{name} --help does not explain {what}"


def test_movielens_without_a_path_says_so():
    r = run_example("movielens.py")
    assert r.returncode == 2
    assert "no ratings file" in r.stderr and "Traceback" not in r.stderr


def test_movielens_on_synthetic_u_data(tmp_path):
    d = make_ratings(4000, n_users=100, n_items=80, n_context=(), random_state=0)
    cols = d.X.indices.reshape(-1, 2)
    ratings = np.clip(np.round(d.y), 1, 5).astype(int)
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u + 1}\t{i - 99}\t{r}\t{874965758 + n}\n"
                            for n, ((u, i), r) in enumerate(zip(cols, ratings))))
    r = run_example("movielens.py", path, "--quick", "--n-jobs", 1)
    assert r.returncode == 0, r.stderr
    m = re.search(r"test RMSE: ([0-9.]+) \(global mean: ([0-9.]+)\)", r.stdout)
    assert m, r.stdout
    assert 0 < float(m.group(1)) < 2


def test_a9a(shared_data):
    r = run_example("a9a.py", "--data-dir", shared_data, "--quick", "--max-rows", 3000,
                    "--epochs", 3, "--n-jobs", 1)
    assert r.returncode == 0, r.stderr
    m = re.search(r"test AUC: ([0-9.]+) logloss: ([0-9.]+)", r.stdout)
    assert m, r.stdout
    assert float(m.group(1)) > 0.8


def test_criteo(shared_data):
    if not (shared_data / "criteo_small_train.libffm").exists():
        pytest.skip(f"criteo_small_train.libffm not found in {shared_data}")
    r = run_example("criteo.py", "--data-dir", shared_data, "--quick", "--group-by-field",
                    "--n-jobs", 1)
    assert r.returncode == 0, r.stderr
    assert re.search(r"test AUC: [0-9.]+ logloss: [0-9.]+", r.stdout), r.stdout


def test_missing_data_dir_exits_2(tmp_path):
    for name in ("a9a.py", "criteo.py"):
        r = run_example(name, "--data-dir", tmp_path)
        assert r.returncode == 2 and "not found" in r.stderr
