"""Progress of a long run, readable both on a terminal and in a log file.

On a terminal (the stream is a TTY) a tqdm bar redraws in place. Anywhere else (CI, ``nohup``, a scheduler's log)
it prints a plain line every ~10% of the work or every 30 s, whichever comes first, and never a carriage
return. Messages about single items (a skipped file) get a line of their own in both modes. ``quiet`` prints
nothing at all: the caller prints its final summary itself.

    progress = ProgressReporter("predict", unit="img")
    predict_files(..., progress=progress.start, on_failure=progress.skipped)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")


def is_terminal(stream: IO[str]) -> bool:
    """Is ``stream`` an interactive terminal (so redrawing a line in place reads well)?"""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def duration(seconds: float) -> str:
    """Seconds as H:MM:SS."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class LineProgress:
    """Plain progress lines for a log: one every ``every_pct`` percent of ``total`` or ``every_s`` seconds.

    Lines are printed from :meth:`update` (no timer thread), so a stalled run prints nothing new until its next
    item; :meth:`close` prints the final count if the last line did not already show it.
    """

    def __init__(self, total: int, desc: str, unit: str, stream: IO[str], every_pct: float = 10.0,
                 every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.every_n = max(1, int(total * every_pct / 100)) if total else 1
        self.every_s, self.clock = every_s, clock
        self.n = 0
        self.start = self.last_time = clock()
        self.last_n = 0
        self.closed = False
        self.postfix = ""  # e.g. "loss=0.4321": appended to each line
        self._line(f"{desc}: {total} {unit} to do")

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _status(self) -> str:
        elapsed = self.clock() - self.start
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        text = f"{self.desc}: {self.n}/{self.total} {self.unit}{pct}, elapsed {duration(elapsed)}"
        if self.n and elapsed > 0:
            rate = self.n / elapsed
            text += f", {rate:.2f} {self.unit}/s"
            if self.n < self.total:
                text += f", about {duration((self.total - self.n) / rate)} left"
        return text + (f", {self.postfix}" if self.postfix else "")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        next_step = (self.last_n // self.every_n + 1) * self.every_n  # the next multiple of ~10%
        if self.n >= next_step or self.n >= self.total or now - self.last_time >= self.every_s:
            if self.n != self.last_n:
                self._line(self._status())
                self.last_n, self.last_time = self.n, now

    def write(self, message: str) -> None:
        self._line(message)

    def set_postfix(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if not self.closed and self.n != self.last_n:
            self._line(self._status())
            self.last_n = self.n
        self.closed = True


class _TqdmProgress:
    """A tqdm bar on a terminal; :meth:`write` prints above it without breaking it."""

    def __init__(self, total: int, desc: str, unit: str, stream: IO[str]) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.stream = stream
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=stream)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def write(self, message: str) -> None:
        self._tqdm.write(message, file=self.stream)

    def set_postfix(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        self.bar.close()


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def write(self, message: str) -> None:
        pass

    def set_postfix(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressReporter:
    """Chooses how to show progress (tqdm on a TTY, plain lines otherwise, nothing when quiet) and reports items.

    ``start(total)`` opens the display and returns it (an object with ``update(n)`` and ``close()``);
    ``skipped(item, why)`` prints one line for an item that was not processed, before or after ``start``.
    ``stream`` defaults to ``sys.stderr`` as it is when ``start`` or ``skipped`` is called.
    """

    def __init__(self, desc: str, unit: str = "it", stream: IO[str] | None = None, quiet: bool = False,
                 every_pct: float = 10.0, every_s: float = 30.0) -> None:
        self.desc, self.unit, self.quiet = desc, unit, quiet
        self._stream, self.every_pct, self.every_s = stream, every_pct, every_s
        self.display: Any = None

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stderr

    def start(self, total: int) -> Any:
        if self.quiet:
            self.display = _Silent()
        elif is_terminal(self.stream):
            self.display = _TqdmProgress(total, self.desc, self.unit, self.stream)
        else:
            self.display = LineProgress(total, self.desc, self.unit, self.stream, self.every_pct, self.every_s)
        return self.display

    def iterate(self, items: Iterable[T], total: int | None = None) -> Iterator[T]:
        """Yield ``items``, showing progress (``total``: ``len(items)`` when not given); closes the display at the
        end. ``set_postfix`` on :attr:`display` adds a status (e.g. the running loss) to the bar or lines."""
        display = self.start(len(items) if total is None else total)  # type: ignore[arg-type]
        try:
            for item in items:
                yield item
                display.update(1)
        finally:
            display.close()

    def skipped(self, item: str, why: str) -> None:
        self.message(f"skipped {item}: {why}")

    def message(self, text: str) -> None:
        """One line of its own (never a redraw); nothing when quiet."""
        if self.quiet:
            return
        if self.display is not None:
            self.display.write(text)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()
