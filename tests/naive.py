"""Dense pure-NumPy reference for every fmnumba kernel, written for clarity.

Everything here computes in float64 on dense arrays, whatever the dtype of
the inputs, and follows the model of DESIGN.md §1 literally:

    ŷ(x) = w0 + Σ_i w_i x_i + Σ_{i<j} <v_i, v_j> x_i x_j

Parameters use the kernels' layout: P (n_features × (1 + k)) with column 0
the linear weights w and columns 1..k the factors V. Nothing here imports
fmnumba: the reference must not share code (or bugs) with what it checks.

Conventions shared with the kernels' docstrings (and nothing more):

* Loss codes: 0 squared, 1 logistic, 2 hinge; classification targets ±1.
  The hinge derivative at the kink y·ŷ = 1 is taken as 0 (subgradient).
* "Touched" feature of a batch: a column j with some x_rj ≠ 0 in the batch
  (explicit zeros and duplicates that cancel do not touch).
* Lazy Adam (fmnumba/cpu/adam.py): one global step counter t, +1 per batch;
  only touched rows of P and of the moments M, S change; w0 is an
  unregularised scalar updated by plain Adam every batch.
* Sequential SGD (fmnumba/cpu/sgd.py with n_chunks = 1): per-sample updates
  in the given order, q taken before the sample's update.
"""
import numpy as np

SQUARED, LOGISTIC, HINGE = 0, 1, 2


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------
def csr_to_dense(indptr, indices, data, n_features):
    """Dense float64 (n_rows × n_features) matrix of raw CSR arrays.

    Works on non-canonical CSR too: duplicate (row, column) entries are
    summed, explicit zeros add nothing, order within a row is irrelevant.
    """
    indptr = np.asarray(indptr)
    n_rows = indptr.shape[0] - 1
    X = np.zeros((n_rows, n_features), dtype=np.float64)
    for r in range(n_rows):
        for p in range(int(indptr[r]), int(indptr[r + 1])):
            X[r, int(indices[p])] += float(data[p])
    return X


def split_P(P):
    """(w, V) as float64 copies of the table P = [w | V]."""
    P = np.asarray(P, dtype=np.float64)
    return P[:, 0].copy(), P[:, 1:].copy()


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------
def predict_pairwise(X, w0, P):
    """ŷ (n,) by the definition: w0 + Σ_i w_i x_i + Σ_{i<j} <v_i,v_j> x_i x_j.

    O(n·p²·k) on purpose: no algebraic identity is used.
    """
    X = np.asarray(X, dtype=np.float64)
    w, V = split_P(P)
    n, p = X.shape
    out = np.empty(n, dtype=np.float64)
    for r in range(n):
        x = X[r]
        total = float(w0)
        for i in range(p):
            total += w[i] * x[i]
        for i in range(p):
            for j in range(i + 1, p):
                total += float(np.dot(V[i], V[j])) * x[i] * x[j]
        out[r] = total
    return out


def factor_sums(X, P):
    """q (n × k): q_rf = Σ_i v_if x_ri."""
    X = np.asarray(X, dtype=np.float64)
    _, V = split_P(P)
    return X @ V


def predict_identity(X, w0, P):
    """ŷ (n,) by the O(nk) identity ½ Σ_f [q_f² − Σ_i v_if² x_i²] (DESIGN §1)."""
    X = np.asarray(X, dtype=np.float64)
    w, V = split_P(P)
    q = X @ V
    sq = (X ** 2) @ (V ** 2)
    return float(w0) + X @ w + 0.5 * (q ** 2 - sq).sum(axis=1)


def grad_yhat(X, P):
    """Per-row gradient of ŷ: (d_w0 (n,), d_w (n × p), d_V (n × p × k)).

    d_w0 = 1, d_w[r, i] = x_ri, d_V[r, i, f] = x_ri Σ_{j≠i} v_jf x_rj (the
    pairwise form, which equals x_i q_f − v_if x_i²).
    """
    X = np.asarray(X, dtype=np.float64)
    _, V = split_P(P)
    n, p = X.shape
    k = V.shape[1]
    dV = np.zeros((n, p, k))
    for r in range(n):
        for i in range(p):
            for j in range(p):
                if j != i:
                    dV[r, i] += V[j] * X[r, j]
            dV[r, i] *= X[r, i]
    return np.ones(n), X.copy(), dV


