"""Plots of scores against experts' on the 0-8 extent scale: a scatter with the line of agreement, and one
Bland-Altman panel per series (bias and 95% limits of agreement). ``benchmarks/severity.py`` writes them for the
README; a notebook can call them on any scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrseg.evaluation.severity_agreement import agreement

Series = tuple[str, "np.ndarray", str, str]  # label, scores, colour, marker


def agreement_plots(experts, series: list[Series], out: Path, title: str,
                    names: tuple[str, str] = ("severity-scatter.png", "severity-bland-altman.png")) -> list[Path]:
    """The scatter and the Bland-Altman plot of each series against ``experts``, as PNGs ``names`` in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.asarray(experts, float)
    out.mkdir(parents=True, exist_ok=True)
    series = [(label, np.asarray(v, float), colour, marker) for label, v, colour, marker in series]
    fig, ax = plt.subplots(figsize=(5.6, 5.2), dpi=120)
    ax.plot([0, 8], [0, 8], color="#444444", lw=0.8, ls="--", label="agreement")
    for label, v, colour, marker in series:
        a = agreement(v, y)
        ax.scatter(y, v, s=26, c=colour, marker=marker, alpha=0.8, edgecolors="none",
                   label=f"{label}: MAE {a['mae']:.2f}, bias {a['bias']:+.2f}, r {a['r']:.2f}")
    ax.set(xlim=(-0.3, 8.3), ylim=(-0.3, 8.3), xlabel="radiologists' geographic extent (mean of 3), 0-8",
           ylabel="cxrseg, 0-8", title=title)
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=7.5, frameon=False)
    ax.grid(alpha=0.25)
    fig.tight_layout()
    scatter = out / names[0]
    fig.savefig(scatter)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 4.2), dpi=120, sharey=True, squeeze=False)
    axes = axes[0]
    for ax, (label, v, colour, marker) in zip(axes, series):
        mean, diff = (v + y) / 2, v - y
        b, sd = diff.mean(), diff.std(ddof=1)
        ax.scatter(mean, diff, s=24, c=colour, marker=marker, alpha=0.8, edgecolors="none")
        ax.axhline(b, color=colour, lw=1.2, label=f"bias {b:+.2f}")
        for lim in (b - 1.96 * sd, b + 1.96 * sd):
            ax.axhline(lim, color=colour, lw=0.8, ls="--")
        ax.axhline(0, color="#444444", lw=0.6)
        ax.text(8.1, b + 1.96 * sd, f"+1.96 SD {b + 1.96 * sd:+.1f}", ha="right", va="bottom", fontsize=7)
        ax.text(8.1, b - 1.96 * sd, f"-1.96 SD {b - 1.96 * sd:+.1f}", ha="right", va="top", fontsize=7)
        ax.set(xlim=(-0.2, 8.2), xlabel="mean of ours and the experts' (0-8)", title=label)
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.grid(alpha=0.25)
    axes[0].set_ylabel("ours - experts")
    fig.suptitle(f"Bland-Altman: {title}", fontsize=10)
    fig.tight_layout()
    ba = out / names[1]
    fig.savefig(ba)
    plt.close(fig)
    return [scatter, ba]


