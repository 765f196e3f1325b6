"""Peak resident memory of this process."""

from __future__ import annotations

import sys


def peak_rss_bytes() -> int:
    """ru_maxrss is in kilobytes on Linux and in bytes on macOS."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
