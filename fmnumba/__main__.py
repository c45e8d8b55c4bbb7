"""``python -m fmnumba ...``: the same as the ``fmnumba`` command."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
