"""Side features: attribute tables keyed by user or item id, and how
:class:`fmnumba.readers.RatingEncoder` turns them into columns.

An :class:`AttributeTable` holds one row per id and one column per
attribute, each of one kind:

* ``"numeric"``: the value itself, divided by the column's largest absolute
  value in the table (so every value lies in [-1, 1]);
* ``"categorical"``: one-hot, one column per distinct value;
* ``"multi"``: a list of values (e.g. a film's genres), one column per
  distinct value, each present value weighted 1 / (number of values in the
  row) so a row's weights sum to 1.

Read them with :func:`load_features` (any delimited file keyed by an id
column) or :func:`load_movielens_users` / :func:`load_movielens_items`
(MovieLens 100k ``u.user`` and ``u.item``). Ids are matched as text, so the
id ``1`` of a ratings file and ``"1"`` of an attribute file are the same.
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

KINDS = ("numeric", "categorical", "multi")

#: MovieLens 100k's genre flags in u.item, in file order (as listed in u.genre)
MOVIELENS_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western")

_KEY_NAMES = ("id", "userid", "user", "uid", "itemid", "item", "iid", "movieid", "movie",
              "productid", "product", "key")


class AttributeTable(NamedTuple):
    """Attributes by id. ``ids``: list of str (unique); ``names``: attribute
    names; ``kinds``: one of KINDS per attribute; ``values``: one list per
    attribute, aligned with ``ids`` (numeric: float or None for missing;
    categorical: str or None; multi: tuple of str)."""
    ids: list
    names: list
    kinds: list
    values: list

    def to_json(self):
        """A JSON-able dict (see :meth:`from_json`)."""
        return {"ids": list(self.ids), "names": list(self.names), "kinds": list(self.kinds),
                "values": [[list(v) if isinstance(v, tuple) else v for v in col]
                           for col in self.values]}

    @classmethod
    def from_json(cls, doc):
        """The table :meth:`to_json` described; ValueError when malformed."""
        try:
            ids, names, kinds, values = doc["ids"], doc["names"], doc["kinds"], doc["values"]
            ok = (isinstance(ids, list) and all(isinstance(i, str) for i in ids)
                  and isinstance(names, list) and all(isinstance(n, str) for n in names)
                  and isinstance(kinds, list) and len(kinds) == len(names)
                  and all(k in KINDS for k in kinds)
                  and isinstance(values, list) and len(values) == len(names)
                  and all(isinstance(c, list) and len(c) == len(ids) for c in values))
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise ValueError("malformed attribute table (expected ids, names, kinds, values)")
        cols = []
        for kind, col in zip(kinds, values):
            if kind == "multi":
                if not all(isinstance(v, list) and all(isinstance(t, str) for t in v)
                           for v in col):
                    raise ValueError("malformed attribute table (multi values must be lists)")
                cols.append([tuple(v) for v in col])
            elif kind == "numeric":
                if not all(v is None or (isinstance(v, (int, float)) and math.isfinite(v))
                           for v in col):
                    raise ValueError("malformed attribute table (numeric values)")
                cols.append(list(col))
            else:
                if not all(v is None or isinstance(v, str) for v in col):
                    raise ValueError("malformed attribute table (categorical values)")
                cols.append(list(col))
        return check_table(cls(ids, names, kinds, cols), "table")


def check_table(table, what):
    """`table` checked (unique ids, aligned columns); returns it."""
    if len(set(table.ids)) != len(table.ids):
        seen, dup = set(), None
        for i in table.ids:
            if i in seen:
                dup = i
                break
            seen.add(i)
        raise ValueError(f"{what}: id {dup!r} appears more than once; give one row per id")
    if len(set(table.names)) != len(table.names):
        raise ValueError(f"{what}: attribute names repeat: {table.names}")
    return table


def _cell_kind(token, list_sep):
    if list_sep and list_sep in token:
        return "multi"
    try:
        return "numeric" if math.isfinite(float(token)) else "categorical"
    except ValueError:
        return "categorical"


def _column(tokens, kind, list_sep, where):
    out = []
    for row, tok in enumerate(tokens):
        if kind == "multi":
            out.append(tuple(sorted({t.strip() for t in tok.split(list_sep) if t.strip()}))
                       if list_sep else ((tok,) if tok else ()))
        elif tok == "":
            out.append(None)
        elif kind == "numeric":
            try:
                v = float(tok)
            except ValueError:
                raise ValueError(f"{where}, row {row + 1}: {tok!r} is not a number "
                                 "(declare the column categorical in kinds=)") from None
            if not math.isfinite(v):
                raise ValueError(f"{where}, row {row + 1}: {tok!r} is not a finite number")
            out.append(v)
        else:
            out.append(tok)
    return out


def table_from_columns(ids, columns, kinds=None, list_sep="|", what="features"):
    """An AttributeTable from ids and {name: list of str tokens}; each
    attribute's kind from `kinds` or guessed: "multi" when a token holds
    `list_sep`, "numeric" when every token is a number, else categorical."""
    kinds = dict(kinds or {})
    unknown = set(kinds) - set(columns)
    if unknown:
        raise ValueError(f"{what}: kinds names unknown attributes {sorted(unknown)}; "
                         f"the attributes are {list(columns)}")
    names, kind_list, values = [], [], []
    for name, toks in columns.items():
        kind = kinds.get(name)
        if kind is None:
            seen = {_cell_kind(t, list_sep) for t in toks if t != ""}
            kind = ("multi" if "multi" in seen else
                    "numeric" if seen == {"numeric"} else "categorical")
        if kind not in KINDS:
            raise ValueError(f"{what}: kind {kind!r} of {name!r} is not one of {KINDS}")
        names.append(str(name))
        kind_list.append(kind)
        values.append(_column(toks, kind, list_sep, f"{what}, attribute {name!r}"))
    return check_table(AttributeTable([str(i) for i in ids], names, kind_list, values), what)


def _split_line(line, sep):
    if sep in (",", ";"):
        import csv
        return [t.strip() for t in next(csv.reader([line], delimiter=sep))]
    return [t.strip() for t in (line.split(sep) if sep else line.split())]


def load_features(path, key=0, sep=None, header="auto", names=None, columns=None,
                  kinds=None, list_sep=None, encoding="utf-8"):
    """Read an attribute table: one row per id, the id in column `key`.

    Parameters
    ----------
    path : str or os.PathLike
    key : int or str
        The id column, by position or header name.
    sep : str, optional
        Field separator; detected from the first line (tab, ``::``, comma,
        semicolon, ``|``, else whitespace).
    header : bool or "auto"
        "auto": the first line is a header when its key field is a name such
        as ``id``/``user_id``/``movieId``, or when it holds no number where
        the second line does.
    names : list of str, optional
        Attribute names for a file without header (default ``col1``, ...
        by position).
    columns : list of int or str, optional
        The attributes to keep (default every column but the key).
    kinds : dict name -> "numeric" | "categorical" | "multi", optional
        Overrides the guessed kind of an attribute.
    list_sep : str, optional
        Separator of multi-valued cells (default ``|`` unless it is the
        field separator).

    Returns
    -------
    AttributeTable
    """
    path = os.fspath(path)
    if header not in (True, False, "auto"):
        raise ValueError(f"header must be True, False or 'auto', got {header!r}")
    with open(path, "r", encoding=encoding, errors="replace", newline="") as fh:
        lines = [ln.rstrip("\r\n") for ln in fh]
    lines = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{path}: no rows")
    if sep is None:
        sep = next((s for s in ("\t", "::", ",", ";", "|") if s in lines[0]), None)
    if list_sep is None:
        list_sep = "|" if sep != "|" else None
    rows = [_split_line(ln, sep) for ln in lines]
    first = rows[0]
    if header == "auto":
        def num(t):
            try:
                float(t)
                return True
            except ValueError:
                return False
        kpos = key if isinstance(key, int) else None
        key_tok = first[kpos] if kpos is not None and kpos < len(first) else ""
        norm = key_tok.lower().replace("_", "").replace("-", "").replace(" ", "")
        second = rows[1] if len(rows) > 1 else []
        header = (not isinstance(key, int) or norm in _KEY_NAMES
                  or (not any(num(t) for t in first)
                      and any(num(t) for t in second)))
    if header:
        head, rows = first, rows[1:]
    else:
        width = max(len(r) for r in rows)
        head = [f"col{j}" for j in range(width)]
        if names is not None:
            kpos = key if isinstance(key, int) else 0
            rest = [j for j in range(width) if j != kpos]
            if len(names) != len(rest):
                raise ValueError(f"{path}: names has {len(names)} entries for the "
                                 f"{len(rest)} non-key columns")
            for j, n in zip(rest, names):
                head[j] = n

    def pos(c, what):
        if isinstance(c, (int, np.integer)):
            if not 0 <= c < len(head):
                raise ValueError(f"{path}: {what} column {c} is out of range "
                                 f"(the file has {len(head)} columns)")
            return int(c)
        if c in head:
            return head.index(c)
        raise ValueError(f"{path}: {what} column {c!r} not found in {head}")

    kpos = pos(key, "key")
    keep = ([pos(c, "attribute") for c in columns] if columns is not None
            else [j for j in range(len(head)) if j != kpos])
    ids, cols = [], {head[j]: [] for j in keep}
    for lineno, r in enumerate(rows, 2 if header else 1):
        if len(r) <= kpos or not r[kpos]:
            raise ValueError(f"{path}, row {lineno}: no id in column {head[kpos]!r}")
        ids.append(r[kpos])
        for j in keep:
            cols[head[j]].append(r[j] if j < len(r) else "")
    return table_from_columns(ids, cols, kinds, list_sep, what=path)


def load_movielens_users(path, columns=("age", "gender", "occupation")):
    """MovieLens 100k ``u.user`` (``id|age|gender|occupation|zip``) as an
    AttributeTable: age numeric, the others categorical (``zip`` only when
    asked for in `columns`)."""
    return load_features(path, key=0, sep="|", header=False,
                         names=["age", "gender", "occupation", "zip"], columns=list(columns),
                         kinds={c: ("numeric" if c == "age" else "categorical")
                                for c in columns}, encoding="latin-1")


def load_movielens_items(path):
    """MovieLens 100k ``u.item`` as an AttributeTable with one multi-valued
    attribute, ``genre``: the genres flagged 1 on the film's line."""
    path = os.fspath(path)
    ids, genres = [], []
    with open(path, "r", encoding="latin-1", newline="") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("|")
            flags = parts[-len(MOVIELENS_GENRES):]
            if len(parts) < 1 + len(MOVIELENS_GENRES) or any(f not in ("0", "1") for f in flags):
                raise ValueError(f"{path}, line {lineno}: expected id|title|...|19 genre flags "
                                 "(MovieLens 100k u.item)")
            ids.append(parts[0].strip())
            genres.append(tuple(g for g, f in zip(MOVIELENS_GENRES, flags) if f == "1"))
    return check_table(AttributeTable(ids, ["genre"], ["multi"], [genres]), path)