def grad_yhat_identity(X, P):
    """d_V by the identity form x_i q_f − v_if x_i² (n × p × k)."""
    X = np.asarray(X, dtype=np.float64)
    _, V = split_P(P)
    q = X @ V
    return X[:, :, None] * q[:, None, :] - V[None, :, :] * (X ** 2)[:, :, None]


# --------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------
def _sigmoid(u):
    """σ(u) evaluated so that exp never overflows (u may be ±inf)."""
    u = np.asarray(u, dtype=np.float64)
    out = np.empty_like(u)
    pos = u >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-u[pos]))
    e = np.exp(u[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def loss(code, yhat, y):
    """ℓ(ŷ, y) elementwise (float64).

    squared ½(ŷ−y)²; logistic log(1 + e^(−yŷ)) = logaddexp(0, −yŷ);
    hinge max(0, 1 − yŷ).
    """
    yhat = np.asarray(yhat, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if code == SQUARED:
        return 0.5 * (yhat - y) ** 2
    z = y * yhat
    if code == LOGISTIC:
        return np.logaddexp(0.0, -z)
    if code == HINGE:
        return np.maximum(0.0, 1.0 - z)
    raise ValueError(code)


def loss_grad(code, yhat, y):
    """g = ∂ℓ/∂ŷ elementwise (float64).

    squared ŷ − y; logistic −y·σ(−yŷ) (stable: → 0 or −y when saturated);
    hinge −y where yŷ < 1, else 0.
    """
    yhat = np.asarray(yhat, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if code == SQUARED:
        return yhat - y
    z = y * yhat
    if code == LOGISTIC:
        return -y * _sigmoid(-z)
    if code == HINGE:
        return np.where(z < 1.0, -y, 0.0)
    raise ValueError(code)


def per_feature(lam, p):
    """L2 strengths as a (p,) float64 array; the kernels also accept one
    value shared by all features as a (1,) array."""
    return np.broadcast_to(np.asarray(lam, np.float64), (p,))


def per_parameter(lam_w, lam_v, shape):
    """The strength of every entry of P (shape p × (1 + k)): λ_w[j] for w_j,
    λ_v[j] for each v_jf."""
    p, cols = shape
    return np.column_stack([per_feature(lam_w, p)] + [per_feature(lam_v, p)] * (cols - 1))


# --------------------------------------------------------------------------
# batch objective of adam.py
# --------------------------------------------------------------------------
def batch_objective(X, y, s, w0, P, code, lam_w, lam_v):
    """J = Σ_r s_r [ℓ(ŷ_r, y_r) + ½ Σ_{j: x_rj≠0} (λ_w[j] w_j² + λ_v[j] ‖v_j‖²)] / Σ_r s_r

    over the rows of the (batch) matrix X: L2 is charged once per occurrence
    of a feature in a row and weighted by that row's sample weight.
    """
    X = np.asarray(X, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    w, V = split_P(P)
    yhat = predict_pairwise(X, w0, P)
    reg_j = 0.5 * (per_feature(lam_w, P.shape[0]) * w ** 2
                   + per_feature(lam_v, P.shape[0]) * (V ** 2).sum(axis=1))
    touched = X != 0
    per_row = loss(code, yhat, y) + touched.astype(np.float64) @ reg_j
    return float(np.dot(s, per_row) / s.sum())


def batch_objective_grad(X, y, s, w0, P, code, lam_w, lam_v):
    """Exact gradient of batch_objective: (dJ/dw0, dJ/dP (p × (1 + k))).

    dJ/dw0 = Σ s_r g_r / Σ s
    dJ/dw_j = Σ_r s_r (g_r x_rj + λ_w[j] w_j [x_rj≠0]) / Σ s
    dJ/dv_jf = Σ_r s_r (g_r ∂ŷ_r/∂v_jf + λ_v[j] v_jf [x_rj≠0]) / Σ s
    Rows j never touched get exactly zero.
    """
    X = np.asarray(X, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    w, V = split_P(P)
    yhat = predict_pairwise(X, w0, P)
    g = loss_grad(code, yhat, y)
    _, dw, dV = grad_yhat(X, P)
    touched = (X != 0).astype(np.float64)
    occ = s @ touched  # Σ_r s_r [x_rj ≠ 0]
    sg = s * g
    tot = s.sum()
    gw0 = sg.sum() / tot
    gP = np.zeros(P.shape, dtype=np.float64)
    gP[:, 0] = (sg @ dw + per_feature(lam_w, P.shape[0]) * w * occ) / tot
    gP[:, 1:] = (np.einsum("r,rjf->jf", sg, dV)
                 + per_feature(lam_v, P.shape[0])[:, None] * V * occ[:, None]) / tot
    return gw0, gP


# --------------------------------------------------------------------------
# lazy Adam
# --------------------------------------------------------------------------
class AdamState:
    """Float64 copy of everything lazy Adam carries between batches."""

    def __init__(self, P, M, S, bstate, t):
        self.P = np.array(P, dtype=np.float64)
        self.M = np.array(M, dtype=np.float64)
        self.S = np.array(S, dtype=np.float64)
        self.w0, self.m0, self.s0 = (float(v) for v in bstate)
        self.t = int(t)


def adam_moments(M, S, grad, beta1, beta2):
    """Adam moment update: (β1 M + (1−β1) g, β2 S + (1−β2) g²)."""
    return beta1 * M + (1.0 - beta1) * grad, beta2 * S + (1.0 - beta2) * grad ** 2


def adam_param_step(p, m, s, t, lr, beta1, beta2, eps):
    """Bias-corrected Adam step: p − lr · (m / (1−β1^t)) / (√(s / (1−β2^t)) + ε)."""
    mhat = m / (1.0 - beta1 ** t)
    shat = s / (1.0 - beta2 ** t)
    return p - lr * mhat / (np.sqrt(shat) + eps)


def adam_step(st, Xb, yb, sb, code, lr, beta1, beta2, eps, lam_w, lam_v, decoupled=False):
    """One lazy Adam step on the batch (Xb, yb, sb), in place on st.

    t ← t + 1; g = gradient of batch_objective at the current parameters;
    for every touched row j (some x_rj ≠ 0 in the batch) M_j, S_j and P_j
    get the Adam update with bias corrections from the global t; all other
    rows of P, M, S are left exactly as they are. w0 always gets the Adam
    update (with its own scalar moments m0, s0).

    decoupled (AdamW): g is the gradient of the data term alone, and each
    touched row then also moves by −lr·λ·p (λ_w for w_j, λ_v for v_j, p the
    value before the step), once per batch whatever its number of entries.
    """
    zero = np.zeros(1)
    gw0, gP = batch_objective_grad(Xb, yb, sb, st.w0, st.P, code,
                                   zero if decoupled else lam_w, zero if decoupled else lam_v)
    touched = (np.asarray(Xb) != 0).any(axis=0)
    st.t += 1
    M, S = adam_moments(st.M[touched], st.S[touched], gP[touched], beta1, beta2)
    st.M[touched] = M
    st.S[touched] = S
    p_old = st.P[touched]
    p_new = adam_param_step(p_old, M, S, st.t, lr, beta1, beta2, eps)
    if decoupled:
        p_new = p_new - lr * per_parameter(lam_w, lam_v, st.P.shape)[touched] * p_old
    st.P[touched] = p_new
    st.m0, st.s0 = adam_moments(st.m0, st.s0, gw0, beta1, beta2)
    st.w0 = float(adam_param_step(st.w0, st.m0, st.s0, st.t, lr, beta1, beta2, eps))
    return st


def adam_epoch(st, X, y, s, order, batch_size, code, lr, beta1, beta2, eps,
               lam_w, lam_v, decoupled=False):
    """One epoch of lazy Adam: batches order[b·bs : (b+1)·bs] in turn.

    For each batch, first the batch loss Σ s·ℓ and weight Σ s are recorded
    (at the parameters before its update); if the loss or Σ s·g is not finite
    the epoch stops before updating. A batch whose weights are all zero is
    counted as done but makes no step (t unchanged, nothing updated).
    Returns (t, done, batch_loss, batch_weight) with one entry per batch
    started.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    order = np.asarray(order)
    losses, weights = [], []
    done = 0
    for start in range(0, order.shape[0], batch_size):
        rows = order[start:start + batch_size]
        Xb, yb, sb = X[rows], y[rows], s[rows]
        yhat = predict_pairwise(Xb, st.w0, st.P)
        lsum = float(np.dot(sb, loss(code, yhat, yb)))
        gsum = float(np.dot(sb, loss_grad(code, yhat, yb)))
        losses.append(lsum)
        weights.append(float(sb.sum()))
        if not (np.isfinite(lsum) and np.isfinite(gsum)):
            break
        if sb.sum() <= 0:
            # a batch of zero-weight rows carries no objective: no step at all
            # (t unchanged), as if its rows had been removed
            done += 1
            continue
        adam_step(st, Xb, yb, sb, code, lr, beta1, beta2, eps, lam_w, lam_v, decoupled)
        done += 1
    return st.t, done, np.array(losses), np.array(weights)


# --------------------------------------------------------------------------
# sequential SGD
# --------------------------------------------------------------------------
def sgd_step(X_row, y_r, s_r, w0, P, code, lr, lam_w, lam_v):
    """One SGD update on one row (in place on the float64 table P).

    g = s·∂ℓ/∂ŷ at the current parameters; w0 −= lr·g; for each j with
    x_j ≠ 0: w_j −= lr (g x_j + λ_w[j] w_j) and v_jf −= lr (g ∂ŷ/∂v_jf +
    λ_v[j] v_jf), all gradients taken before the update (L2 is not weighted
    by s here, as sgd.py's docstring states). Returns (new w0, s·ℓ); when s·ℓ
    is not finite nothing is updated.
    """
    x = np.asarray(X_row, dtype=np.float64)[None, :]
    yhat = predict_pairwise(x, w0, P)
    ell = float(s_r * loss(code, yhat, [y_r])[0])
    if not np.isfinite(ell):
        return w0, ell
    g = float(s_r * loss_grad(code, yhat, [y_r])[0])
    _, dw, dV = grad_yhat(x, P)
    nz = x[0] != 0
    w, V = split_P(P)
    lam_w = per_feature(lam_w, P.shape[0])
    lam_v = per_feature(lam_v, P.shape[0])
    P[nz, 0] = w[nz] - lr * (g * dw[0, nz] + lam_w[nz] * w[nz])
    P[nz, 1:] = V[nz] - lr * (g * dV[0, nz] + lam_v[nz, None] * V[nz])
    return w0 - lr * g, ell


def sgd_epoch(X, y, s, order, w0, P, code, lr, lam_w, lam_v):
    """Sequential SGD over rows in `order` (sgd_epoch with n_chunks = 1).

    P is updated in place (float64); returns (w0, L) with L[pos] = s·ℓ of
    row order[pos] measured before its update.
    """
    X = np.asarray(X, dtype=np.float64)
    L = np.empty(len(order))
    for pos, r in enumerate(order):
        w0, L[pos] = sgd_step(X[r], float(y[r]), float(s[r]), w0, P, code, lr,
                              lam_w, lam_v)
    return w0, L


# --------------------------------------------------------------------------
# transpose
# --------------------------------------------------------------------------
def transpose_batch(indptr, indices, data, rows):
    """Feature-major entry lists of the batch's nonzero stored entries.

    Returns (uniq, groups): uniq lists the distinct features with a stored
    nonzero value in first-appearance order (rows in batch order, entries in
    storage order); groups[a] is the list of (position in batch, value) of
    uniq[a]'s stored nonzero entries, in that same order. Stored zeros are
    skipped.
    """
    uniq, groups = [], {}
    for i, r in enumerate(rows):
        for p in range(int(indptr[r]), int(indptr[r + 1])):
            if data[p] != 0:
                j = int(indices[p])
                if j not in groups:
                    uniq.append(j)
                    groups[j] = []
                groups[j].append((i, float(data[p])))
    return uniq, [groups[j] for j in uniq]


# --------------------------------------------------------------------------
# recommend
# --------------------------------------------------------------------------
def recommend_top_n(XU, XI, w0, P, skip, n):
    """Top-n items per user by brute force: every pair's row XU[u] + XI[i]
    (dense) scored by predict_pairwise; skip (n_users, n_items) bool marks
    pairs left out. Returns (all scores (n_users, n_items), chosen
    (n_users, n) item positions best first, ties lower position first)."""
    XU, XI = np.asarray(XU, dtype=np.float64), np.asarray(XI, dtype=np.float64)
    n_users, n_items = XU.shape[0], XI.shape[0]
    S = np.empty((n_users, n_items))
    for u in range(n_users):
        S[u] = predict_pairwise(XU[u][None, :] + XI, w0, P)
    chosen = np.empty((n_users, n), dtype=np.int64)
    for u in range(n_users):
        cand = [i for i in range(n_items) if not skip[u, i]]
        cand.sort(key=lambda i: (-S[u, i], i))
        chosen[u] = cand[:n]
    return S, chosen


# --------------------------------------------------------------------------
# Gibbs sampling (MCMC) and ALS: coordinate updates, dense
# --------------------------------------------------------------------------
# Any single parameter θ enters ŷ linearly: ŷ = g + θ h, with g = ŷ at θ = 0
# and h = ŷ(θ = 1) − ŷ(θ = 0). Its conditional posterior under the prior
# N(μ, 1/λ) and Gaussian noise of precision α·s_r is N(mean, 1/prec) with
#     prec = α Σ s h² + λ,   mean = (α Σ s h (t − g) + μ λ) / prec,
# and with α = 1, μ = 0 its mean is the exact minimiser of
# ½ Σ s (t − ŷ)² + ½ λ θ² (ALS). Sweep order (fmnumba/cpu/_columns.py):
# w0, then for each column j in `order`: w_j, v_j1, ..., v_jk.

def coordinate_gh(X, w0, P, c, j):
    """(g, h) of parameter P[j, c] (c = 0: w_j, c = f + 1: v_jf); j = -1: w0.

    h = ∂ŷ/∂θ from its dense definition (x_j, or x_j (q_f − v_jf x_j) with
    q = X V), g = ŷ − θ h: taking h as a difference of two predictions
    would cancel catastrophically for tiny x.
    """
    X = np.asarray(X, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    yhat = predict_identity(X, w0, P)
    if j < 0:
        return yhat - float(w0), np.ones(X.shape[0])
    x = X[:, j]
    if c == 0:
        h = x.copy()
    else:
        q = X @ P[:, c]
        h = x * (q - P[j, c] * x)
    return yhat - P[j, c] * h, h


def coordinate_step(X, t, s, w0, P, c, j, alpha, mu, lam, z=0.0):
    """New value of P[j, c] (or w0 for j = -1): mean + z / √prec."""
    g, h = coordinate_gh(X, w0, P, c, j)
    s = np.asarray(s, dtype=np.float64)
    prec = alpha * np.dot(s, h * h) + lam
    if prec <= 0:
        return float(w0) if j < 0 else float(P[j, c])
    mean = (alpha * np.dot(s, h * (np.asarray(t, dtype=np.float64) - g)) + mu * lam) / prec
    return float(mean + z / np.sqrt(prec))


def gibbs_sweep(X, t, s, w0, P, order, alpha, lam0, mu_w, lam_w, mu_v, lam_v, gid, normal):
    """One Gibbs sweep with fixed hyperparameters; returns (w0, P) float64.

    mu_w, lam_w (G,); mu_v, lam_v (k, G); gid (p,) groups; normal(c, j)
    gives the standard normal draw of parameter (c, j) (c = -1: w0).
    """
    P = np.array(P, dtype=np.float64)
    k = P.shape[1] - 1
    w0 = coordinate_step(X, t, s, w0, P, 0, -1, alpha, 0.0, lam0, normal(-1, 0))
    for j in order:
        g = gid[j]
        P[j, 0] = coordinate_step(X, t, s, w0, P, 0, j, alpha, mu_w[g], lam_w[g], normal(0, j))
        for f in range(k):
            P[j, f + 1] = coordinate_step(X, t, s, w0, P, f + 1, j, alpha, mu_v[f, g],
                                          lam_v[f, g], normal(f + 1, j))
    return w0, P


def als_sweep(X, y, s, w0, P, order, lam_w, lam_v):
    """One ALS sweep: w0 (unregularised), then w_j, v_j1..v_jk per column j
    of order, each set to its exact minimiser; lam_w, lam_v (p,)."""
    P = np.array(P, dtype=np.float64)
    k = P.shape[1] - 1
    w0 = coordinate_step(X, y, s, w0, P, 0, -1, 1.0, 0.0, 0.0)
    for j in order:
        P[j, 0] = coordinate_step(X, y, s, w0, P, 0, j, 1.0, 0.0, lam_w[j])
        for f in range(k):
            P[j, f + 1] = coordinate_step(X, y, s, w0, P, f + 1, j, 1.0, 0.0, lam_v[j])
    return w0, P


def als_objective(X, y, s, w0, P, lam_w, lam_v):
    """½ Σ s (y − ŷ)² + ½ Σ λ_w w² + ½ Σ λ_v ||v_j||² (lam_w, lam_v (p,))."""
    w, V = split_P(P)
    e = np.asarray(y, dtype=np.float64) - predict_identity(X, w0, P)
    return 0.5 * (np.dot(np.asarray(s, dtype=np.float64), e * e) + np.dot(lam_w, w * w)
                  + np.dot(lam_v, (V * V).sum(axis=1)))


def blr_posterior(X, y, s, alpha, lam0, mu_w, lam_w):
    """Closed-form posterior N(mean, cov) of (w0, w) for Bayesian linear
    regression y ~ N(w0 + X w, 1/(α s)), w0 ~ N(0, 1/λ0), w_j ~ N(μ_j, 1/λ_j).
    mu_w, lam_w (p,); returns mean (1 + p,), cov (1 + p, 1 + p)."""
    X = np.asarray(X, dtype=np.float64)
    Z = np.column_stack([np.ones(X.shape[0]), X])
    s = np.asarray(s, dtype=np.float64)
    prior_prec = np.concatenate([[lam0], lam_w])
    prior_mean = np.concatenate([[0.0], mu_w])
    A = alpha * (Z.T * s) @ Z + np.diag(prior_prec)
    b = alpha * (Z.T * s) @ np.asarray(y, dtype=np.float64) + prior_prec * prior_mean
    cov = np.linalg.inv(A)
    return cov @ b, cov


def normal_gamma_conditionals(theta, mu, mu0, gamma0, a_lam, b_lam):
    """Conditionals of a group's hyperparameters given its n parameters θ:
    λ | μ ~ Gamma(shape, rate) and, for that λ, μ | λ ~ N(m, 1/(c λ)).
    Returns (shape, rate, m, c)."""
    theta = np.asarray(theta, dtype=np.float64)
    n = theta.shape[0]
    shape = a_lam + 0.5 * (n + 1)
    rate = b_lam + 0.5 * (gamma0 * (mu - mu0) ** 2 + np.sum((theta - mu) ** 2))
    return shape, rate, (gamma0 * mu0 + theta.sum()) / (n + gamma0), n + gamma0


def truncated_normal_moments(mean, positive):
    """Mean and variance of N(mean, 1) truncated to (0, ∞) (positive) or
    (−∞, 0): the probit latent target's conditional."""
    from math import erfc, exp, pi, sqrt
    m = mean if positive else -mean
    phi = exp(-0.5 * m * m) / sqrt(2 * pi)
    Phi = 0.5 * erfc(-m / sqrt(2))
    lam = phi / Phi
    mu_t = m + lam
    var = 1.0 - lam * (m + lam)
    return (mu_t if positive else -mu_t), var
