"""Entry point for ``python -m cidpipe_runtime`` (see cli.py)."""

from __future__ import annotations

import sys

from cidpipe_runtime.cli import main

if __name__ == "__main__":
    sys.exit(main())
