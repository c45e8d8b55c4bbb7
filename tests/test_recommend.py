"""Top-N recommendation: the decomposition kernel against brute-force
scoring of every (user, item) row, the public recommend() against the
estimator's own predictions on rows built by the encoder, and bad input."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

from fmnumba import FMClassifier, FMRegressor, Recommendations, recommend
from fmnumba.attributes import table_from_columns
from fmnumba.cpu.recommend import row_terms, top_n
from fmnumba.readers import RatingEncoder

try:
    from . import naive, strategies
except ImportError:
    import naive
    import strategies

SLOW = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                deadline=None)


def _kernel_top_n(U, I, w0, P, skip, n):
    k = P.shape[1] - 1
    su, Qu = np.empty(U.shape[0]), np.empty((U.shape[0], k))
    si, Qi = np.empty(I.shape[0]), np.empty((I.shape[0], k))
    row_terms(U.indptr.astype(np.int64), U.indices.astype(np.int64), U.data, P, su, Qu)
    row_terms(I.indptr.astype(np.int64), I.indices.astype(np.int64), I.data, P, si, Qi)
    su += w0
    excl = sp.csr_matrix(skip)
    items = np.empty((U.shape[0], n), dtype=np.int64)
    scores = np.empty((U.shape[0], n))
    counts = np.empty(U.shape[0], dtype=np.int64)
    top_n(su, Qu, si, Qi, excl.indptr.astype(np.int64), excl.indices.astype(np.int64), n,
          items, scores, counts)
    return items, scores, counts


@st.composite
def split_problem(draw):
    """User-part and item-part CSR rows on disjoint columns, P, w0, a skip
    mask and n (at most the fewest candidates any user has)."""
    dtype = draw(st.sampled_from(strategies.FLOAT_DTYPES))
    n_user_cols = draw(st.integers(1, 8))
    n_item_cols = draw(st.integers(1, 8))
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(1, 12))
    ru = draw(strategies.raw_csr(n_rows=n_users, n_features=n_user_cols, dtype=dtype))
    ri = draw(strategies.raw_csr(n_rows=n_items, n_features=n_item_cols, dtype=dtype))
    U = strategies.canonical(ru)
    I = strategies.canonical(ri)
    width = n_user_cols + n_item_cols
    U = sp.csr_matrix((U.data, U.indices, U.indptr), shape=(n_users, width))
    I = sp.csr_matrix((I.data, I.indices + n_user_cols, I.indptr), shape=(n_items, width))
    k = draw(st.integers(1, 5))
    P = draw(strategies.param_table(width, k, dtype))
    w0 = draw(st.floats(-2, 2))
    skip = np.array(draw(st.lists(st.lists(st.booleans(), min_size=n_items, max_size=n_items),
                                  min_size=n_users, max_size=n_users)), dtype=bool)
    skip[:, 0] = False  # every user keeps a candidate
    n = draw(st.integers(1, int((~skip).sum(axis=1).min())))
    return U, I, w0, P, skip, n


@settings(SLOW, max_examples=25)
@given(split_problem())
def test_kernel_matches_brute_force_scores(prob):
    U, I, w0, P, skip, n = prob
    items, scores, counts = _kernel_top_n(U, I, w0, P, skip, n)
    S, chosen = naive.recommend_top_n(U.toarray(), I.toarray(), w0, P, skip, n)
    np.testing.assert_array_equal(counts, (~skip).sum(axis=1))
    scale = 1 + np.abs(S).max()
    tol = (1e-9 if P.dtype == np.float64 else 1e-4) * scale
    for u in range(U.shape[0]):
        # the kernel's scores are the true scores of the items it chose...
        np.testing.assert_allclose(scores[u], S[u, items[u]], atol=tol, rtol=0)
        assert not skip[u, items[u]].any()
        assert len(set(items[u].tolist())) == n
        # ...in non-increasing order, and as good as the brute-force top n
        assert np.all(np.diff(scores[u]) <= tol)
        np.testing.assert_allclose(scores[u], S[u, chosen[u]], atol=2 * tol, rtol=0)


def test_kernel_ties_break_by_position():
    U = sp.csr_matrix(np.eye(2, 4))
    I = sp.csr_matrix(np.hstack([np.zeros((3, 2)), np.ones((3, 2))]))
    P = np.zeros((4, 3))
    items, scores, _ = _kernel_top_n(U, I, 0.5, P, np.zeros((2, 3), bool), 3)
    np.testing.assert_array_equal(items, [[0, 1, 2], [0, 1, 2]])
    np.testing.assert_array_equal(scores, 0.5)


# ---------------------------------------------------------------------------
# recommend() on an encoder with side features
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(3)
    n_users, n_items, n = 40, 25, 1500
    users = rng.integers(0, n_users, n).tolist()
    items = [f"m{j}" for j in rng.integers(0, n_items, n)]
    ut = table_from_columns([str(u) for u in range(n_users)],
                            {"age": [str(18 + u) for u in range(n_users)],
                             "job": ["abc"[u % 3] for u in range(n_users)]})
    it = table_from_columns([f"m{j}" for j in range(n_items)],
                            {"genre": [["x|y", "y", "z|x|y"][j % 3] for j in range(n_items)]})
    enc = RatingEncoder(user_features=ut, item_features=it).fit(users, items)
    X = enc.transform(users, items)
    y = rng.normal(3, 1, n)
    # two extra context columns after the encoder's
    Xc = sp.hstack([X, sp.csr_matrix(rng.random((n, 2)))], format="csr")
    reg = FMRegressor(n_factors=4, max_iter=5, random_state=0, init_std=0.3).fit(X, y)
    regc = FMRegressor(n_factors=3, max_iter=5, random_state=1, init_std=0.3).fit(Xc, y)
    clf = FMClassifier(n_factors=4, max_iter=5, random_state=0, init_std=0.3).fit(X, y > 3)
    return enc, users, items, reg, regc, clf


def _brute(model, enc, users, cands, n, rated=None, context=None):
    """Top n by model.decision on rows built with enc.transform."""
    out_items, out_scores = [], []
    for u in users:
        X = enc.transform([u] * len(cands), cands)
        if context is not None:
            X = sp.hstack([X, sp.csr_matrix(np.tile(context[X.shape[1]:], (len(cands), 1)))],
                          format="csr")
        s = model.decision_function(X) if hasattr(model, "classes_") else model.predict(X)
        keep = [j for j in range(len(cands)) if rated is None or cands[j] not in rated.get(u, ())]
        keep.sort(key=lambda j: (-s[j], j))
        out_items.append([cands[j] for j in keep[:n]])
        out_scores.append(s[keep[:n]])
    return out_items, np.array(out_scores)


@pytest.mark.parametrize("which", ["reg", "clf"])
def test_recommend_equals_brute_force(trained, which):
    enc, users, items, reg, _, clf = trained
    model = reg if which == "reg" else clf
    ask = [5, 0, 39, 17]
    rec = recommend(model, enc, ask, n=7)
    assert isinstance(rec, Recommendations)
    bi, bs = _brute(model, enc, ask, enc.items_.tolist(), 7)
    assert rec.items.tolist() == bi
    np.testing.assert_allclose(rec.scores, bs, rtol=1e-5, atol=1e-6)
    assert rec.users.tolist() == ask


def test_recommend_excludes_rated_items_in_every_form(trained):
    enc, users, items, reg, _, _ = trained
    users, items = users[:300], items[:300]  # about 7 of the 25 items per user
    rated = {}
    for u, i in zip(users, items):
        rated.setdefault(u, set()).add(i)
    ask = [1, 2, 3]
    bi, bs = _brute(reg, enc, ask, enc.items_.tolist(), 5, rated)
    by_pairs = recommend(reg, enc, ask, n=5, exclude=(users, items))
    by_dict = recommend(reg, enc, ask, n=5, exclude={u: sorted(v) for u, v in rated.items()})
    M = sp.csr_matrix((np.ones(len(users)), ([enc.user_index_[u] for u in users],
                                             [enc.item_index_[i] for i in items])),
                      shape=(enc.n_users_, enc.n_items_))
    by_matrix = recommend(reg, enc, ask, n=5, exclude=M)
    for rec in (by_pairs, by_dict, by_matrix):
        assert rec.items.tolist() == bi
        np.testing.assert_allclose(rec.scores, bs, rtol=1e-5, atol=1e-6)
    for u, row in zip(ask, by_pairs.items):
        assert not set(row) & rated[u]


def test_recommend_candidates_and_context(trained):
    enc, users, items, _, regc, _ = trained
    cands = ["m3", "m1", "m20", "m7", "m11"]
    ctx = np.zeros(regc.n_features_in_)
    ctx[-2:] = [0.7, -0.2]
    rec = recommend(regc, enc, [4, 9], n=3, items=cands, context=ctx)
    bi, bs = _brute(regc, enc, [4, 9], cands, 3, context=ctx)
    assert rec.items.tolist() == bi
    np.testing.assert_allclose(rec.scores, bs, rtol=1e-5, atol=1e-6)


def test_recommend_is_thread_count_independent(trained):
    enc, _, _, reg, _, _ = trained
    a = recommend(reg, enc, list(range(40)), n=10, n_jobs=1)
    b = recommend(reg, enc, list(range(40)), n=10, n_jobs=2)
    assert a.items.tolist() == b.items.tolist()
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("kwargs, match", [
    (dict(users=[999]), r"users: unknown ids \[999\]"),
    (dict(users=[]), "users is empty"),
    (dict(n=0), "n must be a positive integer"),
    (dict(n=-3), "n must be a positive integer"),
    (dict(n=2.5), "n must be a positive integer"),
    (dict(n=True), "n must be a positive integer"),
    (dict(n=26), r"n=26 exceeds the number of candidate items \(25\)"),
    (dict(items=["m1", "nope"]), r"items: unknown ids \['nope'\]"),
    (dict(items=["m1", "m1"], n=1), "repeated ids"),
    (dict(exclude="m1"), "exclude must be"),
    (dict(exclude=([1, 2], ["m1"])), "differ in length"),
    (dict(exclude=sp.csr_matrix((2, 2))), r"shape \(n_users_, n_items_\)"),
    (dict(context=np.ones(3)), "one value per model feature"),
    (dict(items=["m1", "m2"], exclude={0: ["m1"]}, users=[0], n=2),
     r"user 0 has 1 candidate items left after exclude, fewer than n=2"),
])
def test_recommend_bad_input(trained, kwargs, match):
    enc, _, _, reg, _, _ = trained
    call = dict(users=[0, 1], n=3)
    call.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        recommend(reg, enc, **call)


def test_recommend_needs_encoder_and_fitted_model(trained):
    enc, _, _, reg, regc, _ = trained
    with pytest.raises(ValueError, match="needs the RatingEncoder"):
        recommend(reg, None, [0])
    with pytest.raises(ValueError, match="fitted fmnumba.readers.RatingEncoder"):
        recommend(reg, RatingEncoder(), [0])
    with pytest.raises(NotFittedError):
        recommend(FMRegressor(), enc, [0])
    small = RatingEncoder().fit([0, 1], ["m1", "m2"])
    bigger_enc = RatingEncoder().fit(list(range(400)), [f"m{j}" for j in range(400)])
    with pytest.raises(ValueError, match="the encoder has 800 columns but the model"):
        recommend(reg, bigger_enc, [0])
    ctx = np.zeros(regc.n_features_in_)
    ctx[0] = 1.0
    with pytest.raises(ValueError, match="nonzero on the encoder's columns"):
        recommend(regc, enc, [0], context=ctx)
    # an encoder narrower than the model: its columns come first, the rest are context
    rec = recommend(regc, small, [0], n=2)
    assert rec.items.shape == (1, 2)