def read_features(path):
    """An attribute file as an AttributeTable: files named ``u.user`` and
    ``u.item`` are read as MovieLens 100k's; any other with
    :func:`load_features` (id in the first column)."""
    base = os.path.basename(os.fspath(path))
    if base == "u.user":
        return load_movielens_users(path)
    if base == "u.item":
        return load_movielens_items(path)
    return load_features(path)


def as_table(features, what):
    """An AttributeTable from a table, a file path or a pandas DataFrame
    (index = ids, list/tuple cells = multi-valued)."""
    if isinstance(features, AttributeTable):
        return check_table(features, what)
    if isinstance(features, (str, os.PathLike)):
        return read_features(features)
    if hasattr(features, "columns") and hasattr(features, "index"):  # a DataFrame
        names, kinds, values = [], [], []
        for name in features.columns:
            col = features[name].tolist()
            if any(isinstance(v, (list, tuple, set)) for v in col):
                kind = "multi"
                vals = [tuple(sorted({str(t) for t in v})) if isinstance(v, (list, tuple, set))
                        else (() if v is None or (isinstance(v, float) and math.isnan(v))
                              else (str(v),)) for v in col]
            elif features[name].dtype.kind in "biuf":
                kind = "numeric"
                vals = [None if not math.isfinite(float(v)) else float(v) for v in col]
            else:
                kind = "categorical"
                vals = [None if v is None or (isinstance(v, float) and math.isnan(v))
                        else str(v) for v in col]
            names.append(str(name))
            kinds.append(kind)
            values.append(vals)
        return check_table(AttributeTable([str(i) for i in features.index], names, kinds,
                                          values), what)
    raise TypeError(f"{what} must be an AttributeTable (fmnumba.attributes.load_features), "
                    f"a file path or a pandas DataFrame indexed by id; got "
                    f"{type(features).__name__}")


