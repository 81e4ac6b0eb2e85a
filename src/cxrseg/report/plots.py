"""The page's figures: small accessible inline SVG bar charts of the columns the CSV has (no plotting library).

Inline SVG keeps the page one self-contained file with no address outside the folder.
"""

from __future__ import annotations

import html
import math

from cxrseg.report.folder import FolderData, column_values


def _image_threshold(data: FolderData) -> float | None:
    """The run's image-level P(COVID-19) threshold from run.json (its decision, else the infection card's)."""
    run = data.run or {}
    t = (run.get("decision") or {}).get("image_threshold") if isinstance(run.get("decision"), dict) else None
    if isinstance(t, (int, float)):
        return float(t)
    card = ((run.get("models") or {}).get("infection") or {}).get("card") if isinstance(run.get("models"), dict) else None
    if isinstance(card, dict):
        block = card.get("tta") if run.get("tta") and isinstance(card.get("tta"), dict) else card
        t = block.get("image_threshold")
        if isinstance(t, (int, float)):
            return float(t)
    return None


def bar_chart(title: str, labels: list[str], counts: list[int], xlabel: str, note: str = "",
              marker: tuple[float, str] | None = None, width: int = 360, height: int = 210) -> str:
    """A small accessible SVG bar chart; ``marker`` = (position in bar units from the left edge, label)."""
    left, right, top, bottom = 40, 10, 34, 44
    pw, ph = width - left - right, height - top - bottom
    peak = max(counts) if counts and max(counts) > 0 else 1
    n = max(1, len(counts))
    step = pw / n
    every = max(1, math.ceil(n / 10))
    esc = html.escape
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{esc(title)}">',
        f'<text class="chart-title" x="{left}" y="14">{esc(title)}</text>',
        f'<line class="axis" x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}"/>',
        f'<text class="tick" x="{left - 4}" y="{top + 4}" text-anchor="end">{peak:,}</text>',
        f'<text class="tick" x="{left - 4}" y="{top + ph}" text-anchor="end">0</text>',
    ]
    for i, (label, count) in enumerate(zip(labels, counts)):
        h = ph * count / peak
        x = left + i * step
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{top + ph - h:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{h:.1f}"><title>{esc(label)}: {count:,}</title></rect>'
        )
        if n <= 12 and count:
            parts.append(f'<text class="count" x="{x + step / 2:.1f}" y="{top + ph - h - 3:.1f}" '
                         f'text-anchor="middle">{count:,}</text>')
        if i % every == 0:
            parts.append(f'<text class="tick" x="{x + step / 2:.1f}" y="{top + ph + 13}" '
                         f'text-anchor="middle">{esc(label)}</text>')
    if marker is not None:
        mx = left + marker[0] * step
        parts.append(f'<line class="marker" x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + ph}"/>')
        right_side = marker[0] > 0.7 * n  # label to the left of a line near the right edge
        parts.append(f'<text class="marker-label" x="{mx - 3 if right_side else mx + 3:.1f}" y="{top + 9}" '
                     f'text-anchor="{"end" if right_side else "start"}">{esc(marker[1])}</text>')
    parts.append(f'<text class="xlabel" x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">'
                 f'{esc(xlabel)}</text>')
    parts.append("</svg>")
    chart = "".join(parts)
    caption = f"<figcaption>{esc(note)}</figcaption>" if note else ""
    return f'<figure class="plot">{chart}{caption}</figure>'


def _histogram(values: list[float], lo: float, hi: float, bins: int) -> list[int]:
    """Counts in ``bins`` equal bins over [lo, hi]; values outside go to the end bins."""
    counts = [0] * bins
    for v in values:
        i = int((v - lo) / (hi - lo) * bins)
        counts[min(max(i, 0), bins - 1)] += 1
    return counts


def plots(data: FolderData) -> list[str]:
    """Inline SVG plots for the columns the CSV has."""
    out = []
    infected = column_values(data.rows, "infected_pct")
    if infected:
        zero = sum(v <= 0 for v in infected)
        positive = [v for v in infected if v > 0]
        counts = [zero] + _histogram(positive, 0, 100, 10)
        labels = ["0"] + [f"{10 * i}-{10 * i + 10}" for i in range(10)]
        out.append(bar_chart("Infected % of the lungs", labels, counts, "infected % (first bar: none)",
                             f"{len(positive):,} of {len(infected):,} images with any infection"))
    grades = column_values(data.rows, "total_grade")
    if grades:
        counts = [sum(1 for g in grades if round(g) == k) for k in range(9)]
        out.append(bar_chart("Images per severity grade", [str(k) for k in range(9)], counts,
                             "grade 0-8 (right + left, 0-4 each)"))
    for name, title in (("infection_probability", "P(COVID-19)"),):
        probs = column_values(data.rows, name)
        if not probs:
            continue
        counts = _histogram(probs, 0, 1, 20)
        labels = [f"{i / 20:.2f}" for i in range(20)]
        t = _image_threshold(data) if name == "infection_probability" else None
        marker = (t * 20, f"threshold {t:g}") if t is not None and 0 <= t <= 1 else None
        note = "the image-level threshold: below it a film's infection is vetoed" if marker else ""
        out.append(bar_chart(f"Distribution of {title}", labels, counts, f"{title} (bins of 0.05)", note, marker))
    scores = column_values(data.rows, "severity_score")
    if scores:
        counts = _histogram(scores, 0, 8, 16)
        out.append(bar_chart("Severity score", [f"{i / 2:g}" for i in range(16)], counts, "score 0-8 (bins of 0.5)"))
    return out
