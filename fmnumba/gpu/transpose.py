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
n_placed] is reset by the forward kernel of the batch.
"""
import numpy as np
from numba import cuda

from ._device import TPB, blocks, data_to_device


@cuda.jit
def gather_kernel(indptr, indices, data, order, eoff, start, nb, cnt, slot, uniq,
                  nu, ent_row, ent_val, halt):
    i = cuda.grid(1)
    if i >= nb or halt[0] != 0:
        return
    r = order[start + i]
    p0 = indptr[r]
    base = eoff[start + i] - eoff[start] - p0
    for p in range(p0, indptr[r + 1]):
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
def reserve_kernel(uniq, nu, cnt, starts, lens, cursor, halt):
    a = cuda.grid(1)
    if halt[0] != 0 or a >= nu[0]:
        return
    c = cnt[uniq[a]]
    s = cuda.atomic.add(nu, 1, c)
    starts[a] = s
    lens[a] = c
    cursor[a] = s


@cuda.jit
def place_kernel(indptr, indices, data, order, eoff, start, nb, slot, cursor, seg,
                 halt):
    i = cuda.grid(1)
    if i >= nb or halt[0] != 0:
        return
    r = order[start + i]
    p0 = indptr[r]
    base = eoff[start + i] - eoff[start] - p0
    for p in range(p0, indptr[r + 1]):
        if data[p] != 0:
            pos = cuda.atomic.add(cursor, slot[indices[p]], 1)
            seg[pos] = base + p


@cuda.jit
def sort_kernel(uniq, nu, cnt, starts, lens, seg, halt):
    a = cuda.grid(1)
    if halt[0] != 0 or a >= nu[0]:
        return
    lo = starts[a]
    n = lens[a]
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
    cnt[uniq[a]] = 0


class Scratch:
    """Device scratch for the transpose of batches of up to max_nnz entries
    over n_features features (cnt all zero between batches)."""

    def __init__(self, n_features, max_nnz, dtype):
        m = max(1, max_nnz)
        self.cnt = cuda.to_device(np.zeros(max(1, n_features), np.int32))
        self.slot = cuda.device_array(max(1, n_features), np.int32)
        self.uniq = cuda.device_array(m, np.int32)
        self.starts = cuda.device_array(m, np.int32)
        self.lens = cuda.device_array(m, np.int32)
        self.cursor = cuda.device_array(m, np.int32)
        self.seg = cuda.device_array(m, np.int32)
        self.ent_row = cuda.device_array(m, np.int32)
        self.ent_val = cuda.device_array(m, dtype)
        self.nu = cuda.to_device(np.zeros(2, np.int32))
        self.max_nnz = m


def launch_transpose(dX, dorder, deoff, start, nb, sc, dhalt):
    """Kernels 1-4 for the batch order[start:start+nb] (stream-ordered)."""
    g = blocks(nb)
    u = blocks(sc.max_nnz)
    gather_kernel[g, TPB](dX[0], dX[1], dX[2], dorder, deoff, start, nb, sc.cnt,
                          sc.slot, sc.uniq, sc.nu, sc.ent_row, sc.ent_val, dhalt)
    reserve_kernel[u, TPB](sc.uniq, sc.nu, sc.cnt, sc.starts, sc.lens, sc.cursor, dhalt)
    place_kernel[g, TPB](dX[0], dX[1], dX[2], dorder, deoff, start, nb, sc.slot,
                         sc.cursor, sc.seg, dhalt)
    sort_kernel[u, TPB](sc.uniq, sc.nu, sc.cnt, sc.starts, sc.lens, sc.seg, dhalt)


def batch_offsets(indptr, order):
    """eoff (n + 1,) int64: entry offsets of the rows order[0], order[1], ...
    (eoff[stop] − eoff[start] is a batch's entry count)."""
    eoff = np.zeros(order.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.diff(indptr)[order], out=eoff[1:])
    return eoff


def transpose_batch(indptr, indices, data, rows, cnt, uniq, starts, ent_row, ent_val):
    """Same contract and output as fmnumba.cpu.transpose_batch.

    Runs the device transpose, then lays the result out on the host in the
    CPU kernel's order (features by first appearance), so outputs compare
    exactly. The training path (adam.py) uses the device layout directly.
    Returns u, the number of distinct features.
    """
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    nb = rows.shape[0]
    eoff = batch_offsets(indptr, rows)
    n_ent = int(eoff[-1])
    sc = Scratch(cnt.shape[0], n_ent, np.asarray(data).dtype)
    dX = (data_to_device(indptr), data_to_device(indices), data_to_device(data))
    dhalt = cuda.to_device(np.zeros(1, np.int32))
    if nb:
        launch_transpose(dX, cuda.to_device(rows), cuda.to_device(eoff), 0, nb, sc, dhalt)
    u = int(sc.nu.copy_to_host()[0])
    if u == 0:
        starts[0] = 0
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
    starts[0] = 0
    np.cumsum(d_lens[perm], out=starts[1:u + 1])
    pos = 0
    for a in perm:
        s, n = d_starts[a], d_lens[a]
        es = seg[s:s + n]
        ent_row[pos:pos + n] = e_row[es]
        ent_val[pos:pos + n] = e_val[es]
        pos += n
    return u
