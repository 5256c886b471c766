"""A dependency-free progress bar with ETA and live metrics (writes to stderr)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _fmt_time(s: float) -> str:
    if s != s or s == float("inf"):
        return "--:--"
    s = int(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


class ProgressBar:
    """``bar = ProgressBar(total, "train"); bar.update(n, loss=0.3); bar.close()``.

    Shows done/total, percent, elapsed, ETA (from the mean rate so far) and ``key=value``
    metrics. When the stream is not a terminal it prints a line at most every
    ``min_interval`` seconds instead of redrawing.
    """

    def __init__(self, total: float, desc: str = "", stream: TextIO | None = None,
                 enabled: bool = True, min_interval: float = 10.0, start: float = 0.0):
        self.total, self.desc, self.enabled = float(total), desc, enabled
        self.stream = stream or sys.stderr
        self.n = float(start)
        self._start_n = float(start)
        self.t0 = time.monotonic()
        self.metrics: dict[str, Any] = {}
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = -1e9
        self.min_interval = min_interval

    def update(self, n: float = 1, **metrics: Any) -> None:
        self.n += n
        self.metrics.update(metrics)
        self._draw()

    def set(self, n: float, **metrics: Any) -> None:
        self.n = float(n)
        self.metrics.update(metrics)
        self._draw()

    def _line(self) -> str:
        el = time.monotonic() - self.t0
        done = self.n - self._start_n
        rate = done / el if el > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else float("inf")
        frac = self.n / self.total if self.total else 1.0
        width = 24
        fill = int(round(frac * width))
        ms = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in self.metrics.items())
        return (f"{self.desc} [{'#' * fill}{'.' * (width - fill)}] {self.n:g}/{self.total:g} "
                f"{100 * frac:5.1f}% {_fmt_time(el)}<{_fmt_time(eta)} {ms}")

    def _draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._tty:
            self.stream.write("\r" + self._line() + ("\n" if final else ""))
            self.stream.flush()
        elif final or now - self._last >= self.min_interval:
            self.stream.write(self._line() + "\n")
            self.stream.flush()
            self._last = now

    def close(self) -> None:
        self._draw(final=True)
