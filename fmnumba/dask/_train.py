"""The coordinator of a distributed fit (runs in the client's process).

It holds the master parameters P, the Adam moments M, S, the intercept state
and the global step count: everything needed to resume, updated only when a
synchronisation has completed on every shard. Shards (Dask actors, one per
worker holding partitions) keep the data and a replica of the rows they use.

* sync: per global mini-batch, every shard returns the gradient pieces of its
  rows (fmnumba.cpu.batch_grad); the coordinator sums them in shard order and
  applies one lazy Adam step; the updated rows ride to the shards that use
  them with the next step's request.
* local: every shard runs sync_every mini-batches of its own rows with the
  CPU Adam kernel; the rows each touched (P, M, S) are averaged, weighted by
  how many of its mini-batches touched them, and redistributed.

A lost worker (its actor unreachable) rolls back to the last completed
synchronisation: Dask recomputes the lost partitions on the surviving
workers, the shards are rebuilt from the master state, and the epoch goes on
from the mini-batch (sync) or round (local) that failed.
"""
import time

import numpy as np

from ..cpu.batch_grad import N_HEAD, adam_apply
from ._inputs import canonical_partition
from ._shard import Shard


class WorkerLostError(RuntimeError):
    """Training could not continue after losing workers; the estimator holds
    the parameters of the last completed synchronisation."""


def _stats(part):
    return part["y"].shape[0], float(part["sw"].max(initial=0.0))


def _raise_first_error(futs, role, index=None):
    """Raise the error of the first failed partition, naming it when the
    failure came from upstream of the canonicalisation (the reader, the user's
    graph), where the partition is not yet known."""
    for i, f in zip(index or range(len(futs)), futs):
        if f.status != "error":
            continue
        exc = f.exception()
        name = f"{role} partition {i}"
        if str(exc).startswith(name) or " partition " in str(exc).split(":")[0]:
            raise exc
        if isinstance(exc, MemoryError):
            raise MemoryError(f"{name}: the worker ran out of memory producing it ({exc}). "
                              "Use smaller partitions (more, smaller chunks) or workers with "
                              "more memory.") from exc
        try:
            wrapped = type(exc)(f"{name}: {exc}")
        except Exception:  # an exception type with another constructor
            raise exc from None
        raise wrapped from exc


def _worker_addresses(dask_scheduler):
    return list(dask_scheduler.workers)


def _unpack(mask_bits, n):
    return np.unpackbits(mask_bits, count=n).astype(bool)


