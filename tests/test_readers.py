"""Tests for fmnumba.readers."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from fmnumba.readers import (
    FORMAT_ALIASES,
    Dataset,
    RatingEncoder,
    detect_format,
    load_libffm,
    load_libsvm,
    load_movielens,
    load_ratings,
    read_data,
    resolve_format,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

DENSE = np.array(
    [[0.0, 1.5, 0.0, -2.0],
     [3.0, 0.0, 0.0, 0.0],
     [0.0, 0.0, 0.0, 0.0],
     [0.25, 0.0, 4.0, 1.0]],
    dtype=np.float32,
)
LABELS = np.array([1.0, -1.0, 1.0, -1.0])


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _libsvm_text(dense, labels, offset):
    lines = []
    for row, label in zip(dense, labels):
        toks = [f"{j + offset}:{v!r}" for j, v in enumerate(row.tolist()) if v != 0]
        lines.append(" ".join([f"{label:g}"] + toks))
    return "\n".join(lines) + "\n"


def _canonical(X):
    assert sp.isspmatrix_csr(X)
    assert X.has_sorted_indices
    assert X.has_canonical_format


def _data_file(name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real data file {name} not found under {DATA}")
    return path


# --------------------------------------------------------------------- libsvm

@pytest.mark.parametrize("offset,zero_based", [(0, True), (1, False), (1, "auto")])
def test_libsvm_round_trip(tmp_path, offset, zero_based):
    path = _write(tmp_path, "d.svm", _libsvm_text(DENSE, LABELS, offset))
    X, y = load_libsvm(path, n_features=4, zero_based=zero_based)
    _canonical(X)
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X.toarray(), DENSE)
    np.testing.assert_array_equal(y, LABELS)


def test_libsvm_auto_with_index_zero_is_zero_based(tmp_path):
    path = _write(tmp_path, "d.svm", _libsvm_text(DENSE, LABELS, 0))
    X, _ = load_libsvm(path)  # has index 0 -> zero-based under "auto"
    np.testing.assert_array_equal(X.toarray(), DENSE)


def test_libsvm_infers_n_features_and_dtype(tmp_path):
    path = _write(tmp_path, "d.svm", "1 1:1 3:2\n0 2:5\n")
    X, y = load_libsvm(path, zero_based=False, dtype=np.float64)
    assert X.shape == (2, 3) and X.dtype == np.float64
    np.testing.assert_array_equal(X.toarray(), [[1, 0, 2], [0, 5, 0]])


def test_libsvm_duplicates_summed_and_sorted(tmp_path):
    path = _write(tmp_path, "d.svm", "1 3:1 1:2 3:0.5\n-1 2:1 2:1 # comment\n")
    X, y = load_libsvm(path, zero_based=False)
    _canonical(X)
    np.testing.assert_array_equal(X.toarray(), [[2, 0, 1.5], [0, 2, 0]])
    np.testing.assert_array_equal(y, [1, -1])


def test_libsvm_comments_and_qid(tmp_path):
    path = _write(tmp_path, "d.svm", "# header\n1 qid:3 1:2\n\n0 qid:3 2:1 # c\n")
    X, y = load_libsvm(path, zero_based=False)
    np.testing.assert_array_equal(X.toarray(), [[2, 0], [0, 1]])


def test_libfm_text_format(tmp_path):
    # libFM's text format is libsvm with 0-based indices and real targets.
    path = _write(tmp_path, "d.libfm", "4.5 0:1 7:1\n2 3:1 8:1\n")
    X, y = load_libsvm(path, zero_based=True)
    assert X.shape == (2, 9)
    np.testing.assert_array_equal(y, [4.5, 2.0])
    assert read_data(path).X.shape == (2, 9)


@pytest.mark.parametrize("text,line", [
    ("1 1:1\n0 2:x\n", 2),
    ("1 1:1\n\nfoo 2:3\n", 3),
    ("1 1:2 junk\n", 1),
    ("1 1:2\n1 -3:2\n", 2),
])
def test_libsvm_malformed_names_file_and_line(tmp_path, text, line):
    path = _write(tmp_path, "bad.svm", text)
    with pytest.raises(ValueError) as info:
        load_libsvm(path)
    assert "bad.svm" in str(info.value)
    assert f"line {line}" in str(info.value)


def test_libsvm_index_zero_in_one_based_file(tmp_path):
    path = _write(tmp_path, "bad.svm", "1 1:1\n1 0:1\n")
    with pytest.raises(ValueError, match=r"bad\.svm, line 2"):
        load_libsvm(path, zero_based=False)


def test_libsvm_n_features_too_small(tmp_path):
    path = _write(tmp_path, "d.svm", "1 5:1\n")
    with pytest.raises(ValueError, match=r"d\.svm"):
        load_libsvm(path, n_features=2, zero_based=False)
    # Python fallback path (unsorted indices) also checks the bound.
    path = _write(tmp_path, "e.svm", "1 5:1 1:1\n")
    with pytest.raises(ValueError, match=r"e\.svm"):
        load_libsvm(path, n_features=2, zero_based=False)


def test_libsvm_bad_zero_based(tmp_path):
    path = _write(tmp_path, "d.svm", "1 1:1\n")
    with pytest.raises(ValueError):
        load_libsvm(path, zero_based="yes")


# --------------------------------------------------------------------- libffm

FFM_TEXT = """\
# comment line
1 0:0:1.5 1:3:2 0:1:0.5

