"""Synthetic data with planted FM parameters (the embedded default data).

Each row has one active feature per categorical field (users, items,
context...), drawn with Zipf-like popularity, so the data look like one-hot
encoded ratings or ad impressions. Targets come from a planted FM, so the
best achievable error is known: for ratings it is the noise σ.
"""
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass
class SyntheticData:
    """X (n_rows × n_features CSR float32), y (n_rows,), the planted model
    (w0, w, V) and noise: the RMSE of the true model on the data (σ) for
    ratings, or the label-flip noise for clicks."""
    X: sp.csr_matrix
    y: np.ndarray
    w0: float
    w: np.ndarray
    V: np.ndarray
    noise: float
    field_sizes: tuple

    def split(self, test_fraction=0.2, random_state=0):
        """(X_train, X_test, y_train, y_test) from a seeded permutation."""
        n = self.X.shape[0]
        perm = np.random.default_rng(random_state).permutation(n)
        n_test = int(round(test_fraction * n))
        te, tr = perm[:n_test], perm[n_test:]
        return self.X[tr], self.X[te], self.y[tr], self.y[te]

    def decision(self, X):
        """The planted FM's ŷ on the rows of X (the best any model can do),
        shape (n_rows,), float64."""
        return fm_decision(X, self.w0, self.w, self.V)


def fm_decision(X, w0, w, V):
    """ŷ(x) = w0 + Σ_i w_i x_i + Σ_{i<j} <v_i, v_j> x_i x_j for every row of
    sparse X (n_rows × n_features), with w (n_features,) and V
    (n_features × k); float64, shape (n_rows,). Uses
    Σ_{i<j} <v_i, v_j> x_i x_j = ½ Σ_f ((Σ_i v_if x_i)² − Σ_i v_if² x_i²)."""
    X = sp.csr_matrix(X)
    XV = X @ V
    sq = X.multiply(X) @ (V ** 2)
    return np.asarray(w0 + X @ w + 0.5 * ((XV ** 2).sum(axis=1) - sq.sum(axis=1))).ravel()


def _zipf_draw(rng, size, n, exponent):
    """Draw `size` ids in [0, n) with P(id) ∝ 1 / (rank + 1)^exponent,
    ranks randomly permuted so popular ids are scattered over the range."""
    if exponent == 0:
        return rng.integers(0, n, size)
    p = 1.0 / np.arange(1, n + 1) ** exponent
    cdf = np.cumsum(p)
    ranks = np.minimum(np.searchsorted(cdf, rng.random(size) * cdf[-1]), n - 1)
    return rng.permutation(n)[ranks]


def make_fm_data(n_rows, field_sizes, *, n_factors=4, task="regression", noise=0.5,
                 zipf=1.0, factor_std=None, linear_std=0.3, w0=3.5, random_state=0):
    """Rows with one active feature per field, targets from a planted FM.

    field_sizes: cardinality of each field; features are the fields' blocks
    side by side. task "regression": y = ŷ_true + N(0, noise²); task
    "classification": y ∈ {0, 1} with P(y = 1) = σ(ŷ_true), w0 defaulting
    to a click rate of about 25%.
    """
    rng = np.random.default_rng(random_state)
    field_sizes = tuple(int(s) for s in field_sizes)
    n_fields = len(field_sizes)
    offsets = np.concatenate([[0], np.cumsum(field_sizes)])
    n_features = int(offsets[-1])
    cols = np.empty((n_rows, n_fields), dtype=np.int64)
    for f, size in enumerate(field_sizes):
        cols[:, f] = offsets[f] + _zipf_draw(rng, n_rows, size, zipf)
    if factor_std is None:
        # interaction variance ≈ (#pairs)·k·σ_v⁴: aim for about 1
        pairs = max(1, n_fields * (n_fields - 1) // 2)
        factor_std = (1.0 / (pairs * n_factors)) ** 0.25
    w = rng.normal(0.0, linear_std, n_features)
    V = rng.normal(0.0, factor_std, (n_features, n_factors))
    indptr = np.arange(0, n_rows * n_fields + 1, n_fields, dtype=np.int64)
    X = sp.csr_matrix((np.ones(n_rows * n_fields, dtype=np.float32), cols.ravel(), indptr),
                      shape=(n_rows, n_features))
    X.sort_indices()
    if task == "classification" and w0 == 3.5:
        w0 = -1.5
    f_true = fm_decision(X, w0, w, V)
    if task == "regression":
        y = f_true + rng.normal(0.0, noise, n_rows)
    elif task == "classification":
        y = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-f_true))).astype(np.float64)
        noise = float(np.mean(np.minimum(1, 2 * (1 / (1 + np.exp(-np.abs(f_true)))) - 1)))
    else:
        raise ValueError(f"task={task!r}; choose 'regression' or 'classification'.")
    return SyntheticData(X, y, float(w0), w, V, float(noise), field_sizes)


def make_ratings(n_ratings=100_000, n_users=2_000, n_items=1_000, n_context=(7, 24),
                 *, n_factors=4, noise=0.5, zipf=0.8, random_state=0):
    """Rating-like data: one-hot user, item and context fields (e.g. weekday,
    hour), planted FM, Gaussian noise σ = `noise` (the best achievable RMSE)."""
    return make_fm_data(n_ratings, (n_users, n_items, *n_context), n_factors=n_factors,
                        task="regression", noise=noise, zipf=zipf, random_state=random_state)


def make_clicks(n_rows=100_000, field_sizes=(1000, 500, 100, 50, 20, 10, 7, 3), *,
                n_factors=4, zipf=1.1, random_state=0):
    """Click-like binary data (labels 0/1, about 25% positives): categorical
    ad/user/context fields, P(click) = σ(planted FM)."""
    return make_fm_data(n_rows, field_sizes, n_factors=n_factors, task="classification",
                        zipf=zipf, random_state=random_state)


def large_field_sizes(n_features=1_000_000, n_fields=21, zipf_fields=True):
    """Field cardinalities summing to n_features over n_fields fields (a few
    large id fields and many small ones), for the ~21 nnz/row benchmark set."""
    weights = 1.0 / np.arange(1, n_fields + 1) ** 1.0
    sizes = np.maximum(2, np.floor(weights / weights.sum() * n_features)).astype(np.int64)
    sizes[0] += n_features - sizes.sum()
    return tuple(int(s) for s in sizes)
