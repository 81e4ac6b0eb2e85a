"""Which results.csv columns the report's table shows, how each is read, and its heading.

Columns are chosen by name, so an older or newer CSV still builds: the known ones in their order, then columns named
by the rules (``*_pct``, ``*_probability``, ``*_grade``, ``*_score``); the rest are listed as not shown.
"""

from __future__ import annotations

from dataclasses import dataclass

# Columns shown in the table, in this order, when results.csv has them: (name, heading, kind, tooltip).
# Kinds: text, int, pct (a percentage, 0-100), prob (0-1), num. Right/left are the patient's.
KNOWN_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("file", "file", "text", "input file"),
    ("infected_pct", "infected %", "pct", "share of the lung area with COVID-19 infection"),
    ("right_infected_pct", "right %", "pct", "infected share of the patient's right lung (image left)"),
    ("left_infected_pct", "left %", "pct", "infected share of the patient's left lung (image right)"),
    ("right_opacity_pct", "right opacity %", "pct", "opacity extent in the patient's right lung, before the veto"),
    ("left_opacity_pct", "left opacity %", "pct", "opacity extent in the patient's left lung, before the veto"),
    ("opacity_pct", "opacity %", "pct", "opacity extent of both lungs, before the veto"),
    ("right_grade", "R grade", "int", "patient's right lung: 0 none, 1 <25%, 2 25-50%, 3 50-75%, 4 >=75%"),
    ("left_grade", "L grade", "int", "patient's left lung: 0 none, 1 <25%, 2 25-50%, 3 50-75%, 4 >=75%"),
    ("total_grade", "grade", "int", "severity grade 0-8: right + left"),
    ("severity_score", "severity score", "num", "continuous severity score, 0-8"),
    ("infection_probability", "P(COVID-19)", "prob",
     "stage 2's image-level P(COVID-19) for the film (validated on COVID-QU-Ex only)"),
    ("covid_like", "COVID-like", "text", "the head's call at its threshold; 'confirmed' when the status was positive"),
    ("covid_status", "COVID-19 status", "text", "what was known of the patient's COVID-19 status"),
    ("uncertainty", "uncertainty", "num", "mean TTA uncertainty inside the lung (--tta runs)"),
    ("lung_confidence", "lung conf.", "num",
     "stage 1's mean probability inside its lung mask; doubtful below 0.96 (0.95 TTA, 0.94 accurate)"),
    ("note", "note", "text", "doubtful lungs, or why opacity was not counted as COVID-19 infection"),
    ("lung_area_px", "lung px", "int", "lung area in pixels"),
    ("infection_area_px", "infection px", "int", "infection area in pixels"),
)
# Read but not shown as table columns (size is shown as one "W x H" text).
HIDDEN_COLUMNS = {"height", "width", "right_lung_area_px", "left_lung_area_px"}
PATTERN_KINDS = (("_pct", "pct"), ("_probability", "prob"), ("_grade", "int"), ("_score", "num"))
SORTABLE_KINDS = {"int", "pct", "prob", "num", "text"}


@dataclass
class Column:
    name: str
    label: str
    kind: str
    title: str = ""


def table_columns(fieldnames: list[str]) -> tuple[list[Column], list[str]]:
    """The table's columns from a CSV header: known ones in their order, pattern-named ones after them.

    Also returns the names of the columns neither known, hidden nor pattern-named (not shown).
    """
    present = set(fieldnames)
    columns = [Column(n, label, kind, title) for n, label, kind, title in KNOWN_COLUMNS if n in present]
    known = {n for n, *_ in KNOWN_COLUMNS} | HIDDEN_COLUMNS
    unknown = []
    for name in fieldnames:
        if name in known or not name:
            continue
        kind = next((k for suffix, k in PATTERN_KINDS if name.endswith(suffix)), None)
        if kind is None:
            unknown.append(name)
            continue
        columns.append(Column(name, name.replace("_", " "), kind, f"results.csv column {name}"))
    return columns, unknown
