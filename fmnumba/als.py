"""FM regression by alternating least squares (coordinate descent), as
libFM's and fastFM's ALS: every coordinate (w0, then column by column w_j,
v_j1, ..., v_jk) is set to its exact conditional minimiser of

    J = ½ Σ_r s_r (y_r − ŷ_r)² + ½ Σ_j λ_w[j] w_j² + ½ Σ_jf λ_v[j] v_jf²,

so J never increases from one sweep to the next. The L2 strengths are per
sum of losses (libFM's and fastFM's convention), not per mean as for the
gradient solvers; w0 is not regularised. A sweep costs O(nnz·k) on the
CSC view with cached residuals and q (see column_view and cpu/_columns).
"""
import numpy as np

from .column_view import build_column_view
from .cpu import als as K
from .cpu._columns import N_CHUNKS

_NO_KEY = np.zeros(2, dtype=np.uint32)


def _l2_tables(lam_w, lam_v, n_features):
    """(gid, lam_w, lam_v) for the kernels: one shared value, or per feature."""
    lam_w = np.asarray(lam_w, dtype=np.float64).ravel()
    lam_v = np.asarray(lam_v, dtype=np.float64).ravel()
    if lam_w.shape[0] == 1 and lam_v.shape[0] == 1:
        return np.zeros(n_features, dtype=np.int32), lam_w, lam_v
    return (np.arange(n_features, dtype=np.int32), np.broadcast_to(lam_w, n_features).copy(),
            np.broadcast_to(lam_v, n_features).copy())


def run_als(X, y, sw, P, w0, *, max_iter, l2_reg_w, l2_reg_v, groups=None, view=None,
            history=None):
    """Run max_iter ALS sweeps on canonical CSR X (in place on P; returns
    the new w0). y, sw (n_rows,); l2_reg_w / l2_reg_v of shape (1,) or
    (n_features,). history: dict whose "objective" list receives J before
    the first and after every sweep, and "train_rmse" the weighted RMSE."""
    dtype = P.dtype
    n_rows, n_features = X.shape
    k = P.shape[1] - 1
    if view is None:
        view = build_column_view(X, dtype, groups)
    gid, lam_w, lam_v = _l2_tables(l2_reg_w, l2_reg_v, n_features)
    lam_v1 = lam_v
    lam_v = np.ascontiguousarray(np.broadcast_to(lam_v, (k, lam_v.shape[0])))
    zeros_w = np.zeros(lam_w.shape[0])
    zeros_v = np.zeros((k, lam_w.shape[0]))
    sw_k = np.ascontiguousarray(sw, dtype=dtype)
    unit_w = bool(np.all(sw_k == 1))
    target = np.ascontiguousarray(y, dtype=dtype)
    e = np.empty(n_rows, dtype=dtype)
    Q = np.empty((n_rows, k), dtype=dtype)
    sums = np.zeros((N_CHUNKS, 4))
    hist = history if history is not None else {}
    hist.setdefault("objective", [])
    hist.setdefault("train_rmse", [])

    def refresh(record):
        K.refresh_rows(X.indptr, X.indices, X.data, P, dtype.type(w0), target, target, False,
                       _NO_KEY, 0, 0, e, Q, sw_k, sums)
        s = sums.sum(axis=0)
        if not np.isfinite(s[2]):
            raise FloatingPointError(
                "als: non-finite residuals (values of X too large for the model dtype?). "
                "Scale X's values, use dtype=np.float64 or stronger l2_reg_w/l2_reg_v.")
        if record:
            hist["objective"].append(0.5 * s[2] + K.als_objective_l2(P, gid, lam_w, lam_v1))
            hist["train_rmse"].append(float(np.sqrt(s[2] / s[0])) if s[0] > 0 else np.nan)
        return s

    s = refresh(not hist["objective"])
    for it in range(max_iter):
        if it:
            s = refresh(False)
        new = float(dtype.type(K.als_w0(w0, s[0], s[1])))
        K.shift_residuals(e, new - w0)
        w0 = new
        K.update_sweep(view.seg_par, view.seg_b, view.bounds, view.cols, view.cptr,
                       view.ridx, view.cval, e, Q, sw_k, P, gid, zeros_w, lam_w, zeros_v,
                       lam_v, 1.0, False, _NO_KEY, 0, 0, 0, unit_w, view.unit_x)
        # J after the sweep, from caches rebuilt from P (no drift)
        refresh(True)
    return w0
