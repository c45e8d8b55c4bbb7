"""Top-N recommendations from a model trained on RatingEncoder output.

:func:`recommend` scores every candidate item for each user with the FM's
decomposition (see :mod:`fmnumba.cpu.recommend`): the user terms and the
item terms are computed once, then each (user, item) score costs O(k), so a
user's whole catalogue costs O(n_items·k) instead of encoding and
predicting n_items rows.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

# NumPy, SciPy and scikit-learn are imported on first call: the package
# imports this module eagerly (fmnumba.recommend is this function)


class Recommendations(NamedTuple):
    """The result of :func:`recommend`.

    users : (n_users,) the users asked for, in order.
    items : (n_users, n) item ids, best first.
    scores : (n_users, n) float64, the model's raw output ŷ for each pair
        (a regressor's predicted rating; a classifier's decision value,
        which orders items as P(positive) does).
    """
    users: object  # numpy arrays (NumPy is not imported at module load)
    items: object
    scores: object


def _ids(values, what):
    import numpy as np
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-d list of ids, got shape {arr.shape}")
    return arr.tolist()


def _positions(index, ids, what, vocab_name):
    import numpy as np
    pos = np.empty(len(ids), dtype=np.int64)
    missing = []
    for n, k in enumerate(ids):
        try:
            pos[n] = index.get(k, -1)
        except TypeError:  # unhashable
            pos[n] = -1
        if pos[n] < 0:
            missing.append(k)
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"{what}: unknown ids {missing[:5]!r}{more}; the encoder knows "
                         f"{len(index)} {vocab_name} (its {vocab_name}_)")
    return pos


def _exclusion_pairs(exclude, encoder):
    """(user positions, item positions) in the encoder's vocabularies of
    the pairs to leave out; pairs with unknown ids are dropped."""
    import numpy as np
    import scipy.sparse as sp

    if exclude is None:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if sp.issparse(exclude):
        M = sp.coo_matrix(exclude)
        if M.shape != (encoder.n_users_, encoder.n_items_):
            raise ValueError(f"exclude: a sparse matrix must have shape (n_users_, n_items_) "
                             f"= {(encoder.n_users_, encoder.n_items_)}, got {M.shape}")
        keep = M.data != 0
        return M.row[keep].astype(np.int64), M.col[keep].astype(np.int64)
    if isinstance(exclude, dict):
        us, its = [], []
        for u, items in exclude.items():
            items = _ids(items, f"exclude[{u!r}]")
            us.extend([u] * len(items))
            its.extend(items)
    elif isinstance(exclude, (tuple, list)) and len(exclude) == 2:
        us, its = _ids(exclude[0], "exclude[0]"), _ids(exclude[1], "exclude[1]")
        if len(us) != len(its):
            raise ValueError(f"exclude: users and items differ in length: {len(us)} != "
                             f"{len(its)}")
    else:
        raise TypeError("exclude must be None, a dict {user: items}, a pair (users, items) "
                        "of equal length, or a sparse matrix of shape (n_users_, n_items_)")

    def look(index, ids):
        out = np.empty(len(ids), dtype=np.int64)
        for n, k in enumerate(ids):
            try:
                out[n] = index.get(k, -1)
            except TypeError:
                out[n] = -1
        return out
    u, i = look(encoder.user_index_, us), look(encoder.item_index_, its)
    keep = (u >= 0) & (i >= 0)
    return u[keep], i[keep]


def _context_row(context, encoder, n_features):
    """Context as a (1, n_features) CSR; it must be zero on the encoder's
    columns."""
    import numpy as np
    import scipy.sparse as sp

    if context is None:
        return None
    c = sp.csr_matrix(context, dtype=np.float64) if sp.issparse(context) else \
        sp.csr_matrix(np.asarray(context, dtype=np.float64).reshape(1, -1))
    if c.shape != (1, n_features):
        raise ValueError(f"context must have one value per model feature ({n_features}), "
                         f"got shape {c.shape}")
    if not np.all(np.isfinite(c.data)):
        raise ValueError("context holds non-finite values")
    c.eliminate_zeros()
    if c.nnz and c.indices.min() < encoder.n_output_features_:
        raise ValueError(f"context is nonzero on the encoder's columns (the first "
                         f"{encoder.n_output_features_}); set only the extra columns")
    return c


def recommend(model, encoder, users, n=10, exclude=None, items=None, context=None,
              n_jobs=None):
    """The n best items for each user, by the model's score.

    Parameters
    ----------
    model : fitted FMRegressor or FMClassifier, trained on `encoder`'s
        columns (optionally followed by extra context columns).
    encoder : the fitted RatingEncoder the training data were encoded with.
    users : list of user ids (each must be known to the encoder).
    n : int, items per user, 1 <= n <= number of candidate items.
    exclude : None, dict {user: items}, pair (users, items) of equal length
        (e.g. the training ratings' columns), or sparse matrix of shape
        (n_users_, n_items_): pairs never recommended (e.g. items a user has
        rated). Pairs with ids the encoder does not know are ignored.
    items : list of candidate item ids (default: every item of the encoder).
    context : None or array of shape (model.n_features_in_,), zero on the
        encoder's columns: context columns held fixed in every row.
    n_jobs : threads (default: Numba's setting).

    Returns
    -------
    Recommendations(users, items, scores); items and scores of shape
    (len(users), n), best first (ties: the item listed first among the
    candidates).
    """
    import numpy as np
    import scipy.sparse as sp
    from sklearn.utils.validation import check_is_fitted

    from .cpu.recommend import row_terms, top_n
    from .readers import _id_array
    from .training import numba_threads

    if encoder is None:
        raise ValueError("recommend needs the RatingEncoder the model's training data were "
                         "encoded with; pass encoder=")
    if not hasattr(encoder, "user_index_") or not hasattr(encoder, "transform_side"):
        raise ValueError("encoder must be a fitted fmnumba.readers.RatingEncoder")
    check_is_fitted(model, "_state")
    n_features = int(model.n_features_in_)
    if encoder.n_output_features_ > n_features:
        raise ValueError(f"the encoder has {encoder.n_output_features_} columns but the model "
                         f"{n_features} features; pass the encoder the model was trained with")
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    users = _ids(users, "users")
    if not users:
        raise ValueError("users is empty; pass at least one user id")
    upos = _positions(encoder.user_index_, users, "users", "users")
    if items is None:
        cand = list(encoder.item_index_)  # ids in column order
    else:
        cand = _ids(items, "items")
        ipos = _positions(encoder.item_index_, cand, "items", "items")
        if len(set(ipos.tolist())) != len(cand):
            raise ValueError("items holds repeated ids; pass each candidate once")
    if n > len(cand):
        raise ValueError(f"n={n} exceeds the number of candidate items ({len(cand)}); "
                         "lower n")
    ctx = _context_row(context, encoder, n_features)

    def full_width(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        if X.shape[1] < n_features:
            X = sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], n_features))
        return X

    U = full_width(encoder.transform_side(users, "user"))
    if ctx is not None:
        U = sp.csr_matrix(U + sp.vstack([ctx] * U.shape[0]))
    I = full_width(encoder.transform_side(cand, "item"))
    P = np.ascontiguousarray(model._state.P, dtype=np.float64)
    k = P.shape[1] - 1

    # exclusions as CSR over the requested users, in candidate positions
    cpos = np.full(encoder.n_items_, -1, dtype=np.int64)
    cpos[_positions(encoder.item_index_, cand, "items", "items")] = np.arange(len(cand))
    eu, ei = _exclusion_pairs(exclude, encoder)
    ei = cpos[ei]
    keep = ei >= 0
    eu, ei = eu[keep], ei[keep]
    order = np.argsort(eu, kind="stable")
    eu, ei = eu[order], ei[order]
    lo = np.searchsorted(eu, upos, side="left")
    hi = np.searchsorted(eu, upos, side="right")
    excl_indptr = np.concatenate([[0], np.cumsum(hi - lo)]).astype(np.int64)
    excl_indices = (np.concatenate([ei[a:b] for a, b in zip(lo, hi)]).astype(np.int64)
                    if len(users) else np.empty(0, np.int64))

    su, Qu = np.empty(U.shape[0]), np.empty((U.shape[0], k))
    si, Qi = np.empty(I.shape[0]), np.empty((I.shape[0], k))
    out_items = np.empty((len(users), n), dtype=np.int64)
    out_scores = np.empty((len(users), n), dtype=np.float64)
    counts = np.empty(len(users), dtype=np.int64)
    with numba_threads(n_jobs if n_jobs is not None else model.n_jobs):
        row_terms(U.indptr.astype(np.int64), U.indices.astype(np.int64), U.data, P, su, Qu)
        row_terms(I.indptr.astype(np.int64), I.indices.astype(np.int64), I.data, P, si, Qi)
        su += float(model.intercept_)
        top_n(su, Qu, si, Qi, excl_indptr, excl_indices, n, out_items, out_scores, counts)
    short = np.flatnonzero(counts < n)
    if short.size:
        u = short[0]
        raise ValueError(f"user {users[u]!r} has {counts[u]} candidate items left after "
                         f"exclude, fewer than n={n}; lower n")
    if not np.all(np.isfinite(out_scores)):
        raise ValueError("scores overflowed (non-finite); the model's parameters or the "
                         "attribute values are too large")
    return Recommendations(_id_array(users), _id_array(cand)[out_items], out_scores)
