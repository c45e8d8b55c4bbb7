"""The worker-resident side of a distributed fit: a Dask actor that holds the
canonical partitions it was given and a replica of the parameter rows its
data touch, and runs the CPU kernels on them.

Its partitions are concatenated in global partition order, so a shard that
holds every partition sees the rows exactly as the single-machine fit does.
"""
import time

import numba
import numpy as np

from ..cpu.batch_grad import N_HEAD, batch_pieces, touch_counts
from ..cpu.forward import forward_batch


def _worker():
    from distributed import get_worker
    try:
        return get_worker()
    except ValueError:
        return None


def _fetch(keys):
    """The canonical partitions of `keys` from this worker's memory, or from
    their peers (worker to worker) when Dask moved them elsewhere."""
    w = _worker()
    out = {}
    missing = []
    for k in keys:
        if w is not None and k in w.data:
            out[k] = w.data[k]
        else:
            missing.append(k)
    if missing:
        from distributed import Future, get_client
        c = get_client()
        got = c.gather([Future(k, client=c) for k in missing])
        out.update(zip(missing, got))
    return [out[k] for k in keys]


def _concat(parts):
    """One CSR (indptr, indices, data), y and sw of the partitions in order."""
    nnz = sum(int(p["indptr"][-1]) for p in parts)
    n = sum(p["y"].shape[0] for p in parts)
    it = np.int32 if max(nnz, parts[0]["n_features"]) < 2**31 - 1 else np.int64
    indptr = np.zeros(n + 1, dtype=it)
    indices = np.empty(nnz, dtype=it)
    data = np.empty(nnz, dtype=parts[0]["data"].dtype)
    r = e = 0
    for p in parts:
        m, z = p["y"].shape[0], int(p["indptr"][-1])
        indptr[r + 1:r + m + 1] = p["indptr"][1:] + e
        indices[e:e + z] = p["indices"][:z]
        data[e:e + z] = p["data"][:z]
        r, e = r + m, e + z
    y = np.concatenate([p["y"] for p in parts])
    sw = np.concatenate([p["sw"] for p in parts])
    return indptr, indices, data, y, sw



def _forward_scratch(nb, k, dtype):
    """forward_batch's out arrays (yhat, Q, G, L) for nb rows."""
    return (np.empty(nb, dtype=dtype), np.empty((nb, k), dtype=dtype), np.empty(nb, dtype=dtype),
            np.empty(nb))

class _Data:
    """Canonical rows of one role (training or evaluation) on this shard."""

    def __init__(self, parts, scale, dtype):
        self.index = [p["index"] for p in parts]
        self.counts = np.array([p["y"].shape[0] for p in parts], dtype=np.int64)
        if parts:
            self.indptr, self.indices, self.data, y, sw = _concat(parts)
        else:
            self.indptr = np.zeros(1, np.int32)
            self.indices = np.zeros(0, np.int32)
            self.data = np.zeros(0, dtype)
            y, sw = np.zeros(0), np.zeros(0)
        self.sw64 = sw * scale  # a power of two: exact
        self.y64 = y
        self.y = y.astype(dtype)
        self.sw = self.sw64.astype(dtype)

    @property
    def n(self):
        return self.y.shape[0]


