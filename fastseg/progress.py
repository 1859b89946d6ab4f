"""Progress of long runs on stderr: a live bar in a terminal, sparse plain lines elsewhere.

A batch job's log (stderr redirected to a file, as under Slurm) must not fill with bar
redraws: off a terminal, :class:`Progress` writes one plain line at a time, at most every
:data:`INTERVAL` seconds and only when the work advanced by :data:`STEP` percent since
the last line (or :data:`HEARTBEAT` seconds passed), then one line at the end::

    fastseg: 120/480 blocks (25%), 1m02s elapsed, ~3m06s left

That is at most about 20 lines per run plus 12 per hour, never a carriage return or an
escape code. In a terminal, with tqdm installed (the ``progress`` extra), it draws a live
tqdm bar instead; without tqdm a terminal gets the plain lines too. Nothing is written
for work shorter than :data:`DELAY` seconds.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

#: Seconds before anything is shown (short runs stay silent).
DELAY = 1.0
#: Least seconds between two plain lines.
INTERVAL = 30.0
#: Least progress, in percent of the total, between two plain lines.
STEP = 5.0
#: Seconds after which a plain line is written whatever the progress.
HEARTBEAT = 300.0


def duration(seconds: float) -> str:
    """``42s``, ``1m02s`` or ``2h05m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def note(text: str, stream: IO[str] | None = None) -> None:
    """Write one line ``fastseg: text`` to `stream` (default: the current stderr)."""
    out = sys.stderr if stream is None else stream
    out.write(f"fastseg: {text}\n")
    out.flush()


def _tqdm() -> Any:
    """The bar class of tqdm, or None without tqdm (the ``progress`` extra)."""
    try:
        return importlib.import_module("tqdm").tqdm
    except ImportError:
        return None


class Progress:
    """Counts finished units of work out of `total` and shows it on `stream`.

    Parameters
    ----------
    total : int
        Units of work (blocks, images).
    unit : str
        Name of one unit, singular (``"block"``); lines use its plural.
    stream : file, optional
        Default: the current ``sys.stderr``.
    live : bool, optional
        Draw a live tqdm bar; default: when `stream` is a terminal and tqdm is installed.
    delay, interval, step, heartbeat : float, optional
        Default: :data:`DELAY`, :data:`INTERVAL`, :data:`STEP`, :data:`HEARTBEAT`.
    clock : callable
        Seconds, monotonic (for tests).

    Use as a context manager: on a normal exit the last line (or the finished bar) is
    written; on an exception nothing more is.
    """

    def __init__(
        self,
        total: int,
        *,
        unit: str = "block",
        stream: IO[str] | None = None,
        live: bool | None = None,
        delay: float | None = None,
        interval: float | None = None,
        step: float | None = None,
        heartbeat: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = max(int(total), 0)
        self.done = 0
        self.unit = unit
        self.stream: IO[str] = sys.stderr if stream is None else stream
        self.delay = DELAY if delay is None else delay
        self.interval = INTERVAL if interval is None else interval
        self.step = STEP if step is None else step
        self.heartbeat = HEARTBEAT if heartbeat is None else heartbeat
        self._clock = clock
        self._start = self._last_time = clock()
        self._last_done = 0
        self._lines = 0
        self._closed = False
        self._lock = threading.Lock()
        tqdm = _tqdm()
        if live is None:
            isatty = getattr(self.stream, "isatty", None)
            live = bool(isatty is not None and isatty()) and tqdm is not None
        self._bar: Any = None
        if live and tqdm is not None:
            self._bar = tqdm(total=self.total, desc="fastseg", unit=unit, file=self.stream,
                             delay=self.delay, mininterval=0.5, dynamic_ncols=True)  # fmt: skip

    @property
    def live(self) -> bool:
        """Whether a live bar is drawn (else plain lines)."""
        return self._bar is not None

    def update(self, n: int = 1) -> None:
        """Count `n` more finished units."""
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)
                return
            if self.done >= self.total:
                return  # the last line is written by close()
            now = self._clock()
            since = now - self._last_time
            advanced = 100.0 * (self.done - self._last_done) / max(self.total, 1)
            due = since >= self.heartbeat or (
                since >= self.interval and (advanced >= self.step or self._lines == 0)
            )
            if due and now - self._start >= self.delay:
                self._line(now)

    def close(self, *, finished: bool = True) -> None:
        """Finish: the last line (plain) or the closed bar (live), when `finished`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._bar is not None:
                self._bar.leave = finished  # an interrupted bar is cleared
                self._bar.close()
                return
            now = self._clock()
            if finished and (self._lines or now - self._start >= self.delay):
                self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self._start
        pct = 100 * self.done // max(self.total, 1)
        text = f"{self.done}/{self.total} {self.unit}s ({pct}%), {duration(elapsed)} elapsed"
        if 0 < self.done < self.total:
            text += f", ~{duration(elapsed / self.done * (self.total - self.done))} left"
        note(text, self.stream)
        self._lines += 1
        self._last_time = now
        self._last_done = self.done

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(finished=exc_type is None)