-1 2:4:1 1:3:1 1:3:2
0 0:1:1
"""


def test_libffm_parse(tmp_path):
    path = _write(tmp_path, "d.ffm", FFM_TEXT)
    X, y, fields = load_libffm(path)
    _canonical(X)
    assert X.dtype == np.float32
    np.testing.assert_array_equal(y, [1, -1, 0])
    np.testing.assert_array_equal(X.indptr, [0, 3, 5, 6])
    np.testing.assert_array_equal(X.indices, [0, 1, 3, 3, 4, 1])
    np.testing.assert_allclose(X.data, [1.5, 0.5, 2, 3, 1, 1])
    assert fields.dtype == np.int32
    np.testing.assert_array_equal(fields, [0, 0, -1, 1, 2])


def test_libffm_n_features(tmp_path):
    path = _write(tmp_path, "d.ffm", FFM_TEXT)
    X, _, fields = load_libffm(path, n_features=7, dtype=np.float64)
    assert X.shape == (3, 7) and X.dtype == np.float64
    np.testing.assert_array_equal(fields, [0, 0, -1, 1, 2, -1, -1])
    with pytest.raises(ValueError, match="n_features"):
        load_libffm(path, n_features=3)


def test_libffm_conflicting_field(tmp_path):
    path = _write(tmp_path, "c.ffm", "1 0:0:1 1:1:1\n0 0:2:1\n1 2:1:1\n")
    with pytest.raises(ValueError, match=r"c\.ffm, line 3.*feature 1"):
        load_libffm(path, on_conflict="raise")
    X, _, fields = load_libffm(path, on_conflict="first")
    np.testing.assert_array_equal(fields, [0, 1, 0])
    np.testing.assert_array_equal(X.toarray(), [[1, 1, 0], [0, 0, 1], [0, 1, 0]])
    X, _, fields = load_libffm(path, on_conflict="split")
    np.testing.assert_array_equal(fields, [0, 1, 0, 2])
    np.testing.assert_array_equal(X.toarray(), [[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize("bad", ["0:1", "0:1:2:3", "a:1:1", "0:b:1", "0:1:x",
                                 "-1:1:1", "0:-2:1", "0:1:nan"])
def test_libffm_malformed_line(tmp_path, bad):
    path = _write(tmp_path, "m.ffm", f"1 0:0:1\n\n# c\n0 0:1:1 {bad}\n")
    with pytest.raises(ValueError, match=r"m\.ffm, line 4"):
        load_libffm(path)


def test_libffm_bad_label(tmp_path):
    path = _write(tmp_path, "m.ffm", "1 0:0:1\nyes 0:1:1\n")
    with pytest.raises(ValueError, match=r"m\.ffm, line 2.*label"):
        load_libffm(path)


# -------------------------------------------------------------------- ratings

def test_ratings_tab_no_header(tmp_path):
    path = _write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
                                      "22\t377\t1\t878887116\n")
    users, items, ratings = load_ratings(path)
    assert users.dtype == np.int64 and items.dtype == np.int64
    np.testing.assert_array_equal(users, [196, 186, 22])
    np.testing.assert_array_equal(items, [242, 302, 377])
    np.testing.assert_array_equal(ratings, [3, 3, 1])
    assert ratings.dtype == np.float64


def test_ratings_csv_header(tmp_path):
    path = _write(tmp_path, "r.csv", "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n"
                                     "1,1029,3.0,1260759179\n")
    users, items, ratings = load_ratings(path)
    np.testing.assert_array_equal(users, [1, 1])
    np.testing.assert_array_equal(items, [31, 1029])
    np.testing.assert_array_equal(ratings, [2.5, 3.0])


def test_ratings_columns_by_name_and_position(tmp_path):
    path = _write(tmp_path, "r.csv", "ts,score,item,who\n9,4,a,x\n9,5,b,y\n")
    u, i, r = load_ratings(path, columns=("who", "item", "score"))
    np.testing.assert_array_equal(u, ["x", "y"])
    np.testing.assert_array_equal(i, ["a", "b"])
    np.testing.assert_array_equal(r, [4, 5])
    u2, i2, r2 = load_ratings(path, columns=(3, 2, 1))
    np.testing.assert_array_equal(u2, u)
    np.testing.assert_array_equal(r2, r)
    with pytest.raises(ValueError, match="not found in header"):
        load_ratings(path, columns=("user", "nothing", "score"))


def test_ratings_comma_no_header_and_explicit_sep(tmp_path):
    path = _write(tmp_path, "r.csv", "u1,i1,4\nu2,i1,5\n")
    u, i, r = load_ratings(path)
    assert u.dtype.kind == "U"
    np.testing.assert_array_equal(u, ["u1", "u2"])
    path = _write(tmp_path, "r.txt", "1 2 3.5\n4 5 1\n")
    u, i, r = load_ratings(path, sep=" ", header=False)
    np.testing.assert_array_equal(r, [3.5, 1])
    path = _write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    u, i, r = load_ratings(path)
    np.testing.assert_array_equal(i, [1193, 661])


def test_ratings_header_true_and_leading_zero_ids(tmp_path):
    path = _write(tmp_path, "r.tsv", "a\tb\tc\n007\t1\t2\n7\t1\t3\n")
    u, i, r = load_ratings(path, header=True, columns=(0, 1, 2))
    np.testing.assert_array_equal(u, ["007", "7"])  # not merged into one id


@pytest.mark.parametrize("text,line", [
    ("1\t2\t3\n4\t5\n", 2),
    ("1\t2\t3\n\n4\t5\tbad\n", 3),
    ("user,item,rating\n1,2,3\n1,2,\n", 3),
])
def test_ratings_malformed(tmp_path, text, line):
    path = _write(tmp_path, "bad.tsv", text)
    with pytest.raises(ValueError, match=rf"bad\.tsv, line {line}"):
        load_ratings(path)


def test_rating_encoder_one_hot():
    enc = RatingEncoder().fit([3, 1, 3], [10, 20, 20])
    assert enc.n_users_ == 2 and enc.n_items_ == 2 and enc.n_output_features_ == 4
    assert enc.user_index_ == {1: 0, 3: 1}
    assert enc.item_index_ == {10: 0, 20: 1}
    X = enc.transform([1, 3], [20, 10])
    _canonical(X)
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X.toarray(), [[1, 0, 0, 1], [0, 1, 1, 0]])
    np.testing.assert_array_equal(enc.fields_, [0, 0, 1, 1])
    np.testing.assert_array_equal(enc.get_feature_names_out(),
                                  ["user=1", "user=3", "item=10", "item=20"])


def test_rating_encoder_unknown_ids_give_empty_block():
    enc = RatingEncoder().fit([1, 2], [10, 20])
    X = enc.transform([1, 99, 99, 2], [77, 20, 77, 10])
    assert X.shape == (4, 4)
    np.testing.assert_array_equal(X.toarray(), [[1, 0, 0, 0],
                                                [0, 0, 0, 1],
                                                [0, 0, 0, 0],
                                                [0, 1, 1, 0]])
    np.testing.assert_array_equal(X.indptr, [0, 1, 2, 2, 4])


def test_rating_encoder_string_ids_and_pair_array():
    users = np.array(["alice", "bob", "alice"])
    items = ["x", "y", "z"]
    enc = RatingEncoder(dtype=np.float64)
    X = enc.fit_transform(users, items)
    assert X.dtype == np.float64
    assert X.shape == (3, 5)
    np.testing.assert_array_equal(enc.users_, ["alice", "bob"])
    X2 = enc.transform(np.column_stack([users, items]))
    assert (X2 != X).nnz == 0
    # an int id unseen among string ids is just unknown
    assert enc.transform([5], ["x"]).nnz == 1


def test_ratings_id_type_str_keeps_ids_as_written(tmp_path):
    path = _write(tmp_path, "r.tsv", "10\t2\t5\n9\t2\t3\n")
    u, i, _ = load_ratings(path)
    assert u.dtype == np.int64 and u.tolist() == [10, 9]
    u, i, _ = load_ratings(path, id_type=str)
    assert u.dtype.kind == "U" and u.tolist() == ["10", "9"] and i.tolist() == ["2", "2"]
    with pytest.raises(ValueError, match="id_type"):
        load_ratings(path, id_type=int)


def test_rating_encoder_from_vocabulary_keeps_the_given_order():
    fitted = RatingEncoder().fit(["b", "a", "c"], ["y", "x", "y"])
    rebuilt = RatingEncoder.from_vocabulary(fitted.users_.tolist(), fitted.items_.tolist())
    for name in ("user_index_", "item_index_", "n_users_", "n_items_", "n_output_features_"):
        assert getattr(rebuilt, name) == getattr(fitted, name), name
    for name in ("users_", "items_", "fields_"):
        np.testing.assert_array_equal(getattr(rebuilt, name), getattr(fitted, name))
    pairs = (["c", "a", "z"], ["x", "y", "y"])
    assert (rebuilt.transform(*pairs) != fitted.transform(*pairs)).nnz == 0
    # columns follow the lists as given, not sorted
    enc = RatingEncoder.from_vocabulary(["10", "9"], ["i"])
    np.testing.assert_array_equal(enc.transform(["9"], ["i"]).toarray(), [[0, 1, 1]])
    with pytest.raises(ValueError, match="repeated"):
        RatingEncoder.from_vocabulary(["a", "a"], ["i"])


def test_rating_encoder_errors():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        RatingEncoder().transform([1], [2])
    with pytest.raises(ValueError, match="length"):
        RatingEncoder().fit([1, 2], [3])


def test_rating_encoder_clone():
    from sklearn.base import clone
    enc = clone(RatingEncoder(dtype=np.float64))
    assert enc.get_params() == {"dtype": np.float64, "user_features": None,
                                "item_features": None}


def test_load_movielens_train_test(tmp_path):
    train = _write(tmp_path, "u1.base", "1\t10\t5\t0\n2\t20\t3\t0\n1\t20\t4\t0\n")
    test = _write(tmp_path, "u1.test", "2\t10\t1\t0\n3\t20\t2\t0\n")
    X, y, enc = load_movielens(train)
    assert X.shape == (3, 4)
    np.testing.assert_array_equal(y, [5, 3, 4])
    Xt, yt, enc2 = load_movielens(test, encoder=enc)
    assert enc2 is enc
    np.testing.assert_array_equal(Xt.toarray(), [[0, 1, 1, 0], [0, 0, 0, 1]])


# ------------------------------------------------------------------- dispatch

def test_read_data_auto_detection(tmp_path):
    svm = _write(tmp_path, "a.txt", "\n# c\n1\n-1 qid:1 3:1 4:2\n")
    ffm = _write(tmp_path, "b.txt", FFM_TEXT)
    tsv = _write(tmp_path, "c.txt", "1\t2\t5\t0\n2\t2\t3\t0\n")
    csv_ = _write(tmp_path, "d.txt", "user,item,rating\nu,i,4\n")
    assert detect_format(svm) == "libsvm"
    assert detect_format(ffm) == "libffm"
    assert detect_format(tsv) == "ratings"
    assert detect_format(csv_) == "ratings"

    ds = read_data(svm, zero_based=False)
    assert isinstance(ds, Dataset) and ds.fields is None and ds.encoder is None
    assert ds.X.shape == (2, 4)
    ds = read_data(ffm)
    np.testing.assert_array_equal(ds.fields, [0, 0, -1, 1, 2])
    X, y, fields, encoder = read_data(tsv)
    assert X.shape == (2, 3) and isinstance(encoder, RatingEncoder)
    np.testing.assert_array_equal(fields, [0, 0, 1])
    np.testing.assert_array_equal(y, [5, 3])
    assert read_data(csv_).X.shape == (1, 2)


def test_read_data_explicit_format(tmp_path):
    ffm = _write(tmp_path, "b.txt", FFM_TEXT)
    assert read_data(ffm, format="ffm").X.shape == (3, 5)
    assert set(FORMAT_ALIASES.values()) == {"libsvm", "libffm", "ratings"}
    for name, kind in FORMAT_ALIASES.items():
        assert resolve_format(ffm, name) == resolve_format(ffm, name.upper()) == kind
    assert resolve_format(ffm) == "libffm"
    with pytest.raises(ValueError, match="unknown format"):
        resolve_format(ffm, "parquet")
    with pytest.raises(ValueError, match="unknown format"):
        read_data(ffm, format="parquet")
    empty = _write(tmp_path, "e.txt", "\n# nothing\n")
    with pytest.raises(ValueError, match="empty"):
        read_data(empty)


# ------------------------------------------------------------------ real data

def test_real_a9a():
    path = _data_file("a9a")
    X, y = load_libsvm(path)
    assert X.shape == (32561, 123)
    _canonical(X)
    assert set(np.unique(y)) == {-1.0, 1.0}
    assert np.all(X.data == 1)
    ds = read_data(path)
    assert ds.X.shape == (32561, 123)


def test_real_criteo_libffm():
    path = _data_file("criteo_small_train.libffm")
    assert detect_format(path) == "libffm"
    # the xLearn sample hashes features, so some occur under two fields
    with pytest.raises(ValueError, match="line 17"):
        load_libffm(path, on_conflict="raise")
    for mode in ("first", "split"):
        X, y, fields = load_libffm(path, on_conflict=mode)
        assert X.shape[0] == 200
        _canonical(X)
        assert set(np.unique(y)) == {0.0, 1.0}
        assert fields.shape == (X.shape[1],)
        used = np.unique(X.indices)
        assert np.all(fields[used] >= 0) and fields.max() == 17


def test_libsvm_non_finite_rejected(tmp_path):
    path = _write(tmp_path, "n.svm", "1 1:1\n1 2:nan\n")
    with pytest.raises(ValueError, match=r"n\.svm, line 2"):
        load_libsvm(path)


# ------------------------------------------------------------------ property

try:
    from hypothesis import given, settings, strategies as st
except ImportError:  # hypothesis is optional; skip only this test
    def test_libffm_round_trip_property():
        pytest.skip("hypothesis is not installed")
else:
    @settings(max_examples=30, deadline=None)
    @given(st.data())
    def test_libffm_round_trip_property(tmp_path_factory, data):
        _check_libffm_round_trip(tmp_path_factory, data)


def _check_libffm_round_trip(tmp_path_factory, data):
    n_rows = data.draw(st.integers(1, 6))
    n_feat = data.draw(st.integers(1, 8))
    fields = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n_feat, max_size=n_feat)))
    dense = np.zeros((n_rows, n_feat))
    lines = []
    for i in range(n_rows):
        entries = data.draw(st.lists(st.tuples(st.integers(0, n_feat - 1),
                                               st.integers(-8, 8)), max_size=6))
        for j, v in entries:
            dense[i, j] += v / 4
        lines.append(" ".join(["1"] + [f"{fields[j]}:{j}:{v / 4}" for j, v in entries]))
    path = tmp_path_factory.mktemp("ffm") / "p.ffm"
    path.write_text("\n".join(lines) + "\n")
    X, y, got_fields = load_libffm(path, n_features=n_feat, dtype=np.float64)
    _canonical(X)
    np.testing.assert_allclose(X.toarray(), dense)
    seen = np.zeros(n_feat, bool)
    for line in lines:
        for tok in line.split()[1:]:
            seen[int(tok.split(":")[1])] = True
    np.testing.assert_array_equal(got_fields, np.where(seen, fields, -1))


def test_libsvm_feature_index_beyond_int32(tmp_path):
    """sklearn's compiled reader overflows past 2**31 - 1; the Python reader takes over."""
    path = _write(tmp_path, "big.libsvm", "1 3000000000:2.5\n0 1:1\n")
    X, y = load_libsvm(path, zero_based=True)
    assert X.shape == (2, 3000000001)
    assert X.indices.dtype == np.int64
    assert X[0, 3000000000] == 2.5 and X[1, 1] == 1
    np.testing.assert_array_equal(y, [1, 0])


