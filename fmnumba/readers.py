"""Readers for the data formats factorization machines are usually fed.

* libsvm / svmlight / libFM text: :func:`load_libsvm`
* libffm (``label field:feature:value ...``): :func:`load_libffm`
* rating triples (MovieLens ``u.data``, CSV): :func:`load_ratings`,
  :class:`RatingEncoder` (with side features, see :mod:`fmnumba.attributes`),
  :func:`load_movielens`
* libFM ``-meta`` group files: :func:`load_meta`
* format auto-detection and dispatch: :func:`detect_format`,
  :func:`resolve_format`, :func:`read_data`

Every loader returns a CSR matrix with sorted indices and summed duplicates.
Malformed input raises :class:`ValueError` naming the file and, where it can
be found, the 1-based line number. Paths may name pipes (``<(cat f)``), FIFOs
and gzip, bz2 or xz files, which are read once into memory up to a bound (see
:mod:`fmnumba._source`); a UTF-8 byte-order mark is skipped.
"""

from __future__ import annotations

import csv
import math
from array import array
from typing import NamedTuple, Optional

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from ._formats import FORMAT_ALIASES
from ._source import Source, open_source

__all__ = [
    "FORMAT_ALIASES",
    "Dataset",
    "RatingEncoder",
    "detect_format",
    "load_libffm",
    "load_libsvm",
    "load_meta",
    "load_movielens",
    "load_ratings",
    "read_data",
    "resolve_format",
]

_INT32_MAX = np.iinfo(np.int32).max


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

_MAX_INDEX = 2**62  # feature indices beyond this cannot be a column of any model


def _show(token: str) -> str:
    """repr of a token for a message, cut to 40 characters."""
    return repr(token if len(token) <= 40 else token[:40] + "...")


def _finite(token: str, what: str) -> float:
    """float(token), rejecting text, nan and inf."""
    try:
        value = float(token)
    except ValueError:
        raise ValueError(f"{what} {_show(token)} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {_show(token)} is not a finite number")
    return value


def _index(token: str, what: str, limit=_MAX_INDEX) -> int:
    try:
        value = int(token)
    except ValueError:
        raise ValueError(f"{what} {_show(token)} is not an integer") from None
    if value < 0:
        raise ValueError(f"{what} {_show(token)} is negative")
    if value > limit:
        raise ValueError(f"{what} {_show(token)} is too large (at most {limit}); "
                         "renumber or hash the ids")
    return value


def _build_csr(indptr, indices, data, n_rows, n_cols, dtype) -> sp.csr_matrix:
    """CSR in canonical form (sorted indices, duplicates summed)."""
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    data = np.asarray(data, dtype=dtype)
    if n_cols <= _INT32_MAX and indices.size <= _INT32_MAX:
        indptr = indptr.astype(np.int32)
        indices = indices.astype(np.int32)
    X = sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))
    X.sum_duplicates()  # also sorts indices
    return X


def _canonical(X: sp.spmatrix, dtype) -> sp.csr_matrix:
    X = sp.csr_matrix(X, dtype=dtype)
    X.sum_duplicates()
    X.sort_indices()
    return X


# ---------------------------------------------------------------------------
# libsvm / libFM
# ---------------------------------------------------------------------------

def _parse_libsvm_line(line: str):
    """Return (label, [index], [value]) or None for a blank/comment line."""
    hash_pos = line.find("#")
    if hash_pos >= 0:
        line = line[:hash_pos]
    tokens = line.split()
    if not tokens:
        return None
    label = _finite(tokens[0], "label")
    idx, val = [], []
    for tok in tokens[1:]:
        key, sep, value = tok.partition(":")
        if not sep or ":" in value:
            raise ValueError(f"malformed token {_show(tok)}: expected index:value")
        if key == "qid":
            _index(value, "qid")
            continue
        idx.append(_index(key, "feature index"))
        val.append(_finite(value, "feature value"))
    return label, idx, val


def _iter_libsvm(path: Source, zero_based):
    """Yield (lineno, label, idx, val), raising ValueError with path:line."""
    with path.text() as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                parsed = _parse_libsvm_line(line)
                if parsed is None:
                    continue
                if zero_based is False and any(i == 0 for i in parsed[1]):
                    raise ValueError("feature index 0 in a one-based file (zero_based=False)")
            except ValueError as exc:
                raise ValueError(f"{path}, line {lineno}: {exc}") from None
            yield (lineno,) + parsed