class Coordinator:
    """One distributed fit: canonical partitions, shards, master state."""

    def __init__(self, client, train_blocks, eval_blocks, spec, eval_spec, k, mode,
                 max_retries=3, on_step=None):
        self.client = client
        self.spec = spec
        self.k = k
        self.mode = mode
        self.n_features = spec.n_features
        self.dtype = np.dtype(spec.dtype)
        self.max_retries = max_retries
        self.on_step = on_step
        self.stats = {"steps": 0, "step_wall_s": 0.0, "worker_s": 0.0, "coord_s": 0.0,
                      "bytes_sent": 0, "bytes_received": 0, "recoveries": 0}
        self._canonicalise(train_blocks, eval_blocks, eval_spec)

    # --- data ----------------------------------------------------------
    def _canonicalise(self, train_blocks, eval_blocks, eval_spec):
        from distributed import wait
        self._blocks = (train_blocks, eval_blocks)
        self._specs = (self.spec, eval_spec)
        self.parts = self._place(train_blocks, self.spec)
        self.eparts = self._place(eval_blocks, eval_spec)
        wait(self.parts + self.eparts)
        _raise_first_error(self.parts, "X")
        _raise_first_error(self.eparts, "eval_set[0]")
        st = self.client.gather(self.client.map(_stats, self.parts, pure=False))
        self.counts = np.array([s[0] for s in st], dtype=np.int64)
        self.bounds = np.concatenate([[0], np.cumsum(self.counts)])
        self.n_rows = int(self.bounds[-1])
        if self.n_rows == 0:
            raise ValueError("sample_weight: every weight is zero; at least one row needs a "
                             "positive weight.")
        top = max(s[1] for s in st)
        # as the single-machine fit: a power of two keeps Σ s in float32's range
        self.scale = 1.0 if 2.0 ** -20 <= top <= 2.0 ** 20 else 2.0 ** -np.floor(np.log2(top))

    def _place(self, blocks, spec, which=None):
        """Futures of the canonical partitions `which` (default all). A
        partition whose X block is already in a worker's memory is
        canonicalised there; the others are spread over the workers in
        contiguous runs. Placement is strict (no work stealing), so a shard
        can be planned per worker; a lost partition is placed anew."""
        import dask
        if not blocks:
            return []
        which = range(len(blocks)) if which is None else which
        keys = [blocks[i][0].key for i in which]

        def where(dask_scheduler, keys):
            out = {}
            for k in keys:
                ts = dask_scheduler.tasks.get(k)
                out[k] = sorted(w.address for w in (ts.who_has or ())) if ts is not None else []
            return out

        held = self.client.run_on_scheduler(where, keys=keys)
        workers = self._live_workers()
        futs = []
        for key, i in zip(keys, which):
            x, y, sw = blocks[i]
            w = [a for a in held[key] if a in workers] or \
                [workers[i * len(workers) // len(blocks)]]
            # only this task is pinned: its inputs can be recomputed anywhere
            with dask.annotate(workers=w[:1], allow_other_workers=False):
                task = dask.delayed(canonical_partition, pure=False)(x, y, sw, i, spec)
            futs.append(self.client.compute(task, optimize_graph=False))
        return futs

    def _live_workers(self):
        """The scheduler's current workers (asked, not the client's cache)."""
        return sorted(self.client.run_on_scheduler(_worker_addresses))

    def _replace_lost(self):
        """Canonicalise again, on live workers, the partitions whose only
        copies were on a lost worker."""
        from distributed import wait
        for attr, blocks, spec in (("parts", self._blocks[0], self._specs[0]),
                                   ("eparts", self._blocks[1], self._specs[1])):
            futs = getattr(self, attr)
            who = self.client.who_has(futs)
            lost = [i for i, f in enumerate(futs) if f.status != "finished" or not who[f.key]]
            if lost:
                new = self._place(blocks, spec, lost)
                for i, f in zip(lost, new):
                    futs[i] = f
                wait(new)
                _raise_first_error(new, "X" if attr == "parts" else "eval_set[0]", lost)

    def _assign(self):
        """Group the partitions by the worker that holds them: [(address,
        train keys, eval keys)] in order of each worker's first partition."""
        who = self.client.who_has(self.parts + self.eparts)
        groups = {}
        for f in self.parts:
            addr = sorted(who[f.key])[0]
            groups.setdefault(addr, ([], []))[0].append(f.key)
        for f in self.eparts:
            holders = sorted(who[f.key])
            addr = next((a for a in holders if a in groups), holders[0])
            groups.setdefault(addr, ([], []))[1].append(f.key)
        order = {f.key: i for i, f in enumerate(self.parts)}
        return sorted(((a, t, e) for a, (t, e) in groups.items()),
                      key=lambda g: min((order[k] for k in g[1]), default=len(order)))

    def build(self):
        """Start one shard per worker holding partitions and load them.
        Returns the summed load statistics (for the initial intercept)."""
        from distributed import wait
        wait(self.parts + self.eparts)
        groups = self._assign()
        futs = [self.client.submit(Shard, rank, actor=True, workers=[addr],
                                   allow_other_workers=False, pure=False)
                for rank, (addr, _, _) in enumerate(groups)]
        self._actor_futs = futs
        self.shards = [f.result(timeout=60) for f in futs]
        n_tables = 3 if self.mode == "local" else 1
        calls = [sh.load(t, e, self.scale, self.n_features, self.k, self.dtype.str, n_tables)
                 for sh, (_, t, e) in zip(self.shards, groups)]
        loaded = [c.result() for c in calls]
        self.masks = [_unpack(d["mask"], self.n_features) for d in loaded]
        self.addresses = [a for a, _, _ in groups]
        self.pending = [None] * len(self.shards)
        return {"sum_sw": sum(d["sum_sw"] for d in loaded),
                "dot_sw_y": sum(d["dot_sw_y"] for d in loaded),
                "dot_sw_pos": sum(d["dot_sw_pos"] for d in loaded),
                "y_min": min(d["y_min"] for d in loaded),
                "y_max": max(d["y_max"] for d in loaded)}

    def push_state(self, state):
        """Copy the master rows each shard uses into its replica."""
        calls = []
        for sh, mask in zip(self.shards, self.masks):
            rows = np.flatnonzero(mask)
            if self.mode == "local":
                calls.append(sh.set_rows(rows, state.P[rows], state.M[rows], state.S[rows]))
            else:
                calls.append(sh.set_rows(rows, state.P[rows]))
        for c in calls:
            c.result()
        self.pending = [None] * len(self.shards)

    def close(self):
        self.shards = []
        self._actor_futs = []
        self.parts = []
        self.eparts = []

    # --- one epoch, resumable --------------------------------------------
    def run_epoch(self, state, cfg, lr, rng, epoch_seed_rng):
        """One epoch; on a lost worker, rebuild and resume from the last
        synchronisation. Returns (Σ s·ℓ, Σ s, finite)."""
        progress = {"b": 0, "lsum": 0.0, "wsum": 0.0}
        rng_state = rng.bit_generator.state
        seed = int(epoch_seed_rng.integers(0, 2**31 - 1)) if self.mode == "local" else None
        retries = 0
        while True:
            try:
                if self.mode == "sync":
                    out = self._sync_epoch(state, cfg, lr, rng, rng_state, progress)
                else:
                    out = self._local_epoch(state, cfg, lr, seed, progress)
                return out
            except OSError as exc:  # an actor's worker is unreachable
                retries += 1
                self.stats["recoveries"] += 1
                if retries > self.max_retries:
                    raise WorkerLostError(
                        f"lost workers {retries} times in one epoch ({exc}); training "
                        "stopped. The estimator holds the parameters of the last completed "
                        "synchronisation (fit again, or with warm_start=True, once the "
                        "cluster is healthy).") from exc
                self._recover(state)

    def _recover(self, state):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the scheduler has removed the lost worker
            live = set(self._live_workers())
            if not set(self.addresses) <= live:
                break
            time.sleep(0.2)
        last = None
        for _ in range(20):
            try:
                self._replace_lost()
                self.build()
                self.push_state(state)
                return
            except (OSError, TimeoutError) as exc:
                last = exc
                time.sleep(0.5)
        raise WorkerLostError(f"could not rebuild the shards after losing a worker ({last}); "
                              "the estimator holds the parameters of the last completed "
                              "synchronisation.") from last

    # --- sync ----------------------------------------------------------
    def _sync_epoch(self, state, cfg, lr, rng, rng_state, progress):
        bs = cfg.batch_size
        n_b = -(-self.n_rows // bs)
        calls = [sh.start_epoch(rng_state, self.bounds, bs) for sh in self.shards]
        after = [c.result() for c in calls][0]
        code = cfg.loss_code
        lam_w, lam_v = cfg.l2_reg_w, cfg.l2_reg_v
        decoupled = cfg.solver == "adamw"
        st = self.stats
        for b in range(progress["b"], n_b):
            t0 = time.perf_counter()
            w0 = float(state.bias_state[0])
            futs = [sh.step(b, *(self.pending[i] or (None, None)), w0, code, separate_thread=False)
                    for i, sh in enumerate(self.shards)]
            res = [f.result() for f in futs]
            t1 = time.perf_counter()
            lsum = sum(r[2][0] for r in res)
            ssum = sum(r[2][1] for r in res)
            gsum = sum(r[2][2] for r in res)
            if not (np.isfinite(lsum) and np.isfinite(gsum)):
                return progress["lsum"], progress["wsum"], False
            if ssum > 0:
                if len(res) == 1:
                    u, pieces = res[0][0], res[0][1]
                else:
                    u, inv = np.unique(np.concatenate([r[0] for r in res]), return_inverse=True)
                    pieces = np.zeros((u.shape[0], N_HEAD + self.k), dtype=self.dtype)
                    off = 0
                    for r in res:  # features are distinct within a shard: no collisions
                        m = r[0].shape[0]
                        pieces[inv[off:off + m]] += r[1]
                        off += m
                state.t += 1
                adam_apply(u, u.shape[0], pieces, ssum, gsum, state.t, state.P, state.M,
                           state.S, state.bias_state, lr, cfg.beta1, cfg.beta2, cfg.eps, lam_w,
                           lam_v, decoupled)
                for i, mask in enumerate(self.masks):
                    rows = u[mask[u]]
                    self.pending[i] = (rows, state.P[rows])
                    st["bytes_sent"] += rows.nbytes + self.pending[i][1].nbytes
            st["bytes_sent"] += 24 * len(res)
            st["bytes_received"] += sum(r[0].nbytes + r[1].nbytes + r[2].nbytes + 8 for r in res)
            self._step_done(progress, b, lsum, ssum, t0, t1, max(r[3] for r in res))
        rng.bit_generator.state = after
        return progress["lsum"], progress["wsum"], True

    def _step_done(self, progress, b, lsum, wsum, t0, t1, worker_s):
        """Book step b: the epoch's progress and sums, the step's timings
        (t0: its start, t1: the workers' answers in), then on_step."""
        st = self.stats
        progress["b"] = b + 1
        progress["lsum"] += lsum
        progress["wsum"] += wsum
        t2 = time.perf_counter()
        st["steps"] += 1
        st["step_wall_s"] += t2 - t0
        st["worker_s"] += worker_s
        st["coord_s"] += t2 - t1
        if self.on_step is not None:
            self.on_step(self, b)

    def flush(self):
        """Bring every replica up to the master (after an epoch of sync)."""
        calls = [sh.set_rows(*p) for sh, p in zip(self.shards, self.pending) if p is not None]
        for c in calls:
            c.result()
        self.pending = [None] * len(self.shards)

    def eval_loss(self, state, cfg):
        """Σ s·ℓ / Σ s over the evaluation partitions (float64)."""
        self.flush()
        calls = [sh.eval_loss(None, None, float(state.bias_state[0]), cfg.loss_code)
                 for sh in self.shards]
        res = [c.result() for c in calls]
        lsum = sum(r[0] for r in res)
        wsum = sum(r[1] for r in res)
        return lsum / wsum if wsum > 0 else float("nan")

    # --- local ---------------------------------------------------------
    def _average(self, res, state):
        """Write into the master P, M, S the touch-weighted average of the
        rows the shards returned. Returns (the touched rows u, for each the
        one shard that touched it or -1 when several did)."""
        rows = [x[0] for x in res]
        allr = np.concatenate(rows)
        owner = np.concatenate([np.full(r.shape[0], i) for i, r in enumerate(rows)])
        u, inv, cnt = np.unique(allr, return_inverse=True, return_counts=True)
        only = np.full(u.shape[0], -1)
        single = cnt[inv] == 1
        only[inv[single]] = owner[single]
        multi = cnt > 1
        if multi.any():
            slot = np.cumsum(multi) - 1  # position of a shared row among the shared rows
            n_m = int(multi.sum())
            wsum = np.zeros(n_m)
            acc = [np.zeros((n_m, 1 + self.k)) for _ in range(3)]
        off = 0
        for x in res:
            m = x[0].shape[0]
            if m:
                one = single[off:off + m]
                for tab, part in zip((state.P, state.M, state.S), (x[2], x[3], x[4])):
                    tab[x[0][one]] = part[one]
                if not one.all():
                    sh = ~one
                    idx = slot[inv[off:off + m][sh]]
                    c = x[1][sh].astype(np.float64)
                    wsum[idx] += c
                    for a, part in zip(acc, (x[2], x[3], x[4])):
                        a[idx] += c[:, None] * part[sh]
            off += m
        if multi.any():
            for a, tab in zip(acc, (state.P, state.M, state.S)):
                tab[u[multi]] = (a / wsum[:, None]).astype(self.dtype)
        return u, only

    def _local_epoch(self, state, cfg, lr, seed, progress):
        bs = cfg.batch_size
        n_b = max(c.result() for c in [sh.local_epoch(seed, bs, self.n_rows) for sh in self.shards])
        sync_every = cfg.sync_every
        n_rounds = -(-n_b // sync_every)
        kcfg = {"batch_size": bs, "loss_code": cfg.loss_code, "lr": lr, "beta1": cfg.beta1,
                "beta2": cfg.beta2, "eps": cfg.eps, "lam_w": cfg.l2_reg_w,
                "lam_v": cfg.l2_reg_v, "decoupled": cfg.solver == "adamw",
                "device": cfg.device}
        st = self.stats
        for r in range(progress["b"], n_rounds):
            t0 = time.perf_counter()
            bstate = state.bias_state.copy()
            futs = [sh.local_round(*(self.pending[i] or (None, None, None, None)), bstate,
                                   state.t, r, sync_every, kcfg)
                    for i, sh in enumerate(self.shards)]
            res = [f.result() for f in futs]
            t1 = time.perf_counter()
            if not all(x[9] for x in res):
                return progress["lsum"], progress["wsum"], False
            done = np.array([x[6] for x in res], dtype=np.float64)
            if done.sum() == 0:
                break
            u, only = self._average(res, state)
            # the intercept and its moments: weighted by the mini-batches each ran
            state.bias_state[:] = sum(d * x[5] for d, x in zip(done, res)) / done.sum()
            state.t += int(done.max())
            for i, mask in enumerate(self.masks):
                # a row only this shard touched is already what the master holds
                sel = u[mask[u] & (only != i)]
                self.pending[i] = (sel, state.P[sel], state.M[sel], state.S[sel])
                st["bytes_sent"] += sel.nbytes + 3 * sel.shape[0] * state.P.itemsize * (1 + self.k)
            st["bytes_received"] += sum(x[0].nbytes + x[1].nbytes + 3 * x[2].nbytes
                                        if x[2] is not None else 0 for x in res)
            self._step_done(progress, r, sum(x[7] for x in res), sum(x[8] for x in res), t0, t1,
                            max(x[10] for x in res))
        return progress["lsum"], progress["wsum"], True
