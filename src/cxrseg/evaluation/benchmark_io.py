"""What the benchmark scripts share at their two ends: reading the CSV that lists a folder's films, and handing the
finished report to stdout and, when asked, to a file (``benchmarks/external.py``, ``severity.py``, ``shift.py``).
"""

from __future__ import annotations

import csv
from pathlib import Path


def listed_rows(table: Path, point: str) -> list[dict[str, str]]:
    """The rows of ``table`` (a CSV with a header line), each a dict by column; a missing table ends the run with
    one line that says where to point (``point``, e.g. "--scores at the scored films' folder")."""
    if not table.is_file():
        raise SystemExit(f"{table}: not found (point {point})")
    with open(table, newline="") as f:
        return list(csv.DictReader(f))


def emit(text: str, out: Path | None) -> str:
    """Print ``text`` as it is and, with ``out``, write it there too (its folder made as needed); returns ``text``."""
    print(text, end="")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return text