def _load_libsvm_py(path: Source, n_features, zero_based, dtype):
    """Pure-Python libsvm reader: accepts unsorted and repeated indices."""
    labels = array("d")
    indptr = array("q", [0])
    indices = array("q")
    data = array("d")
    for _, label, idx, val in _iter_libsvm(path, zero_based):
        labels.append(label)
        indices.extend(idx)
        data.extend(val)
        indptr.append(len(indices))
    ind = np.asarray(indices, dtype=np.int64)
    if zero_based is False or (zero_based == "auto" and ind.size and ind.min() > 0):
        ind = ind - 1
    needed = int(ind.max()) + 1 if ind.size else 0
    if n_features is None:
        n_features = needed
    elif needed > n_features:
        raise ValueError(f"{path}: n_features was set to {n_features}, "
                         f"but the file contains {needed} features")
    X = _build_csr(indptr, ind, data, len(labels), int(n_features), dtype)
    return X, np.array(labels, dtype=np.float64)


def load_libsvm(path, n_features=None, zero_based="auto", dtype=np.float32):
    """Load a libsvm/svmlight (or libFM text) file.

    Parameters
    ----------
    path : str or os.PathLike
    n_features : int, optional
        Number of columns; inferred from the largest index when None.
    zero_based : bool or "auto"
        Whether indices start at 0. ``"auto"`` (as in scikit-learn) treats a
        file containing no index 0 as one-based and shifts it down by one.
        Pass an explicit bool to keep train and test files consistent.
    dtype : numpy dtype of ``X``.

    Returns
    -------
    X : scipy.sparse.csr_matrix, sorted indices, duplicates summed.
    y : ndarray of float64 labels.

    Parsing is done by :func:`sklearn.datasets.load_svmlight_file`; files with
    unsorted or repeated indices (which it rejects) fall back to a streaming
    Python parser. ``qid:`` tokens and ``#`` comments are ignored; nan/inf
    labels or values are rejected.
    """
    from sklearn.datasets import load_svmlight_file

    path = open_source(path)
    if zero_based not in (True, False, "auto"):
        raise ValueError(f"zero_based must be True, False or 'auto', got {zero_based!r}")
    if n_features is not None:
        n_features = int(n_features)
        if n_features < 0:
            raise ValueError(f"n_features must be non-negative, got {n_features}")
    try:
        with path.binary() as fh:
            X, y = load_svmlight_file(fh, n_features=n_features, dtype=dtype,
                                      zero_based=zero_based)
    except OverflowError:  # sklearn's compiled reader stops at 32-bit feature indices
        return _load_libsvm_py(path, n_features, zero_based, dtype)
    except ValueError as exc:
        if "sorted and unique" in str(exc):
            return _load_libsvm_py(path, n_features, zero_based, dtype)
        # Re-scan in Python to report the offending line.
        for _ in _iter_libsvm(path, zero_based):
            pass
        raise ValueError(f"{path}: {exc}") from exc
    if not (np.isfinite(X.data).all() and np.isfinite(y).all()):
        for _ in _iter_libsvm(path, zero_based):  # raises at the first nan/inf
            pass
        raise ValueError(f"{path}: non-finite label or feature value")
    return _canonical(X, dtype), np.asarray(y, dtype=np.float64)


# ---------------------------------------------------------------------------
# libffm
# ---------------------------------------------------------------------------

