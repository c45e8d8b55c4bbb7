"""The property tests draw the same examples whatever ran before them.

Hypothesis (derandomize=True, see conftest.py) seeds each test from its
source, but it also mixes into its draws constants harvested from the
project modules present in sys.modules; as tests import modules, the
examples of a later test changed with the selection and order of the tests
before it. conftest.py keeps that pool empty.
"""
import hashlib
import importlib
import sys

import numpy as np
from hypothesis import given, settings

try:
    from . import strategies as S
except ImportError:
    import strategies as S

# Source of a project-like module whose constants lie where fm_problem draws
# (values in [-4, 4], shapes and counts up to 30).
_MODULE = "SCALES = ({})\nSIZES = ({})\n".format(
    ", ".join(repr(float(v)) for v in np.linspace(-3.9, 3.9, 40).round(3)),
    ", ".join(str(i) for i in range(2, 31)))


def _drawn_problems():
    """Digests of the fm_problem examples a derandomized test draws."""
    seen = []

    @settings(max_examples=20, derandomize=True, deadline=None)
    @given(prob=S.fm_problem(dtype=np.float64, kind="moderate", max_rows=30))
    def draw(prob):
        h = hashlib.sha1()
        for a in (prob.X.indptr, prob.X.indices, prob.X.data, prob.P, prob.y, prob.sw):
            h.update(np.ascontiguousarray(a).tobytes())
        seen.append(h.hexdigest())

    draw()
    return seen


def test_examples_do_not_depend_on_imported_modules(tmp_path, monkeypatch):
    before = _drawn_problems()
    (tmp_path / "fm_extra_constants.py").write_text(_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("fm_extra_constants")
        after = _drawn_problems()
    finally:
        sys.modules.pop("fm_extra_constants", None)
    assert len(before) == 20
    assert after == before
