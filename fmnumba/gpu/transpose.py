"""Per-batch transpose of CSR rows into feature-major entry lists, on the
device (twin of fmnumba/cpu/transpose.py).

Four kernels, no host round trip:

1. gather (thread per batch row): entry e (the batch's nonzeros numbered in
   batch order, e = eoff[start+i] − eoff[start] + offset in the row) gets
   ent_row[e] = i, ent_val[e] = x; for x ≠ 0, cnt[j] += 1 atomically, and
   the thread that takes cnt[j] from 0 to 1 claims a slot a for feature j
   (uniq[a] = j, slot[j] = a). Explicit zeros are skipped, as on the CPU.
2. reserve (thread per distinct feature): starts[a] = atomic offset of a
   segment of cnt[j] entries; cursor[a] = starts[a]; lens[a] = cnt[j].
3. place (thread per batch row): seg[atomic cursor[slot[j]]++] = e.
4. sort (thread per distinct feature): sorts its segment by e, i.e. into
   batch order, and resets cnt[j] to 0.

Atomics decide only *where* a feature's slot and segment live, never what a
segment holds once sorted, so every feature's gradient is summed in batch
order by the one thread group that owns it: the Adam update is deterministic
(bit-identical from run to run) without float atomics. nu = [n_distinct,
n_placed] is reset by the forward kernel of the batch. Every kernel does
nothing while _row.idle(flags) (a diverged or zero-weight batch).
"""
from collections import namedtuple

import numpy as np
from numba import cuda

from ._device import TPB, blocks, csr_to_device
from ._row import idle


@cuda.jit(device=True)
def _row_span(indptr, order, start, eoff, i):
    """Batch row i's CSR span [p0, p1) and base: base + p is the batch
    position of the entry at CSR position p."""
    r = order[start + i]
    p0 = indptr[r]
    return p0, indptr[r + 1], eoff[start + i] - eoff[start] - p0


@cuda.jit
def gather_kernel(X, batch, eoff, sc, flags):
    indptr, indices, data = X
    order, start, nb = batch
    cnt, slot, uniq, nu, ent_row, ent_val = sc.cnt, sc.slot, sc.uniq, sc.nu, sc.ent_row, \
        sc.ent_val
    i = cuda.grid(1)
    if i >= nb or idle(flags):
        return
    p0, p1, base = _row_span(indptr, order, start, eoff, i)
    for p in range(p0, p1):
        e = base + p
        x = data[p]
        ent_row[e] = i
        ent_val[e] = x
        if x != 0:
            j = indices[p]
            if cuda.atomic.add(cnt, j, 1) == 0:
                a = cuda.atomic.add(nu, 0, 1)
                uniq[a] = j
                slot[j] = a


@cuda.jit
def reserve_kernel(sc, flags):
    a = cuda.grid(1)
    if idle(flags) or a >= sc.nu[0]:
        return
    c = sc.cnt[sc.uniq[a]]
    s = cuda.atomic.add(sc.nu, 1, c)
    sc.starts[a] = s
    sc.lens[a] = c
    sc.cursor[a] = s


@cuda.jit
def place_kernel(X, batch, eoff, sc, flags):
    indptr, indices, data = X
    order, start, nb = batch
    i = cuda.grid(1)
    if i >= nb or idle(flags):
        return
    p0, p1, base = _row_span(indptr, order, start, eoff, i)
    for p in range(p0, p1):
        if data[p] != 0:
            pos = cuda.atomic.add(sc.cursor, sc.slot[indices[p]], 1)
            sc.seg[pos] = base + p


@cuda.jit
def sort_kernel(sc, flags):
    a = cuda.grid(1)
    if idle(flags) or a >= sc.nu[0]:
        return
    seg = sc.seg
    lo = sc.starts[a]
    n = sc.lens[a]
    # Shell sort (gaps 4^m·3 + 1 ... 1); segments are short except for hot
    # features, and the entries of distinct rows are distinct, so the order
    # is unique.
    gap = 1
    while gap * 3 + 1 < n:
        gap = gap * 3 + 1
    while gap >= 1:
        for u in range(lo + gap, lo + n):
            v = seg[u]
            w = u
            while w >= lo + gap and seg[w - gap] > v:
                seg[w] = seg[w - gap]
                w -= gap
            seg[w] = v
        gap //= 3
    sc.cnt[sc.uniq[a]] = 0