class Shard:
    """Actor: worker-resident data and parameter replica (see module doc)."""

    def __init__(self, rank, n_threads=None):
        self.rank = rank
        w = _worker()
        nt = n_threads or (w.state.nthreads if w is not None else 1)
        self.n_threads = max(1, min(int(nt), numba.config.NUMBA_NUM_THREADS))
        self.address = w.address if w is not None else None

    def _threads(self):
        numba.set_num_threads(self.n_threads)  # per thread: set in the actor's thread

    # --- loading -------------------------------------------------------
    def load(self, train_keys, eval_keys, scale, n_features, k, dtype, n_tables):
        """Take the canonical partitions (already on this worker), check that
        the replica fits the worker's memory, and allocate it. Returns the
        statistics the coordinator needs (row counts, Σ s·y, Σ s, the feature
        mask)."""
        self._threads()
        dtype = np.dtype(dtype)
        train = _fetch(train_keys)
        evals = _fetch(eval_keys)
        names = [f"X partition {p['index']}" for p in train] + \
            [f"eval_set[0] partition {p['index']}" for p in evals]
        table = n_features * (1 + k) * dtype.itemsize
        need = n_tables * table + n_features * 16
        w = _worker()
        limit = getattr(getattr(w, "memory_manager", None), "memory_limit", None) if w else None
        if limit and need > limit:
            raise MemoryError(
                f"{', '.join(names)}: the worker {self.address} holding "
                f"{'them' if len(names) > 1 else 'it'} needs {need / 2**30:.2f} GiB for the "
                f"model replica ({n_features:,} features, n_factors={k}) but its memory_limit "
                f"is {limit / 2**30:.2f} GiB. Reduce n_factors, hash or prune rare features, "
                "or give the workers more memory.")
        try:
            self.train = _Data(train, scale, dtype)
            self.evals = _Data(evals, scale, dtype)
            self.P = np.zeros((n_features, 1 + k), dtype=dtype)
            self.M = np.zeros_like(self.P) if n_tables == 3 else None
            self.S = np.zeros_like(self.P) if n_tables == 3 else None
            self.slot = np.zeros(n_features, dtype=np.int64)
            mask = np.zeros(n_features, dtype=bool)
            for d in (self.train, self.evals):
                mask[d.indices[:int(d.indptr[-1])]] = True
        except MemoryError as e:
            raise MemoryError(f"{', '.join(names)}: the worker {self.address} ran out of "
                              f"memory loading {'them' if len(names) > 1 else 'it'} ({e}). "
                              "Use smaller partitions, fewer features or more workers.") from None
        self.mask = mask
        self.k = k
        tr = self.train
        return {"rank": self.rank, "index": tr.index, "counts": tr.counts,
                "eval_index": self.evals.index, "eval_counts": self.evals.counts,
                "sum_sw": float(tr.sw64.sum()),
                "dot_sw_y": float(np.dot(tr.sw64, tr.y64)),
                "dot_sw_pos": float(np.dot(tr.sw64, tr.y64 > 0)),
                "y_min": float(tr.y64.min()) if tr.y64.size else np.inf,
                "y_max": float(tr.y64.max()) if tr.y64.size else -np.inf,
                "mask": np.packbits(mask)}

    def set_rows(self, rows, P, M=None, S=None):
        """Write parameter rows (and moments) into the replica."""
        self.P[rows] = P
        if M is not None:
            self.M[rows] = M
            self.S[rows] = S
        return True

    # --- sync mode -----------------------------------------------------
    def start_epoch(self, rng_state, bounds, batch_size):
        """Draw the epoch's global order as the single-machine fit does
        (Generator.permutation from rng_state over all rows), keep this
        shard's rows in batch order and where each batch starts. bounds: the
        global first row of every partition (partition order) and the total.
        Returns the generator's state after the draw."""
        g = np.random.Generator(getattr(np.random, rng_state["bit_generator"])())
        g.bit_generator.state = rng_state
        n = int(bounds[-1])
        order = g.permutation(n).astype(np.int64)
        part = np.searchsorted(bounds, order, side="right") - 1
        mine = np.full(len(bounds) - 1, -1, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(self.train.counts)[:-1]])
        for i, p in enumerate(self.train.index):
            mine[p] = starts[i]
        lstart = mine[part]
        pos = np.flatnonzero(lstart >= 0)
        self.rows = (order[pos] - bounds[part[pos]] + lstart[pos]).astype(np.int64)
        n_batches = -(-n // batch_size)
        self.batch_at = np.searchsorted(pos, np.arange(n_batches + 1) * batch_size)
        nb_max = int(np.diff(self.batch_at).max(initial=0))
        nnz_max = nb_max * max(1, int(np.diff(self.train.indptr).max(initial=0)))
        self.uniq = np.empty(nnz_max, dtype=self.train.indices.dtype)
        self.pieces = np.empty((nnz_max, N_HEAD + self.k), dtype=self.P.dtype)
        self.scratch = _forward_scratch(nb_max, self.k, self.P.dtype)
        self.sums = np.zeros(3)
        return g.bit_generator.state

    def step(self, b, rows, vals, w0, loss_code):
        """Apply the previous step's updated rows, then the gradient pieces of
        this shard's rows of global batch b: (features, pieces (u × (3+k)),
        [Σ s·ℓ, Σ s, Σ s·g], compute seconds)."""
        t0 = time.perf_counter()
        self._threads()
        if rows is not None and len(rows):
            self.P[rows] = vals
        d = self.train
        sel = self.rows[self.batch_at[b]:self.batch_at[b + 1]]
        nb = sel.shape[0]
        u = batch_pieces(d.indptr, d.indices, d.data, d.y, d.sw, sel, loss_code, float(w0),
                         self.P, self.slot, self.uniq, self.pieces,
                         tuple(a[:nb] for a in self.scratch), self.sums)
        return (self.uniq[:u].copy(), self.pieces[:u].copy(), self.sums.copy(),
                time.perf_counter() - t0)

    def eval_loss(self, rows, vals, w0, loss_code, chunk=65536):
        """Apply pending rows, then Σ s·ℓ and Σ s over the evaluation rows."""
        self._threads()
        if rows is not None and len(rows):
            self.P[rows] = vals
        return self._loss(self.evals, w0, loss_code, chunk)

    def _loss(self, d, w0, loss_code, chunk=65536):
        tot = 0.0
        out = _forward_scratch(min(d.n, chunk), self.k, self.P.dtype)
        for a in range(0, d.n, chunk):
            sel = np.arange(a, min(d.n, a + chunk), dtype=np.int64)
            part = tuple(o[:sel.shape[0]] for o in out)
            forward_batch((d.indptr, d.indices, d.data), d.y, d.sw, sel, loss_code, float(w0),
                          self.P, part)
            tot += float(part[3].sum())
        return tot, float(d.sw64.sum())

    # --- local mode ----------------------------------------------------
    def local_epoch(self, seed, batch_size, n_total):
        """This shard's own shuffle of its rows for one epoch, in mini-batches
        of its share of batch_size (n_rows / n_total of it, at least 1 row),
        so every shard runs about n_total / batch_size of them and one round
        of all shards covers about batch_size rows per step. Returns the
        number of mini-batches."""
        n = self.train.n
        self.lbatch = max(1, int(round(batch_size * n / n_total)))
        first = self.train.index[0] if self.train.index else -1
        self.lorder = np.random.default_rng([seed, first + 1]).permutation(n).astype(np.int64)
        return -(-n // self.lbatch)

    def local_round(self, rows, P, M, S, bstate, t, r, sync_every, cfg):
        """Apply the averaged rows, then run mini-batches r·sync_every ..
        (r+1)·sync_every − 1 of this shard's epoch order with the CPU Adam
        kernel. Returns the touched rows with their touch counts and their P,
        M, S rows, the intercept state, batches run, Σ s·ℓ, Σ s, and whether
        every batch stayed finite."""
        from ..backend import get_kernels
        t0 = time.perf_counter()
        self._threads()
        if rows is not None and len(rows):
            self.P[rows], self.M[rows], self.S[rows] = P, M, S
        bs = self.lbatch
        d = self.train
        order = self.lorder[r * sync_every * bs:(r + 1) * sync_every * bs]
        n_b = -(-order.shape[0] // bs)
        bst = np.array(bstate, dtype=np.float64)
        if n_b == 0:
            return (np.zeros(0, np.int64), np.zeros(0, np.int64), None, None, None, bst, 0,
                    0.0, 0.0, True, time.perf_counter() - t0)
        kern = get_kernels(cfg["device"])
        bl = np.zeros(n_b)
        bw = np.zeros(n_b)
        cnt = self.slot
        _, done = kern.adam_epoch((d.indptr, d.indices, d.data), d.y, d.sw, order, bs,
                                  cfg["loss_code"], (self.P, self.M, self.S), bst, int(t),
                                  (cfg["lr"], cfg["beta1"], cfg["beta2"], cfg["eps"],
                                   cfg["decoupled"]), (cfg["lam_w"], cfg["lam_v"]), (bl, bw))
        counts = np.zeros(self.P.shape[0], dtype=np.int64)
        touch_counts(d.indptr, d.indices, d.data, order[:done * bs], bs, cnt, counts)
        touched = np.flatnonzero(counts)
        ok = done == n_b and bool(np.isfinite(self.P[touched]).all())
        return (touched, counts[touched], self.P[touched], self.M[touched], self.S[touched],
                bst, int(done), float(bl[:done].sum()), float(bw[:done].sum()), ok,
                time.perf_counter() - t0)
