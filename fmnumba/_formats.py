"""The names of the input formats (kept apart from the readers so that the
command line's parser loads without NumPy, SciPy or scikit-learn)."""

#: every name ``read_data`` accepts for a format, mapped to its canonical name
FORMAT_ALIASES = {
    "libsvm": "libsvm", "svmlight": "libsvm", "libfm": "libsvm",
    "libffm": "libffm", "ffm": "libffm",
    "ratings": "ratings", "movielens": "ratings", "csv": "ratings",
}
