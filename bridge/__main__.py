"""``python -m bridge``: the same entry point as the ``bridge`` console script."""

import sys

from bridge.runtime.cli import main

if __name__ == "__main__":
    sys.exit(main())
