"""Find and validate the COVID-QU-Ex dataset in its own folder layout, and pair images with masks by name.

Layout (folder names contain spaces)::

    ROOT/Infection Segmentation Data/{Train,Val,Test}/{COVID-19,Non-COVID,Normal}/
        images/  lung masks/  infection masks/
    ROOT/Lung Segmentation Data/{Train,Val,Test}/{COVID-19,Non-COVID,Normal}/
        images/  lung masks/

``ROOT`` may also be one of the two part folders itself.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cxrseg.data.io import IMAGE_SUFFIXES, read_mask
from cxrseg.errors import CxrsegError

INFECTION_PART = "Infection Segmentation Data"
LUNG_PART = "Lung Segmentation Data"
PARTS = {"infection": INFECTION_PART, "lung": LUNG_PART}
SPLITS = ("Train", "Val", "Test")
CLASSES = ("COVID-19", "Non-COVID", "Normal")
IMAGES_DIR, LUNG_DIR, INFECTION_DIR = "images", "lung masks", "infection masks"
DATA_SIZE = 256  # the films' own size: stage 2 crops the lungs' box from this grid, in training and inference


@dataclass(frozen=True)
class Sample:
    """One X-ray and its masks. ``infection`` is None in the lung-only part."""

    image: Path
    lung: Path
    infection: Path | None
    split: str
    label: str  # one of CLASSES

    @property
    def name(self) -> str:
        return self.image.stem


@dataclass
class DatasetIndex:
    """What was found under a root: usable samples, counts per (split, class), and problems."""

    root: Path
    part: str
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    counts: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def select(self, splits: tuple[str, ...] | None = None, classes: tuple[str, ...] | None = None) -> list[Sample]:
        return [
            s
            for s in self.samples
            if (splits is None or s.split in splits) and (classes is None or s.label in classes)
        ]


def _files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def resolve_part(root: str | Path, part: str = "auto") -> tuple[Path, str]:
    """Return (folder holding the split folders, part name). ``part`` is 'infection', 'lung' or 'auto'."""
    root = Path(root).expanduser()
    if not root.exists():
        raise CxrsegError(f"{root}: dataset folder not found")
    if not root.is_dir():
        raise CxrsegError(f"{root}: is a file; expected the COVID-QU-Ex folder")
    if part not in ("auto", *PARTS):
        raise CxrsegError(f"unknown dataset part {part!r}; use 'infection', 'lung' or 'auto'")
    candidates = [part] if part != "auto" else ["infection", "lung"]
    for name in candidates:
        if (root / PARTS[name]).is_dir():
            return root / PARTS[name], name
        if root.name == PARTS[name]:
            return root, name
    if part == "auto" and any((root / s).is_dir() for s in SPLITS):
        # A bare split layout: infection if any infection-mask folder exists.
        has_inf = any(root.glob(f"*/*/{INFECTION_DIR}"))
        return root, "infection" if has_inf else "lung"
    wanted = " or ".join(f"'{PARTS[c]}'" for c in candidates)
    raise CxrsegError(f"{root}: no {wanted} folder found; point --data at the COVID-QU-Ex folder")


def find_dataset(
    root: str | Path,
    part: str = "auto",
    splits: tuple[str, ...] | None = None,
    classes: tuple[str, ...] | None = None,
) -> DatasetIndex:
    """Scan ``root`` and pair each image with its masks; unmatched or missing files go to ``problems``."""
    base, part_name = resolve_part(root, part)
    index = DatasetIndex(root=base, part=part_name)
    for split in splits or SPLITS:
        split_dir = base / split
        if not split_dir.is_dir():
            if splits is not None:
                index.problems.append(f"{split_dir}: split folder missing")
            continue
        for label in classes or CLASSES:
            cdir = split_dir / label
            if not cdir.is_dir():
                index.problems.append(f"{cdir}: class folder missing")
                continue
            images = _files(cdir / IMAGES_DIR)
            lungs = _files(cdir / LUNG_DIR)
            infs = _files(cdir / INFECTION_DIR) if part_name == "infection" else {}
            if not images:
                index.problems.append(f"{cdir / IMAGES_DIR}: no images")
            index.counts[(split, label)] = {"images": len(images), "lung masks": len(lungs), "infection masks": len(infs)}
            for stem in sorted(set(lungs) - set(images)):
                index.problems.append(f"{lungs[stem]}: lung mask without an image")
            for stem in sorted(set(infs) - set(images)):
                index.problems.append(f"{infs[stem]}: infection mask without an image")
            for stem, img in images.items():
                if stem not in lungs:
                    index.problems.append(f"{img}: no lung mask")
                    continue
                if part_name == "infection" and stem not in infs:
                    index.problems.append(f"{img}: no infection mask")
                    continue
                index.samples.append(Sample(img, lungs[stem], infs.get(stem), split, label))
    return index


def require_samples(index: DatasetIndex, splits: tuple[str, ...], what: str = "") -> list[Sample]:
    """The samples of ``splits``, or a clear error when there are none."""
    samples = index.select(splits)
    if not samples:
        raise CxrsegError(f"{index.root}: no usable {what + ' ' if what else ''}images in split(s) {', '.join(splits)}")
    return samples


def stratified_subset(samples: list[Sample], k: int | None, seed: int) -> list[Sample]:
    """At most ``k`` samples with the classes in their original proportions (all if ``k`` is None)."""
    if k is None or k >= len(samples):
        return samples
    rng = random.Random(seed)
    by_class: dict[str, list[Sample]] = {}
    for s in samples:
        by_class.setdefault(s.label, []).append(s)
    out = []
    for group in by_class.values():
        out += rng.sample(group, max(1, round(k * len(group) / len(samples))))
    return sorted(out, key=lambda s: (s.label, s.name))[: max(k, len(by_class))]


def check_masks(samples: list[Sample]) -> tuple[dict[tuple[str, str], tuple[int, int]], list[str]]:
    """Read every mask once: (images with any infection, images with an infection mask) per (split, class),
    and the problems found (empty lung masks, unreadable masks, masks whose size differs from the image's)."""
    from PIL import Image

    from cxrseg.errors import InputFileError

    out: Counter = Counter()
    tot: Counter = Counter()
    problems: list[str] = []
    for s in samples:
        try:
            with Image.open(s.image) as im:
                size = im.size[::-1]
            lung = read_mask(s.lung)
            if not lung.any():
                problems.append(f"{s.lung}: lung mask is empty")
            if lung.shape != size:
                problems.append(f"{s.lung}: mask is {lung.shape[1]}x{lung.shape[0]}, image is {size[1]}x{size[0]}")
            if s.infection is not None:
                inf = read_mask(s.infection)
                if inf.shape != size:
                    problems.append(f"{s.infection}: mask is {inf.shape[1]}x{inf.shape[0]}, image is {size[1]}x{size[0]}")
                key = (s.split, s.label)
                tot[key] += 1
                out[key] += int(inf.any())
        except InputFileError as e:
            problems.append(str(e))
        except OSError as e:
            problems.append(f"{s.image}: unreadable image ({e})")
    return {k: (out[k], tot[k]) for k in tot}, problems


def summary_markdown(index: DatasetIndex, read_masks: bool = True) -> str:
    """A split x class table of counts and infection share, then the problems found (reads every mask)."""
    share, mask_problems = check_masks(index.samples) if read_masks else ({}, [])
    problems = index.problems + mask_problems
    lines = [
        f"Dataset: {index.root} ({index.part} part)",
        "",
        "| split | class | images | lung masks | infection masks | with infection |",
        "|---|---|---:|---:|---:|---:|",
    ]
    totals = Counter()
    for (split, label), c in index.counts.items():
        pos, n = share.get((split, label), (0, 0))
        shown = f"{pos} ({100 * pos / n:.1f}%)" if n else "-"
        lines.append(
            f"| {split} | {label} | {c['images']} | {c['lung masks']} | {c['infection masks']} | {shown} |"
        )
        totals.update(c)
        totals["pos"] += pos
        totals["n"] += n
    shown = f"{totals['pos']} ({100 * totals['pos'] / totals['n']:.1f}%)" if totals["n"] else "-"
    lines.append(
        f"| **all** | | {totals['images']} | {totals['lung masks']} | {totals['infection masks']} | {shown} |"
    )
    lines += ["", f"Usable samples: {len(index.samples)}", ""]
    if problems:
        lines.append(f"Problems ({len(problems)}):")
        lines += [f"- {p}" for p in problems[:200]]
        if len(problems) > 200:
            lines.append(f"- ... and {len(problems) - 200} more")
    else:
        lines.append("Problems: none")
    return "\n".join(lines)
