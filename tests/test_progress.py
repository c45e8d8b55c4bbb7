"""Progress of a fit: per chunk of rows inside an epoch (without changing
results), plain lines at a bounded rate off a terminal, figures in the
printed metric's units."""
import io
import math
import re

import numpy as np
import pytest

from fmnumba import FMClassifier, FMRegressor
from fmnumba import training
from fmnumba._progress import Progress
from fmnumba.datasets import make_clicks, make_ratings


@pytest.fixture(scope="module")
def ratings():
    return make_ratings(6000, n_users=80, n_items=60, n_context=(), random_state=0)


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Kernel calls of about one mini-batch each, counted."""
    monkeypatch.setattr(training, "PROGRESS_CHUNK_S", 1e-9)
    calls = []
    real = training._run_epoch

    def counted(*args):
        calls.append(args[4].shape[0])
        return real(*args)
    monkeypatch.setattr(training, "_run_epoch", counted)
    return calls


@pytest.mark.parametrize("solver", ["adam", "adamw"])
def test_chunked_epochs_are_bit_identical(ratings, tiny_chunks, solver, capsys):
    kw = dict(max_iter=3, batch_size=128, solver=solver, early_stopping=False,
              random_state=0, n_jobs=2)
    plain = FMRegressor(**kw).fit(ratings.X, ratings.y)
    n_plain = len(tiny_chunks)
    chunked = FMRegressor(verbose=1, **kw).fit(ratings.X, ratings.y)
    chunks = tiny_chunks[n_plain:]
    assert n_plain == 3 and len(chunks) > 3 * 10      # one call per epoch, then many
    done = 0
    for c in chunks:          # whole mini-batches, except where an epoch ends
        done += c
        assert c % 128 == 0 or done == ratings.X.shape[0]
        done %= ratings.X.shape[0]
    assert done == 0
    np.testing.assert_array_equal(chunked._state.P, plain._state.P)
    np.testing.assert_array_equal(chunked._state.M, plain._state.M)
    np.testing.assert_array_equal(chunked._state.S, plain._state.S)
    np.testing.assert_array_equal(chunked._state.bias_state, plain._state.bias_state)
    assert chunked._state.t == plain._state.t
    # the epoch's mean loss is summed per chunk: the same terms in another order
    np.testing.assert_allclose(chunked.history_["train_loss"], plain.history_["train_loss"],
                               rtol=1e-12)


def test_plain_lines_off_a_terminal_in_the_printed_units(ratings, capsys):
    m = FMRegressor(max_iter=4, verbose=1, random_state=0).fit(
        ratings.X, ratings.y, eval_set=(ratings.X, ratings.y))
    err = capsys.readouterr().err
    assert "\r" not in err and err.endswith("\n")
    lines = err.splitlines()
    assert 1 <= len(lines) <= 2          # a short fit: the first chunk and the end
    last = lines[-1]
    assert "rows/s" in last and "24.0k/24.0k" in last and "epoch=4/4" in last
    rmse = float(re.search(r" rmse=([\d.]+)", last).group(1))
    assert rmse == pytest.approx(math.sqrt(2 * m.history_["train_loss"][-1]), abs=1e-4)
    val = float(re.search(r"val_rmse=([\d.]+)", last).group(1))
    assert val == pytest.approx(math.sqrt(2 * m.history_["val_loss"][-1]), abs=1e-4)


def test_classifier_shows_logloss_and_the_score(capsys):
    d = make_clicks(3000, random_state=0)
    m = FMClassifier(max_iter=2, verbose=1, scoring="roc_auc", random_state=0).fit(
        d.X, d.y, eval_set=(d.X, d.y))
    last = capsys.readouterr().err.splitlines()[-1]
    assert float(re.search(r" logloss=([\d.]+)", last).group(1)) == pytest.approx(
        m.history_["train_loss"][-1], abs=1e-4)
    assert float(re.search(r"val_roc_auc=([\d.]+)", last).group(1)) == pytest.approx(
        m.history_["val_score"][-1], abs=1e-4)


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_line_rate_is_bounded(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("fmnumba._progress.time.monotonic", clock)
    out = io.StringIO()
    p = Progress(total_rows=10_000, file=out, interval=10.0)
    for _ in range(1000):           # 100 s of chunks, one every 0.1 s
        clock.t += 0.1
        p.advance(10)
    p.close()
    lines = out.getvalue().splitlines()
    assert 10 <= len(lines) <= 12
    assert "100%" in lines[-1] and "ETA" not in lines[-1]
    assert "<" in lines[0] and "rows/s" in lines[0]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_tqdm_bar():
    out = _Terminal()
    p = Progress(total_rows=1000, file=out)
    p.advance(500)
    p.epoch_done(1, 2, [("rmse", 0.5)])
    p.advance(500)
    p.close()
    text = out.getvalue()
    assert "\r" in text and "1.00k/1.00k rows" in text and "rmse=0.5000" in text