def load_libffm(path, n_features=None, dtype=np.float32, on_conflict="first"):
    """Load a libffm file (``label field:feature:value ...`` per line).

    Feature and field indices are used as given (0-based, as in xLearn).
    The file is streamed line by line; blank lines and lines starting with
    ``#`` are skipped.

    Parameters
    ----------
    path : str or os.PathLike
    n_features : int, optional
        Number of columns; inferred from the largest feature index when None.
    dtype : numpy dtype of ``X``.
    on_conflict : {"first", "raise", "split"}
        Default "first": the FM ignores fields except for per-group L2, and
        real hashed data reuse features across fields. What to do when a feature appears under two different fields.
        ``"raise"``: ValueError naming the line. ``"first"``: keep the field
        seen first. ``"split"``: give each later (field, feature) pair its own
        new column, numbered after the base columns in order of appearance
        (so such columns are not aligned across files). Hashed data such as
        the xLearn Criteo sample does reuse features across fields.

    Returns
    -------
    X : scipy.sparse.csr_matrix, sorted indices, duplicates summed.
    y : ndarray of float64 labels (e.g. 0/1 or -1/1, kept as given).
    fields : int32 ndarray of length ``X.shape[1]`` with each column's field,
        -1 for features that never occur.
    """
    path = open_source(path)
    if on_conflict not in ("raise", "first", "split"):
        raise ValueError(f"on_conflict must be 'raise', 'first' or 'split', got {on_conflict!r}")
    labels = array("d")
    indptr = array("q", [0])
    indices = array("q")
    data = array("d")
    field_of = {}      # feature -> field
    extra = {}         # (field, feature) -> extra column number (split mode)
    max_feat = -1
    with path.text() as fh:
        for lineno, line in enumerate(fh, 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            tokens = stripped.split()
            try:
                labels_value = _finite(tokens[0], "label")
                row_idx, row_val = [], []
                for tok in tokens[1:]:
                    parts = tok.split(":")
                    if len(parts) != 3:
                        raise ValueError(f"malformed token {_show(tok)}: expected "
                                         "field:feature:value")
                    field = _index(parts[0], "field index", _INT32_MAX)
                    feat = _index(parts[1], "feature index")
                    value = _finite(parts[2], "feature value")
                    known = field_of.setdefault(feat, field)
                    if known != field:
                        if on_conflict == "raise":
                            raise ValueError(
                                f"feature {feat} appears in field {field} but was "
                                f"earlier seen in field {known}")
                        if on_conflict == "split":
                            col = extra.setdefault((field, feat), len(extra))
                            feat = -1 - col     # placeholder, remapped below
                    if feat > max_feat:
                        max_feat = feat
                    row_idx.append(feat)
                    row_val.append(value)
            except ValueError as exc:
                raise ValueError(f"{path}, line {lineno}: {exc}") from None
            labels.append(labels_value)
            indices.extend(row_idx)
            data.extend(row_val)
            indptr.append(len(indices))

    needed = max_feat + 1
    if n_features is None:
        n_features = needed
    elif int(n_features) < needed:
        raise ValueError(f"{path}: n_features was set to {n_features}, "
                         f"but the file contains feature index {max_feat}")
    n_features = int(n_features)
    fields = np.full(n_features + len(extra), -1, dtype=np.int32)
    if field_of:
        feats = np.fromiter(field_of.keys(), dtype=np.int64, count=len(field_of))
        fields[feats] = np.fromiter(field_of.values(), dtype=np.int64, count=len(field_of))
    ind = np.array(indices, dtype=np.int64)
    if extra:
        for (field, _), col in extra.items():
            fields[n_features + col] = field
        neg = ind < 0
        ind[neg] = n_features + (-1 - ind[neg])
    X = _build_csr(indptr, ind, data, len(labels), fields.size, dtype)
    return X, np.array(labels, dtype=np.float64), fields


# ---------------------------------------------------------------------------
# rating triples
# ---------------------------------------------------------------------------

_ALIASES = {
    "user": ("user", "userid", "user_id", "uid", "users"),
    "item": ("item", "itemid", "item_id", "iid", "items", "movie", "movieid",
             "movie_id", "product", "productid", "product_id"),
    "rating": ("rating", "ratings", "score", "rate", "stars", "value"),
}
_DEFAULT_POS = {"user": 0, "item": 1, "rating": 2}


def _norm(name: str) -> str:
    return name.strip().strip('"').lower().replace("_", "").replace("-", "").replace(" ", "")


def _resolve_column(col, header):
    """Column position for ``col`` (int position or name) given header tokens."""
    if isinstance(col, (int, np.integer)):
        if col < 0:
            raise ValueError(f"column position must be non-negative, got {col}")
        return int(col)
    if header is None:
        if col in _DEFAULT_POS:
            return _DEFAULT_POS[col]
        raise ValueError(f"column {col!r} given by name but the file has no header")
    names = [h.strip() for h in header]
    if col in names:
        return names.index(col)
    normed = [_norm(h) for h in names]
    candidates = [_norm(col)] + [_norm(a) for a in _ALIASES.get(col, ())]
    for cand in candidates:
        if cand in normed:
            return normed.index(cand)
    prefix = [i for i, h in enumerate(normed) if h.startswith(_norm(col))]
    if len(prefix) == 1:
        return prefix[0]
    raise ValueError(f"column {col!r} not found in header {names}")


def _detect_sep(line: str):
    for sep in ("\t", "::", ",", ";"):
        if sep in line:
            return sep
    return None


def _splitter(sep):
    if sep in (",", ";"):
        return lambda line: next(csv.reader([line], delimiter=sep))
    if sep is None:
        return str.split
    return lambda line: line.split(sep)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _as_ids(tokens, id_type=None):
    """Integer array if every id is a canonical integer, else a str array
    (always str with id_type=str)."""
    if id_type is str:
        return np.array(tokens, dtype=str)
    try:
        ints = [int(t) for t in tokens]
    except ValueError:
        return np.array(tokens, dtype=str)
    if all(str(i) == t for i, t in zip(ints, tokens)):
        return np.array(ints, dtype=np.int64)
    return np.array(tokens, dtype=str)


def load_ratings(path, sep=None, columns=("user", "item", "rating"), header="auto",
                 id_type=None):
    """Read rating triples from MovieLens ``u.data`` or a delimited file.

    Parameters
    ----------
    path : str or os.PathLike
    sep : str, optional
        Field separator; detected from the first line when None (tab, ``::``,
        comma, semicolon, else whitespace). Comma/semicolon files honour CSV
        quoting.
    columns : 3-tuple of int or str
        User, item and rating columns, by 0-based position or header name.
        Names match the header exactly, case-insensitively, via common aliases
        (``userId``, ``movieId``, ...) or as a unique prefix; without a header
        the default names mean positions 0, 1, 2.
    header : bool or "auto"
        ``"auto"``: the first line is a header if its rating field is not
        numeric.
    id_type : None or str
        None: ids come back as int64 when every id is a plain integer, else
        as str; ``str``: always as str (the ids exactly as written).

    Returns
    -------
    users, items : int64 or str arrays (see ``id_type``).
    ratings : float64 array.
    """
    path = open_source(path)
    if len(columns) != 3:
        raise ValueError("columns must be (user, item, rating)")
    if header not in (True, False, "auto"):
        raise ValueError(f"header must be True, False or 'auto', got {header!r}")
    if id_type not in (None, str):
        raise ValueError(f"id_type must be None or str, got {id_type!r}")
    users, items = [], []
    ratings = array("d")
    split = None
    pos = None
    with path.text(newline="") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if split is None:
                if sep is None:
                    sep = _detect_sep(line)
                split = _splitter(sep)
                tokens = [t.strip() for t in split(line)]
                has_header = header
                if header == "auto":
                    rcol = columns[2]
                    if isinstance(rcol, (int, np.integer)):
                        has_header = rcol >= len(tokens) or not _is_number(tokens[rcol])
                    else:
                        has_header = (len(tokens) <= 2 or not _is_number(tokens[2])
                                      or any(_norm(rcol) == _norm(t) for t in tokens))
                try:
                    pos = [_resolve_column(c, tokens if has_header else None) for c in columns]
                except ValueError as exc:
                    raise ValueError(f"{path}, line {lineno}: {exc}") from None
                need = max(pos) + 1
                if has_header:
                    continue
            else:
                tokens = [t.strip() for t in split(line)]
            try:
                if len(tokens) < need:
                    raise ValueError(f"expected at least {need} fields, got {len(tokens)}")
                u, i, r = (tokens[p] for p in pos)
                if not u or not i:
                    raise ValueError("empty user or item id")
                ratings.append(_finite(r, "rating"))
            except ValueError as exc:
                raise ValueError(f"{path}, line {lineno}: {exc}") from None
            users.append(u)
            items.append(i)
    return (_as_ids(users, id_type), _as_ids(items, id_type),
            np.array(ratings, dtype=np.float64))


def _ordered_unique(values):
    uniq = dict.fromkeys(values)
    try:
        return sorted(uniq)
    except TypeError:
        return list(uniq)


def _id_array(ids):
    """Array of ids; object dtype unless all ids share one type."""
    if ids and len({type(k) for k in ids}) == 1:
        return np.array(ids)
    return np.array(ids, dtype=object)


def _as_list(values):
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-d array of ids, got shape {arr.shape}")
    return arr.tolist()


class RatingEncoder(BaseEstimator):
    """One-hot encode (user, item) pairs, with optional side features, for a
    factorization machine.

    Output columns: ``n_users_`` user columns, ``n_items_`` item columns,
    then the columns of the user attributes and of the item attributes (see
    :mod:`fmnumba.attributes`: numeric values scaled to [-1, 1], categorical
    one-hot, multi-valued lists weighted 1/len per row). Ids may be ints or
    strings; ids with all-integer values sort numerically, others as text.
    Unknown ids at transform time give that row no entry in the
    corresponding one-hot block (never an error); their attributes are still
    used when the attribute table has a row for them.

    ``fit``/``transform`` take ``(users, items)`` or a single ``(n, 2)``
    array, so the encoder also works inside a scikit-learn pipeline.

    Parameters
    ----------
    dtype : numpy dtype of the output.
    user_features, item_features : AttributeTable, file path or pandas
        DataFrame indexed by id, optional. Attribute tables; ids are matched
        as text.

    Attributes
    ----------
    user_index_, item_index_ : dict id -> column (item columns counted from 0
        within the item block; add ``n_users_`` for the matrix column).
    users_, items_ : ndarrays of the ids in column order.
    n_users_, n_items_, n_output_features_ : int
    fields_ : int32 ndarray, one feature group per column: 0 for user
        columns, 1 for item columns, then one group per user attribute and
        one per item attribute (for per-group L2 and FFM fields).
    group_names_ : list of str, the name of each group (``user``, ``item``,
        ``user.age``, ``item.genre``, ...).
    """

    def __init__(self, dtype=np.float32, user_features=None, item_features=None):
        self.dtype = dtype
        self.user_features = user_features
        self.item_features = item_features

    @staticmethod
    def _pair(users, items):
        if items is None:
            arr = np.asarray(users, dtype=object)
            if arr.ndim != 2 or arr.shape[1] != 2:
                raise ValueError("expected (users, items) or an array of shape (n, 2)")
            return arr[:, 0].tolist(), arr[:, 1].tolist()
        u, i = _as_list(users), _as_list(items)
        if len(u) != len(i):
            raise ValueError(f"users and items differ in length: {len(u)} != {len(i)}")
        return u, i

    def fit(self, users, items=None, y=None):
        """Learn the user and item vocabularies (ids sorted where they
        compare) and encode the attribute tables."""
        u, i = self._pair(users, items)
        return self._set_vocabulary(_ordered_unique(u), _ordered_unique(i))

    @classmethod
    def from_vocabulary(cls, users, items, dtype=np.float32, user_features=None,
                        item_features=None):
        """A fitted encoder whose columns are `users` then `items`, in the
        order given (e.g. the ``users_`` and ``items_`` of an encoder fitted
        earlier), then the attribute columns. Ids must be unique within each
        list."""
        ulist, ilist = _as_list(users), _as_list(items)
        for name, ids in (("users", ulist), ("items", ilist)):
            if len(set(ids)) != len(ids):
                raise ValueError(f"{name} holds repeated ids; pass each id once")
        return cls(dtype=dtype, user_features=user_features,
                   item_features=item_features)._set_vocabulary(ulist, ilist)

    def _set_vocabulary(self, ulist, ilist):
        from .attributes import EncodedAttributes, as_table
        self.user_index_ = {k: n for n, k in enumerate(ulist)}
        self.item_index_ = {k: n for n, k in enumerate(ilist)}
        self.users_ = _id_array(ulist)
        self.items_ = _id_array(ilist)
        self.n_users_ = len(ulist)
        self.n_items_ = len(ilist)
        self.user_attributes_ = self.item_attributes_ = None
        if self.user_features is not None:
            self.user_attributes_ = EncodedAttributes(
                as_table(self.user_features, "user_features"), "user")
        if self.item_features is not None:
            self.item_attributes_ = EncodedAttributes(
                as_table(self.item_features, "item_features"), "item")
        fields = [np.repeat(np.array([0, 1], dtype=np.int32), [self.n_users_, self.n_items_])]
        names = ["user", "item"]
        for enc in (self.user_attributes_, self.item_attributes_):
            if enc is not None:
                fields.append(enc.groups + len(names))
                names += [f"{enc.prefix}.{a}" for a in enc.table.names]
        self.fields_ = np.concatenate(fields).astype(np.int32)
        self.group_names_ = names
        self.n_output_features_ = int(self.fields_.size)
        return self

    def _blocks(self):
        """[(offset, EncodedAttributes, side)] of the attribute blocks."""
        out, off = [], self.n_users_ + self.n_items_
        for enc, side in ((self.user_attributes_, 0), (self.item_attributes_, 1)):
            if enc is not None:
                out.append((off, enc, side))
                off += enc.n_columns
        return out

    def _check_fitted(self):
        if not hasattr(self, "user_index_"):
            from sklearn.exceptions import NotFittedError
            raise NotFittedError("RatingEncoder is not fitted yet; call fit first")

    def transform_side(self, ids, side):
        """The columns of one side only: for side="user" the user one-hot
        and user attribute entries of each id, for "item" the item ones.
        CSR of shape (len(ids), n_output_features_); a (user, item) row of
        :meth:`transform` is the sum of the two sides' rows."""
        self._check_fitted()
        if side not in ("user", "item"):
            raise ValueError(f"side must be 'user' or 'item', got {side!r}")
        ids = _as_list(ids)
        n = len(ids)
        index = self.user_index_ if side == "user" else self.item_index_
        off = 0 if side == "user" else self.n_users_
        col = np.fromiter((_safe_get(index.get, k) for k in ids), dtype=np.int64, count=n)
        known = col >= 0
        indptr = np.concatenate([[0], np.cumsum(known)])
        X = _build_csr(indptr, col[known] + off, np.ones(int(known.sum()), self.dtype), n,
                       self.n_output_features_, self.dtype)
        for boff, enc, bside in self._blocks():
            if bside == (0 if side == "user" else 1):
                ip, c, v = enc.lookup([str(k) for k in ids])
                X = _canonical(X + _build_csr(ip, c + boff, v, n, self.n_output_features_,
                                              self.dtype), self.dtype)
        return X

    def transform(self, users, items=None):
        """Return the CSR matrix of shape (n, n_output_features_)."""
        self._check_fitted()
        u, i = self._pair(users, items)
        X = self.transform_side(u, "user") + self.transform_side(i, "item")
        return _canonical(X, self.dtype)

    def fit_transform(self, users, items=None, y=None):
        """Fit, then transform the same pairs."""
        return self.fit(users, items).transform(users, items)

    def get_feature_names_out(self, input_features=None):
        """Column names ``user=<id>``, ``item=<id>``, then the attributes'
        (``user.age``, ``item.genre=Comedy``, ...)."""
        names = [f"user={k}" for k in self.user_index_] + [f"item={k}" for k in self.item_index_]
        for _, enc, _ in self._blocks():
            names += enc.names
        return np.array(names, dtype=object)

    def to_json(self):
        """The fitted encoder as a JSON-able dict, ids as text (see
        :meth:`from_json`)."""
        if not hasattr(self, "user_index_"):
            raise ValueError("RatingEncoder is not fitted yet; call fit first")
        doc = {"users": [str(k) for k in self.user_index_],
               "items": [str(k) for k in self.item_index_]}
        for key, enc in (("user_features", self.user_attributes_),
                         ("item_features", self.item_attributes_)):
            if enc is not None:
                doc[key] = enc.table.to_json()
        return doc

    @classmethod
    def from_json(cls, doc, dtype=np.float32):
        """The fitted encoder :meth:`to_json` described (ids as text);
        ValueError when malformed."""
        from .attributes import AttributeTable
        if not isinstance(doc, dict):
            raise ValueError("malformed encoder description (expected a JSON object)")
        users, items = doc.get("users"), doc.get("items")
        if not (isinstance(users, list) and isinstance(items, list)
                and all(isinstance(k, str) for k in users + items)):
            raise ValueError("malformed encoder description (users/items must be lists "
                             "of strings)")
        tables = {key: AttributeTable.from_json(doc[key]) for key in
                  ("user_features", "item_features") if doc.get(key) is not None}
        return cls.from_vocabulary(users, items, dtype=dtype, **tables)


def load_meta(path, n_features=None):
    """Read a libFM ``-meta`` group file: line j holds the group id (an
    integer >= 0) of feature j. Returns an int64 array; with `n_features`,
    its first n_features entries (a file covering fewer features is an
    error)."""
    path = open_source(path)
    groups = []
    with path.text() as fh:
        for lineno, line in enumerate(fh, 1):
            tok = line.strip()
            if not tok:
                continue
            try:
                groups.append(_index(tok.split()[0], "group id", _INT32_MAX))
            except ValueError as exc:
                raise ValueError(f"{path}, line {lineno}: {exc}") from None
    if n_features is not None and len(groups) < n_features:
        raise ValueError(f"{path}: {len(groups)} group ids for {n_features} features; give "
                         "one line (a group id) per feature")
    return np.asarray(groups[:n_features] if n_features is not None else groups,
                      dtype=np.int64)


def _safe_get(get, key):
    try:
        return get(key, -1)
    except TypeError:  # unhashable id: unknown
        return -1


def load_movielens(path, encoder=None, dtype=np.float32, user_features=None,
                   item_features=None, **kwargs):
    """Load a MovieLens ``u.data``-style ratings file as ``(X, y, encoder)``.

    ``X`` is the one-hot user/item CSR matrix (plus side-feature columns
    when `user_features` / `item_features` are given, e.g. the paths of
    ``u.user`` and ``u.item``), ``y`` the float64 ratings. Pass the
    ``encoder`` returned for the training file to encode a test file onto
    the same columns (unknown ids get no entry). Extra keyword arguments go
    to :func:`load_ratings`.
    """
    users, items, ratings = load_ratings(open_source(path), **kwargs)
    if encoder is None:
        encoder = RatingEncoder(dtype=dtype, user_features=user_features,
                                item_features=item_features).fit(users, items)
    elif user_features is not None or item_features is not None:
        raise ValueError("user_features/item_features are for fitting; the given encoder "
                         "already holds its attribute tables")
    X = encoder.transform(users, items)
    if X.dtype != dtype:
        X = X.astype(dtype)
    return X, ratings, encoder


# ---------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------

class Dataset(NamedTuple):
    """Result of :func:`read_data`. ``fields`` is set for libffm and ratings
    (0 = user, 1 = item); ``encoder`` for ratings."""
    X: sp.csr_matrix
    y: np.ndarray
    fields: Optional[np.ndarray] = None
    encoder: Optional[RatingEncoder] = None


def detect_format(path, max_lines=20) -> str:
    """Guess ``"libffm"``, ``"libsvm"`` or ``"ratings"`` from the first lines.

    Tokens ``a:b:c`` mean libffm, ``a:b`` libsvm, delimited columns without
    colons ratings. A file whose first lines hold only labels is libsvm.
    """
    path = open_source(path)
    seen = 0
    with path.text() as fh:
        for line in fh:
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            seen += 1
            tokens = stripped.split()
            colons = [t.count(":") for t in tokens[1:] if not t.startswith("qid:")]
            if any(c == 2 for c in colons):
                return "libffm"
            if any(c == 1 for c in colons):
                return "libsvm"
            if _detect_sep(stripped) is not None or len(tokens) >= 3:
                return "ratings"
            if seen >= max_lines:
                break
    if seen == 0:
        raise ValueError(f"{path}: cannot detect the format of an empty file")
    return "libsvm"


def resolve_format(path, format="auto") -> str:
    """The canonical format ("libsvm", "libffm" or "ratings") that
    :func:`read_data` reads ``path`` as: ``format`` looked up in
    :data:`FORMAT_ALIASES`, or detected from the file for "auto"."""
    if format == "auto":
        return detect_format(open_source(path))
    try:
        return FORMAT_ALIASES[str(format).lower()]
    except KeyError:
        raise ValueError(f"unknown format {format!r}; expected 'auto' or one of "
                         f"{sorted(FORMAT_ALIASES)}") from None


def read_data(path, format="auto", **kwargs) -> Dataset:
    """Load ``path`` in any supported format and return a :class:`Dataset`.

    ``format``: "auto" (see :func:`detect_format`), "libsvm" (aliases
    "svmlight", "libfm"), "libffm" ("ffm"), or "ratings" ("movielens", "csv").
    Keyword arguments go to the matching loader (:func:`load_libsvm`,
    :func:`load_libffm`, :func:`load_movielens`).
    """
    path = open_source(path)  # read once: a pipe cannot be read twice
    kind = resolve_format(path, format)
    if kind == "libsvm":
        X, y = load_libsvm(path, **kwargs)
        return Dataset(X, y)
    if kind == "libffm":
        X, y, fields = load_libffm(path, **kwargs)
        return Dataset(X, y, fields=fields)
    X, y, encoder = load_movielens(path, **kwargs)
    return Dataset(X, y, fields=encoder.fields_, encoder=encoder)
