"""Byte progress for downloads: a tqdm bar (size and speed) on a terminal, a line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from typing import Callable


def human_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


class ByteProgress:
    """Progress of one file: ``update(n)`` per chunk, ``close()`` at the end (prints size, time and speed)."""

    def __init__(self, label: str, total: int | None, done: int, echo: Callable[[str], None],
                 interval: float = 5.0, bar: bool | None = None) -> None:
        self.label, self.total, self.done, self.echo, self.interval = label, total, done, echo, interval
        self.start_done, self.started = done, time.monotonic()
        self._last = self.started
        self._bar = None
        if bar if bar is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                             desc=label, leave=False, dynamic_ncols=True)

    def speed(self) -> float:
        """Bytes per second fetched in this session (resumed bytes not counted)."""
        return (self.done - self.start_done) / max(time.monotonic() - self.started, 1e-6)

    def update(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            of = f" of {human_bytes(self.total)} ({100 * self.done / self.total:.0f}%)" if self.total else ""
            self.echo(f"  {self.label}: {human_bytes(self.done)}{of}, {human_bytes(self.speed())}/s")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        fetched = self.done - self.start_done
        resumed = f" (resumed after {human_bytes(self.start_done)})" if self.start_done else ""
        self.echo(f"  {self.label}: {human_bytes(fetched)} in {time.monotonic() - self.started:.1f} s, "
                  f"{human_bytes(self.speed())}/s{resumed}")
