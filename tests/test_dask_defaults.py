"""The Dask estimators' constructor defaults equal the single-machine
estimators' defaults of the same-named parameters (they are written out by
hand in both places). No cluster is needed: only the signatures are read."""
import inspect

import numpy as np
import pytest

from fmnumba import FMClassifier, FMRegressor
from fmnumba.bayes import default_max_iter
from fmnumba.dask import DaskFMClassifier, DaskFMRegressor

# Parameters whose defaults differ on purpose, with the reason. Each entry maps
# to a check of the Dask default instead of equality.
DELIBERATE = {
    # FMRegressor/FMClassifier take max_iter=None, meaning the solver's
    # default (sweeps for mcmc/als, epochs otherwise); the Dask estimators
    # train with the gradient solvers only, so they spell out that epoch count.
    "max_iter": lambda dask_est, value: value == default_max_iter(
        inspect.signature(dask_est).parameters["solver"].default),
}


def _defaults(cls):
    return {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _same(a, b):
    if isinstance(a, type) or isinstance(b, type):
        return np.dtype(a) == np.dtype(b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("dask_est, local_est", [(DaskFMRegressor, FMRegressor),
                                                  (DaskFMClassifier, FMClassifier)])
def test_dask_defaults_match_the_local_estimator(dask_est, local_est):
    dask_d, local_d = _defaults(dask_est), _defaults(local_est)
    shared = sorted(set(dask_d) & set(local_d))
    assert len(shared) >= 20  # the signatures were read, not two empty sets
    drift = [f"{n}: {dask_est.__name__}={dask_d[n]!r}, {local_est.__name__}={local_d[n]!r}"
             for n in shared if n not in DELIBERATE and not _same(dask_d[n], local_d[n])]
    assert not drift, "defaults drifted:\n" + "\n".join(drift)
    for name, check in DELIBERATE.items():
        assert name in shared, f"{name} is listed as deliberate but is not shared any more"
        assert check(dask_est, dask_d[name]), f"{dask_est.__name__}.{name}={dask_d[name]!r}"
