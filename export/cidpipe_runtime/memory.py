"""Peak resident memory, per artifact where the OS allows it.

``ru_maxrss`` only ever grows, so in a process that benches several artifacts it is the peak of the
largest one so far, not of the one being measured. On Linux the peak (VmHWM) can be reset: writing "5"
to /proc/self/clear_refs sets it to the current RSS. :class:`PeakMemory` resets it before an artifact and
reads it after, so the number is the process's peak while that artifact loaded and ran (the process's
own baseline - interpreter, libraries, evaluation data - included; ``added_bytes`` is the part above the
RSS at the reset). Where the reset is not possible (macOS, a restricted /proc) the scope says so.
"""

from __future__ import annotations

import sys


def peak_rss_bytes() -> int:
    """ru_maxrss is in kilobytes on Linux and in bytes on macOS."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakMemory:
    """Peak RSS from :meth:`start` on: ``scope`` is ``artifact`` (reset worked) or ``process``."""

    def __init__(self) -> None:
        self.scope = "process"
        self.start_bytes: int | None = None

    def start(self) -> PeakMemory:
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            self.scope = "process"
            return self
        rss = _status_kb("VmRSS")
        self.scope = "artifact" if rss is not None and _status_kb("VmHWM") is not None else "process"
        self.start_bytes = rss * 1024 if rss is not None else None
        return self

    def peak_bytes(self) -> int:
        if self.scope == "artifact":
            hwm = _status_kb("VmHWM")
            if hwm is not None:
                return hwm * 1024
        return peak_rss_bytes()

    def describe(self) -> dict[str, object]:
        """What the peak covers, stored with the row so a reader knows how far to trust the number."""
        peak = self.peak_bytes()
        added = peak - self.start_bytes if self.scope == "artifact" and self.start_bytes is not None else None
        return {"scope": self.scope, "added_bytes": added}
