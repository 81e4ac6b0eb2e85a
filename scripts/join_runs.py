"""Join a run and its fine-tuning continuation (``--init-from FIRST/best.safetensors``) into one run folder.

    python scripts/join_runs.py FIRST SECOND OUT

OUT gets SECOND's best weights and card, and a ``log.json`` with FIRST's epochs and then SECOND's, numbered
on, each row tagged with its run folder, so that ``scripts/make_figures.py`` draws one training curve and
``scripts/ship_models.sh`` ships it. SECOND is taken to continue from FIRST's last epoch (with a one-cycle
schedule, its best); its card names the exact weights. OUT may be FIRST again to chain a third run.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def join(first: Path, second: Path, out: Path) -> Path:
    head = json.loads((first / "log.json").read_text())
    tail = json.loads((second / "log.json").read_text())
    offset = head[-1]["epoch"] if head else 0
    rows = [{"run": str(first), **r} for r in head]  # rows of an earlier join keep their own run
    rows += [{**r, "epoch": r["epoch"] + offset, "run": str(second)} for r in tail]
    out.mkdir(parents=True, exist_ok=True)
    for name in ("best.safetensors", "best.json"):
        shutil.copy2(second / name, out / name)
    (out / "log.json").write_text(json.dumps(rows, indent=2) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    ap.add_argument("out", type=Path)
    a = ap.parse_args()
    print(join(a.first, a.second, a.out))


if __name__ == "__main__":
    main()
