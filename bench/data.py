"""The benchmark's data sets, built once into the harness npz format
(bench/protocol.py) under a cache folder."""
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from .protocol import align_features, save_npz

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_CACHE = REPO / "bench" / ".cache"
ALL_DATASETS = ("a9a", "criteo", "small", "large")


def _split(X, y, seed=0, test_fraction=0.2):
    """(Xtr, ytr, Xte, yte): a random split by default_rng(seed), rows kept in order."""
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    n_test = int(round(test_fraction * X.shape[0]))
    te, tr = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return X[tr], y[tr], X[te], y[te]


def build_dataset(name, quick, movielens=None):
    """(task, Xtr, ytr, Xte, yte, description); labels of classification in {0, 1}."""
    from fmnumba import datasets as D
    from fmnumba import readers as R
    if name == "a9a":
        Xtr, ytr = R.load_libsvm(SHARED_DATA / "a9a", n_features=123, zero_based=False)
        Xte, yte = R.load_libsvm(SHARED_DATA / "a9a.t", n_features=123, zero_based=False)
        ytr, yte = (ytr > 0).astype(float), (yte > 0).astype(float)
        if quick:
            Xtr, ytr, Xte, yte = Xtr[:4000], ytr[:4000], Xte[:2000], yte[:2000]
        return "classification", Xtr, ytr, Xte, yte, "LIBSVM a9a (UCI Adult), given split"
    if name == "criteo":
        Xtr, ytr, _ = R.load_libffm(SHARED_DATA / "criteo_small_train.libffm")
        Xte, yte, _ = R.load_libffm(SHARED_DATA / "criteo_small_test.libffm")
        Xtr, Xte = align_features(Xtr, Xte)
        return ("classification", Xtr, (ytr > 0).astype(float), Xte, (yte > 0).astype(float),
                "xLearn's 200+200-row Criteo libffm sample (fields ignored)")
    if name == "small":
        n = 5_000 if quick else 100_000
        d = D.make_ratings(n, n_users=300, n_items=200) if quick else D.make_ratings(n)
        return ("regression", *_split(d.X, d.y),
                f"make_ratings({n}) 80/20, planted FM, noise σ = {d.noise} (best RMSE)")
    if name == "large":
        n, nf = (20_000, 50_000) if quick else (1_000_000, 1_000_000)
        d = D.make_fm_data(n, D.large_field_sizes(nf), random_state=0)
        return ("regression", *_split(d.X, d.y),
                f"make_fm_data({n}, large_field_sizes({nf})) 80/20: {d.X.nnz / n:.0f} nnz/row, "
                f"{nf} features, Zipf popularity, noise σ = {d.noise}")
    if name == "movielens":
        X, y, _ = R.load_movielens(movielens)
        if quick:
            X, y = X[:20_000], y[:20_000]
        Xtr, ytr, Xte, yte = _split(X, y)
        return "regression", Xtr, ytr, Xte, yte, f"MovieLens {Path(movielens).name}, one-hot " \
            "user+item, 80/20 split by default_rng(0).permutation"
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(ALL_DATASETS)}, movielens")


def prepare(name, quick, cache, movielens=None, log=print):
    """Write (once) name_train.npz / name_test.npz / name.json under the cache dir."""
    sub = Path(cache) / ("quick" if quick else "full")
    sub.mkdir(parents=True, exist_ok=True)
    key = name
    if name == "movielens":
        st = os.stat(movielens)
        key += "-" + hashlib.sha1(f"{os.path.abspath(movielens)}:{st.st_size}:{st.st_mtime}"
                                  .encode()).hexdigest()[:8]
    tr, te, meta_p = sub / f"{key}_train.npz", sub / f"{key}_test.npz", sub / f"{key}.json"
    if tr.exists() and te.exists() and meta_p.exists():
        return tr, te, json.loads(meta_p.read_text())
    t0 = time.perf_counter()
    task, Xtr, ytr, Xte, yte, desc = build_dataset(name, quick, movielens)
    save_npz(tr, Xtr, ytr)
    save_npz(te, Xte, yte)
    meta = {"name": name, "task": task, "description": desc, "n_train": int(Xtr.shape[0]),
            "n_test": int(Xte.shape[0]), "n_features": int(Xtr.shape[1]),
            "nnz_train": int(Xtr.nnz), "nnz_test": int(Xte.nnz),
            "build_s": time.perf_counter() - t0}
    meta_p.write_text(json.dumps(meta, indent=1))
    log(f"  built {name}: {meta['n_train']} + {meta['n_test']} rows, "
        f"{meta['n_features']} features in {meta['build_s']:.1f} s")
    return tr, te, meta
