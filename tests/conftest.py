"""Test-wide settings.

CUDA kernels run under Numba's CUDA simulator unless FMNUMBA_REAL_GPU=1 is
set (on a machine with a GPU); the variable must be set before numba.cuda is
imported, hence here.
"""
import os
from pathlib import Path

import pytest

if os.environ.get("FMNUMBA_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _freeze_hypothesis_constants():
    """Keep Hypothesis from mixing into its draws the constants it harvests
    from the project's modules then in sys.modules (its "local constants").
    That pool grows as tests import modules, so under derandomize=True a
    test's examples still changed with which tests had run before it. The
    pool is left empty, as it is anyway when fmnumba is installed into
    site-packages; nothing to do on Hypothesis versions without it."""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:
        return
    if hasattr(providers, "_get_local_constants") and hasattr(providers, "Constants"):
        empty = providers.Constants()
        providers._get_local_constants = lambda: empty


_freeze_hypothesis_constants()

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; skips the test when it is absent."""
    if not (SHARED_DATA / "a9a").exists():
        pytest.skip(f"shared data not found at {SHARED_DATA} (needs ../shared/data/a9a)")
    return SHARED_DATA
