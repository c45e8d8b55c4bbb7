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

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; skips the test when it is absent."""
    if not (SHARED_DATA / "a9a").exists():
        pytest.skip(f"shared data not found at {SHARED_DATA} (needs ../shared/data/a9a)")
    return SHARED_DATA