class Scratch(namedtuple("Scratch", "cnt slot uniq nu starts lens cursor seg ent_row ent_val")):
    """Device buffers of one transposed batch, a tuple the kernels take whole.

    cnt, slot (n_features,) int32: entries per feature (all zero between
    batches) and its slot; uniq, starts, lens (max_nnz,) int32: the distinct
    features, their segments' offsets and lengths in seg; nu = [n_distinct,
    n_placed]; cursor: the place kernel's write positions; seg: entry numbers
    grouped by feature; ent_row, ent_val: position in batch and x of entry e.
    """
    __slots__ = ()

    @classmethod
    def empty(cls, n_features, max_nnz, dtype):
        """Scratch for batches of up to max_nnz entries over n_features features."""
        m = max(1, max_nnz)
        f = max(1, n_features)
        return cls(cuda.to_device(np.zeros(f, np.int32)), cuda.device_array(f, np.int32),
                   cuda.device_array(m, np.int32), cuda.to_device(np.zeros(2, np.int32)),
                   cuda.device_array(m, np.int32), cuda.device_array(m, np.int32),
                   cuda.device_array(m, np.int32), cuda.device_array(m, np.int32),
                   cuda.device_array(m, np.int32), cuda.device_array(m, dtype))

    @classmethod
    def from_host(cls, T, n_uniq, n_features):
        """The device layout of a batch transposed by the CPU's transpose_batch
        (T = (uniq, starts, ent_row, ent_val), n_uniq distinct features)."""
        uniq, starts, ent_row, ent_val = T
        n_ent = int(starts[n_uniq])
        m = max(n_ent, 1)

        def dev(a, dtype=np.int32):
            return cuda.to_device(np.ascontiguousarray(a, dtype=dtype))
        return cls(cuda.to_device(np.zeros(max(1, n_features), np.int32)),
                   cuda.device_array(max(1, n_features), np.int32),
                   dev(uniq[:max(n_uniq, 1)]), dev([n_uniq, n_ent]),
                   dev(starts[:max(n_uniq, 1)]), dev(np.diff(starts[:n_uniq + 1])),
                   cuda.device_array(m, np.int32), dev(np.arange(m)), dev(ent_row[:m]),
                   dev(ent_val[:m], ent_val.dtype))

    @property
    def capacity(self):
        """The most entries (and distinct features) a batch may have."""
        return self.seg.shape[0]


def launch_transpose(dX, batch, deoff, sc, dflags):
    """Kernels 1-4 for batch = (device order, start, nb) (stream-ordered)."""
    g = blocks(batch[2])
    u = blocks(sc.capacity)
    gather_kernel[g, TPB](dX, batch, deoff, sc, dflags)
    reserve_kernel[u, TPB](sc, dflags)
    place_kernel[g, TPB](dX, batch, deoff, sc, dflags)
    sort_kernel[u, TPB](sc, dflags)


def batch_offsets(indptr, order):
    """eoff (n + 1,) int64: entry offsets of the rows order[0], order[1], ...
    (eoff[stop] − eoff[start] is a batch's entry count)."""
    eoff = np.zeros(order.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.diff(indptr)[order], out=eoff[1:])
    return eoff


def transpose_batch(X, rows, cnt, T):
    """Same contract and output as fmnumba.cpu.transpose_batch.

    Runs the device transpose, then lays the result out on the host in the
    CPU kernel's order (features by first appearance), so outputs compare
    exactly. The training path (adam.py) uses the device layout directly.
    Returns u, the number of distinct features.
    """
    uniq, starts, ent_row, ent_val = T
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    nb = rows.shape[0]
    eoff = batch_offsets(X[0], rows)
    sc = Scratch.empty(cnt.shape[0], int(eoff[-1]), np.asarray(X[2]).dtype)
    if nb:
        launch_transpose(csr_to_device(X), (cuda.to_device(rows), 0, nb), cuda.to_device(eoff),
                         sc, cuda.to_device(np.zeros(2, np.int32)))
    u = int(sc.nu.copy_to_host()[0])
    starts[0] = 0
    if u == 0:
        return 0
    d_uniq = sc.uniq.copy_to_host()[:u]
    d_starts = sc.starts.copy_to_host()[:u]
    d_lens = sc.lens.copy_to_host()[:u]
    seg = sc.seg.copy_to_host()
    e_row = sc.ent_row.copy_to_host()
    e_val = sc.ent_val.copy_to_host()
    first = seg[d_starts]                  # sorted segments: first entry = first appearance
    perm = np.argsort(first, kind="stable")
    uniq[:u] = d_uniq[perm]
    np.cumsum(d_lens[perm], out=starts[1:u + 1])
    pos = 0
    for a in perm:
        s, n = d_starts[a], d_lens[a]
        es = seg[s:s + n]
        ent_row[pos:pos + n] = e_row[es]
        ent_val[pos:pos + n] = e_val[es]
        pos += n
    return u
