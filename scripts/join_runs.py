"""Join a run and its fine-tuning continuation (``--init-from FIRST/...``) into one run folder.

    python scripts/join_runs.py FIRST SECOND OUT [--weights best|last]

OUT gets SECOND's best (or final-epoch, see ``scripts/last_weights.py``) weights as ``best.*``, and a
``log.json`` with FIRST's epochs and then SECOND's, numbered on, each row tagged with its run folder, so that
``scripts/make_figures.py`` draws one training curve and ``scripts/ship_models.sh`` ships it. SECOND is taken
to continue from the weights in FIRST's ``best.*`` (which FIRST may itself be a join); the card's
``training.init_from`` is completed with FIRST's card, so it tells the whole chain. OUT may be FIRST again.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def join(first: Path, second: Path, out: Path, weights: str = "best") -> Path:
    head = json.loads((first / "log.json").read_text())
    tail = json.loads((second / "log.json").read_text())
    first_card = json.loads((first / "best.json").read_text())
    card = json.loads((second / f"{weights}.json").read_text())
    offset = head[-1]["epoch"] if head else 0
    rows = [{"run": str(first), **r} for r in head]  # rows of an earlier join keep their own run
    rows += [{**r, "epoch": r["epoch"] + offset, "run": str(second)} for r in tail]
    parent = card["training"].get("init_from") or {"weights": str(first / "best.safetensors")}
    card["training"]["init_from"] = {**parent, "training": first_card["training"]}
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(second / f"{weights}.safetensors", out / "best.safetensors")
    (out / "best.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "log.json").write_text(json.dumps(rows, indent=2) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--weights", choices=("best", "last"), default="best", help="SECOND's best or final epoch")
    a = ap.parse_args()
    print(join(a.first, a.second, a.out, a.weights))


if __name__ == "__main__":
    main()
