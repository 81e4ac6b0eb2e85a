"""Two real chest X-rays shipped with the package (CC BY 3.0; see ATTRIBUTION.md beside them) for ``cxrseg demo``.

They are examples, not evaluation data: nothing is tuned on them. :func:`films` gives their paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

FOLDER = Path(str(resources.files("cxrseg.examples")))
ATTRIBUTION = FOLDER / "ATTRIBUTION.md"


@dataclass(frozen=True)
class Film:
    """An example film: its file and the finding published with it."""

    path: Path
    finding: str

    @property
    def name(self) -> str:
        return self.path.name


FILMS = (
    Film(FOLDER / "hannover-covid19-2168a917.jpg", "COVID-19"),
    Film(FOLDER / "hannover-nofinding-f6575117.jpg", "No Finding"),
)


def films() -> tuple[Film, ...]:
    """The shipped example films, COVID-19 first."""
    return FILMS


def _pct(value: str | None) -> str:
    return "n/a" if value in (None, "") else f"{float(value):.1f}%"


def summary_lines(film: Film, row: dict) -> list[str]:
    """Two lines on one segmented film, from its ``results.csv`` row (fields read by name): the lungs found
    and their area, P(COVID-19); then the opacity found, and the COVID-19 infection share and grade per lung
    (the patient's right and left), which are zero when the film was judged not COVID-19-like."""
    h, w = int(row["height"]), int(row["width"])
    right, left = int(row["right_lung_area_px"]), int(row["left_lung_area_px"])
    area = int(row["lung_area_px"])
    if right and left:
        lungs = "both lungs found"
    elif area:
        lungs = f"only the patient's {'right' if right else 'left'} lung found"
    else:
        lungs = "no lungs found"
    p = row.get("infection_probability")
    p_text = "n/a" if p in (None, "") else f"{float(p):.2f}"
    first = (f"{film.name} (published finding: {film.finding}): {lungs}, {area:,} px = {100 * area / (h * w):.1f}% "
             f"of the {w}x{h} image; P(COVID-19) {p_text}")
    opacity = f"opacity {_pct(row['opacity_pct'])} of the lungs" if row.get("opacity_pct") not in (None, "") else ""
    second = (f"    {opacity + '; ' if opacity else ''}COVID-19 infection: right lung {_pct(row['right_infected_pct'])} "
              f"(grade {row['right_grade']}), left lung {_pct(row['left_infected_pct'])} (grade {row['left_grade']}), "
              f"both {_pct(row['infected_pct'])}; total grade {row['total_grade']} of 8")
    lines = [first, second]
    if row.get("note"):
        lines.append(f"    note: {row['note']}")
    return lines