# ---------------------------------------------------------------------------
# id order, side features, libFM meta files, groups by feature-name prefix
# ---------------------------------------------------------------------------

def test_integer_ids_sort_numerically_everywhere(tmp_path):
    path = _write(tmp_path, "r.tsv", "10\t100\t1\n9\t2\t2\n100\t10\t3\n")
    X, y, enc = load_movielens(path)
    assert enc.users_.tolist() == [9, 10, 100] and enc.items_.tolist() == [2, 10, 100]
    assert RatingEncoder().fit(["10", "9"], ["a", "b"]).users_.tolist() == ["10", "9"]


def test_load_features_guesses_kinds_and_encodes(tmp_path):
    from fmnumba.attributes import load_features
    path = _write(tmp_path, "users.csv",
                  "user_id,age,job,tags\n1,20,cook,a|b\n2,40,,b\n3,,cook,a|b|c\n")
    t = load_features(path)
    assert t.ids == ["1", "2", "3"] and t.names == ["age", "job", "tags"]
    assert t.kinds == ["numeric", "categorical", "multi"]
    enc = RatingEncoder(user_features=t).fit([1, 2, 3, 9], ["i", "i", "j", "j"])
    names = enc.get_feature_names_out().tolist()
    assert names[6:] == ["user.age", "user.job=cook", "user.tags=a", "user.tags=b",
                         "user.tags=c"]
    assert enc.group_names_ == ["user", "item", "user.age", "user.job", "user.tags"]
    assert enc.fields_.tolist() == [0, 0, 0, 0, 1, 1, 2, 3, 4, 4, 4]
    D = enc.transform([1, 2, 3, 9], ["i", "j", "i", "i"]).toarray()
    # numeric scaled by the column's largest |value|; lists weighted 1/len
    np.testing.assert_allclose(D[0, 6:], [0.5, 1, 0.5, 0.5, 0])
    np.testing.assert_allclose(D[1, 6:], [1.0, 0, 0, 1, 0])
    np.testing.assert_allclose(D[2, 6:], [0, 1, 1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(D[3, 6:], 0)  # user 9 has no attribute row
    assert D.shape == (4, enc.n_output_features_) and D[3, :4].sum() == 1


def test_attributes_apply_to_users_outside_the_vocabulary(tmp_path):
    from fmnumba.attributes import table_from_columns
    t = table_from_columns(["1", "2"], {"g": ["x", "y"]})
    enc = RatingEncoder(user_features=t).fit([1], ["i"])
    D = enc.transform([2], ["i"]).toarray()
    assert D[0, 0] == 0 and D[0, 1] == 1 and D[0, 3] == 1  # no one-hot, but g=y


def test_load_features_options_and_errors(tmp_path):
    from fmnumba.attributes import load_features
    path = _write(tmp_path, "f.tsv", "a\t1\t90210\nb\t2\tT8H1N\n")
    t = load_features(path, names=["n", "zip"], kinds={"zip": "categorical"})
    assert t.names == ["n", "zip"] and t.kinds == ["numeric", "categorical"]
    assert load_features(path, columns=[2]).names == ["col2"]
    with pytest.raises(ValueError, match="'T8H1N' is not a number"):
        load_features(path, kinds={"col2": "numeric"})
    with pytest.raises(ValueError, match="kinds names unknown attributes"):
        load_features(path, kinds={"nope": "numeric"})
    dup = _write(tmp_path, "d.tsv", "a\t1\na\t2\n")
    with pytest.raises(ValueError, match="id 'a' appears more than once"):
        load_features(dup)
    with pytest.raises(ValueError, match="out of range"):
        load_features(path, key=5)


def test_movielens_user_and_item_tables(tmp_path):
    from fmnumba.attributes import MOVIELENS_GENRES, load_movielens_items, read_features
    users = _write(tmp_path, "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    t = read_features(users)
    assert t.names == ["age", "gender", "occupation"]
    assert t.kinds == ["numeric", "categorical", "categorical"]
    flags = ["0"] * 19
    flags[1] = flags[5] = "1"  # Action, Comedy
    items = _write(tmp_path, "u.item", "1|Toy Story (1995)|01-Jan-1995||http://x|"
                   + "|".join(flags) + "\n")
    t = read_features(items)
    assert t.names == ["genre"] and t.values[0] == [("Action", "Comedy")]
    assert MOVIELENS_GENRES[1] == "Action"
    bad = _write(tmp_path, "bad.item", "1|x|2\n")
    with pytest.raises(ValueError, match="19 genre flags"):
        load_movielens_items(bad)
    enc = RatingEncoder(item_features=items).fit([1], [1])
    D = enc.transform([1], [1]).toarray()
    np.testing.assert_allclose(D[0, 2:], [0.5, 0.5])


def test_encoder_json_round_trip_and_dataframe_tables():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"age": [30, 60], "genre": [["a", "b"], ["b"]], "city": ["x", None]},
                      index=[1, 2])
    enc = RatingEncoder(user_features=df).fit([1, 2, 3], ["i", "j", "k"])
    assert enc.group_names_ == ["user", "item", "user.age", "user.genre", "user.city"]
    back = RatingEncoder.from_json(enc.to_json())
    u, i = ["1", "2", "3"], ["k", "i", "j"]
    np.testing.assert_array_equal(back.transform(u, i).toarray(),
                                  enc.transform([1, 2, 3], i).toarray())
    with pytest.raises(ValueError, match="malformed"):
        RatingEncoder.from_json({"users": [1], "items": []})
    with pytest.raises(TypeError, match="user_features must be"):
        RatingEncoder(user_features=42).fit([1], [1])


def test_load_meta(tmp_path):
    from fmnumba.readers import load_meta
    path = _write(tmp_path, "meta.txt", "0\n0\n1\n2\n")
    assert load_meta(path).tolist() == [0, 0, 1, 2]
    assert load_meta(path, 3).tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="4 group ids for 5 features"):
        load_meta(path, 5)
    bad = _write(tmp_path, "bad.txt", "0\n-1\n")
    with pytest.raises(ValueError, match="line 2: group id '-1' is negative"):
        load_meta(bad)


