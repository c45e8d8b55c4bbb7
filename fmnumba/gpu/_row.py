"""The per-row FM forward pass, split over a group of `lanes` threads.

Lane l of a group handles the columns col = l, l + lanes, ... of P = [w | V]:
column 0 gives the linear term, column f + 1 gives q_f = Σ_i v_if x_i (kept
in a register; written to Q when asked) and its share ½(q_f² − Σ_i v_if² x_i²).
Consecutive lanes read consecutive columns of the same P row (coalesced).
`group_sum` adds the lanes' shares in a fixed tree order through shared
memory (float64), so the result is deterministic.
"""
from numba import cuda


@cuda.jit(device=True)
def lane_share(X, P, r, lane, lanes, Q, i, consts):
    """This lane's share of Σ_i w_i x_i + ½ Σ_f (q_f² − Σ_i v_if² x_i²) for
    CSR row r of X = (indptr, indices, data); q_f goes to Q[i, f] when
    i >= 0. consts = (0, ½) in P's dtype."""
    indptr, indices, data = X
    zero, half = consts
    k = P.shape[1] - 1
    p0 = indptr[r]
    p1 = indptr[r + 1]
    acc = zero
    for col in range(lane, k + 1, lanes):
        if col == 0:
            for p in range(p0, p1):
                acc += P[indices[p], 0] * data[p]
        else:
            qf = zero
            sq = zero
            for p in range(p0, p1):
                v = P[indices[p], col] * data[p]
                qf += v
                sq += v * v
            if i >= 0:
                Q[i, col - 1] = qf
            acc += half * (qf * qf - sq)
    return acc


@cuda.jit(device=True)
def group_sum(red, tid, lane, lanes, val):
    """Sum `val` over the `lanes` threads of this group (all threads of the
    block must call it: it synchronises the block)."""
    cuda.syncthreads()
    red[tid] = val
    cuda.syncthreads()
    s = lanes // 2
    while s > 0:
        if lane < s:
            red[tid] += red[tid + s]
        cuda.syncthreads()
        s //= 2
    return red[tid - lane]


@cuda.jit(device=True)
def l2_of(lam, j):
    """L2 strength of feature j: lam is (n_features,) or (1,) shared by all."""
    return lam[0] if lam.shape[0] == 1 else lam[j]


@cuda.jit(device=True)
def idle(flags):
    """True when the rest of an epoch's launches must do nothing: a batch
    diverged (flags[0]) or the current batch takes no step (flags[1])."""
    return flags[0] != 0 or flags[1] != 0
