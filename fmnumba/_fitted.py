"""Fitted-state views shared by the single-machine and Dask estimators."""
from sklearn.utils.validation import check_is_fitted


class FittedViews:
    """coef_, factors_ and intercept_ read from a fitted FMState in _state."""

    @property
    def coef_(self):
        """Linear weights w, shape (n_features,): a view of the table P."""
        check_is_fitted(self, "_state")
        return self._state.P[:, 0]

    @property
    def factors_(self):
        """Factor matrix V, shape (n_features, n_factors): a view of P."""
        check_is_fitted(self, "_state")
        return self._state.P[:, 1:]

    @property
    def intercept_(self):
        """Global bias w0 (float)."""
        check_is_fitted(self, "_state")
        return float(self._state.bias_state[0])

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_state")