class EncodedAttributes:
    """An AttributeTable fitted to columns: attribute a's columns follow
    attribute a-1's. ``rows[id] = (cols, vals)`` within this block;
    ``names`` the column names (``<prefix>.<attr>`` or
    ``<prefix>.<attr>=<value>``); ``groups`` the attribute of each column."""

    def __init__(self, table, prefix):
        self.table = table
        self.prefix = prefix
        names, groups = [], []
        layout = []  # per attribute: ("numeric", col, scale) or (kind, {value: col})
        for a, (name, kind, col) in enumerate(zip(table.names, table.kinds, table.values)):
            if kind == "numeric":
                present = [abs(v) for v in col if v is not None]
                scale = max(present) if present and max(present) > 0 else 1.0
                layout.append(("numeric", len(names), scale))
                names.append(f"{prefix}.{name}")
                groups.append(a)
                continue
            if kind == "multi":
                vocab = sorted({t for v in col for t in v})
            else:
                vocab = sorted({v for v in col if v is not None})
            index = {}
            for v in vocab:
                index[v] = len(names)
                names.append(f"{prefix}.{name}={v}")
                groups.append(a)
            layout.append((kind, index))
        self.names = names
        self.groups = np.asarray(groups, dtype=np.int32)
        self.n_columns = len(names)
        self.rows = {}
        for r, key in enumerate(table.ids):
            cols, vals = [], []
            for lay, col in zip(layout, table.values):
                v = col[r]
                if lay[0] == "numeric":
                    if v is not None and v != 0:
                        cols.append(lay[1])
                        vals.append(v / lay[2])
                elif lay[0] == "multi":
                    if v:
                        w = 1.0 / len(v)
                        cols.extend(lay[1][t] for t in v)
                        vals.extend([w] * len(v))
                elif v is not None:
                    cols.append(lay[1][v])
                    vals.append(1.0)
            self.rows[key] = (cols, vals)

    def lookup(self, ids):
        """(indptr, cols, vals) of the attribute entries of each id (ids as
        str; ids without a row get none)."""
        indptr = [0]
        cols, vals = [], []
        empty = ((), ())
        for k in ids:
            c, v = self.rows.get(k, empty)
            cols.extend(c)
            vals.extend(v)
            indptr.append(len(cols))
        return (np.asarray(indptr, dtype=np.int64), np.asarray(cols, dtype=np.int64),
                np.asarray(vals, dtype=np.float64))
