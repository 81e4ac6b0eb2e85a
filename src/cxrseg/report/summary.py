"""The page's summary block: counts and headline figures over all rows, as (label, value) text pairs."""

from __future__ import annotations

import statistics

from cxrseg.report.folder import FolderData, column_values


def _fmt_pct(v: float) -> str:
    return f"{v:.1f}%"


def summary_items(data: FolderData) -> list[tuple[str, str]]:
    """(label, value) pairs for the summary block."""
    n, nf = len(data.rows), len(data.failed)
    items = [("images segmented", f"{n:,}"), ("files that failed", f"{nf:,}")]
    infected = column_values(data.rows, "infected_pct")
    if infected:
        with_inf = [v for v in infected if v > 0]
        items.append(("with infection", f"{len(with_inf):,} ({len(with_inf) / len(infected):.0%})"))
        if with_inf:
            items.append(("median infected % (those with infection)", _fmt_pct(statistics.median(with_inf))))
        items.append(("largest infected %", _fmt_pct(max(infected))))
    grades = column_values(data.rows, "total_grade")
    if grades:
        items.append(("mean grade (0-8)", f"{statistics.fmean(grades):.2f}"))
    probs = column_values(data.rows, "infection_probability")
    if probs:
        items.append(("median P(COVID-19)", f"{statistics.median(probs):.3f}"))
    if column_values(data.rows, "lung_confidence"):  # written by cxrseg predict since lung_check; not by older runs
        doubtful = sum("low confidence" in (r.get("note") or "") for r in data.rows)
        items.append(("doubtful lungs (low lung confidence; see the note)", f"{doubtful:,}"))
    if column_values(data.rows, "uncertainty"):
        items.append(("test-time augmentation", "yes (uncertainty recorded)"))
    statuses = [r.get("covid_status") for r in data.rows if r.get("covid_status")]
    if statuses:
        counts: dict[str, int] = {}
        for s in statuses:
            counts[s] = counts.get(s, 0) + 1
        items.append(("COVID-19 status given", ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))))
    return items
