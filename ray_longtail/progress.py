"""Progress of long work as periodic log lines (done/total, rate, ETA): readable in a CI log or `ray job logs`,
where a redrawn bar would be noise, and silenced with the rest of the INFO log by `-q`. Ray Data's own bars are
on only where they can redraw: an interactive terminal (`ray_data_bars`)."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("ray_longtail.progress")


def ray_data_bars() -> bool:
    """Ray Data progress bars: on a terminal and when INFO is shown (not `-q`); off in CI logs and job logs."""
    return sys.stderr.isatty() and log.isEnabledFor(logging.INFO)


def progress_line(what: str, done: float, total: float, unit: str, seconds: float) -> str:
    """'embed: 2048/4037 items (51 %), 310 items/s, ETA 6 s'."""
    rate = done / seconds if seconds > 0 else 0.0
    eta = f", ETA {(total - done) / rate:.0f} s" if rate > 0 and done < total else ""
    share = f" ({100 * done / total:.0f} %)" if total else ""
    return f"{what}: {done:g}/{total:g} {unit}{share}, {rate:.3g} {unit}/s{eta}"


class Progress:
    """Counts work of known size; logs a line at its first step, then at most every `every_s` seconds, and once
    when all is done."""

    def __init__(self, what: str, total: float, unit: str = "items", every_s: float = 10.0):
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.done = 0.0
        self.start, self.last = time.perf_counter(), float("-inf")  # the first step is logged: work has begun

    def advance(self, n: float = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            log.info(progress_line(self.what, self.done, self.total, self.unit, now - self.start))