def test_groups_by_prefix_resolve_longest_match():
    from fmnumba._validation import groups_from_prefixes, per_feature_l2
    names = ["cat__user_1", "cat__user_2", "cat__item_7", "num__age"]
    g = groups_from_prefixes({"cat__user": 0, "cat__item": 1, "": 2}, names, 4)
    assert g.tolist() == [0, 0, 1, 2]
    lam = per_feature_l2("l2_reg_v", [0.1, 0.2, 0.3], {"cat__user": 0, "cat__": 1, "num": 2},
                         4, names)
    np.testing.assert_allclose(lam, [0.1, 0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="matches none of the prefixes"):
        groups_from_prefixes({"cat__": 0}, names, 4)
    with pytest.raises(ValueError, match="X has no feature names"):
        per_feature_l2("l2_reg_v", [0.1], {"": 0}, 4, None)
    with pytest.raises(ValueError, match="group ids must be integers"):
        groups_from_prefixes({"": -1}, names, 4)


def test_groups_by_prefix_survive_cross_validation():
    """A Pipeline whose encoder yields a different column count per fold:
    groups given as feature-name prefixes are resolved at each fit."""
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from fmnumba import FMRegressor
    rng = np.random.default_rng(0)
    n = 400
    # rare ids: some users/items appear in only a few rows, so folds differ in width
    df = pd.DataFrame({"user": rng.zipf(1.6, n) % 97, "item": rng.zipf(1.6, n) % 89,
                       "genre": rng.choice(["a", "b", "c"], n)})
    y = rng.normal(3, 1, n)
    ct = ColumnTransformer([("u", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                             ["user"]),
                            ("i", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                             ["item", "genre"])]).set_output(transform="pandas")
    widths = {ct.fit_transform(df.iloc[tr]).shape[1]
              for tr, _ in KFold(3, shuffle=True, random_state=0).split(df)}
    assert len(widths) > 1  # a fixed per-column groups array could not fit every fold
    fm = FMRegressor(n_factors=2, max_iter=2, random_state=0,
                     groups={"u__": 0, "i__item": 1, "i__genre": 2}, l2_reg_v=[0.01, 0.02, 0.03])
    pipe = make_pipeline(ct, fm)
    scores = cross_val_score(pipe, df, y, cv=KFold(3, shuffle=True, random_state=0),
                             scoring="neg_root_mean_squared_error")
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    search = GridSearchCV(pipe, {"fmregressor__l2_reg_v": [[0.01, 0.02, 0.03],
                                                           [0.1, 0.1, 0.2]]}, cv=2)
    search.fit(df, y)
    assert search.best_params_["fmregressor__l2_reg_v"] in ([0.01, 0.02, 0.03],
                                                            [0.1, 0.1, 0.2])
    # the mapping trains exactly as the equivalent per-column array
    pipe.fit(df, y)
    Xt = ct.fit_transform(df)
    arr = np.array([0 if f.startswith("u__") else 1 if f.startswith("i__item") else 2
                    for f in Xt.columns])
    ref = FMRegressor(n_factors=2, max_iter=2, random_state=0, groups=arr,
                      l2_reg_v=[0.01, 0.02, 0.03]).fit(Xt, y)
    np.testing.assert_array_equal(pipe[-1].factors_, ref.factors_)
    assert not np.array_equal(
        ref.factors_, FMRegressor(n_factors=2, max_iter=2, random_state=0).fit(Xt, y).factors_)
