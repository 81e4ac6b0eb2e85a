"""The table's data: the JSON blob of columns and rows that the page's script pages through and sorts.

One compact blob (not HTML rows) keeps a 10,000-image page small and quick to build.
"""

from __future__ import annotations

from cxrseg.report.columns import SORTABLE_KINDS
from cxrseg.report.folder import FolderData

PAGE_SIZE = 100


def table_data(data: FolderData, page_size: int = PAGE_SIZE) -> dict:
    """The JSON the page's script renders: columns and one array per row (values, then links)."""
    # A column no row has a value in (uncertainty without --tta) is left out rather than shown as dashes.
    cols = [c for c in data.columns
            if c.kind in SORTABLE_KINDS and (c.name == "file" or any(r.get(c.name) is not None for r in data.rows))]
    rows = []
    for r in data.rows:
        values = []
        for c in cols:
            v = r.get(c.name)
            if isinstance(v, float):
                v = round(v, 4)
            values.append(v)
        rows.append([*values, r.get("_size"), r.get("_overlay"), r.get("_thumb"), r.get("_lung"), r.get("_infection")])
    return {
        "columns": [{"key": c.name, "label": c.label, "kind": c.kind, "title": c.title} for c in cols],
        "extra": ["size", "overlay", "thumb", "lung", "infection"],
        "rows": rows,
        "pageSize": page_size,
    }
