"""Exit statuses and the one-line error every command reports."""

EXIT_OK = 0
EXIT_ERROR = 2


class CLIError(Exception):
    """A user error reported as one line on stderr with exit status 2."""


def one_line(exc):
    """The message of `exc` on one line (an OSError as 'FILE: reason')."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())
