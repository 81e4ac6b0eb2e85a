"""The models section's content: each stage's weights, digest and card summary, and where they come from.

From the folder's run.json when the run recorded it; otherwise the cards shipped with this install, said as such.
"""

from __future__ import annotations

from cxrseg.errors import CxrsegError
from cxrseg.report.folder import FolderData


def model_blocks(data: FolderData) -> tuple[str, list[dict]]:
    """(where the cards come from, [{stage, weights, sha256, lines}]) from run.json, else the shipped cards; the
    whole-film classifier's card too when the run used one (or, unrecorded, when this install ships one)."""
    from cxrseg.models.store import card_summary

    run = data.run or {}
    models = run.get("models") if isinstance(run.get("models"), dict) else None
    blocks = []
    if models:
        source = "recorded by the predict run (run.json)"
        for stage in ("lung", "infection", "classifier"):  # the classifier: the whole-film one beside the head
            m = models.get(stage)
            if isinstance(m, dict):
                card = m.get("card") if isinstance(m.get("card"), dict) else {}
                blocks.append({"stage": stage, "weights": m.get("weights"), "sha256": m.get("sha256"),
                               "lines": card_summary(card)})
        return source, blocks
    source = ("not recorded by this run (no run.json in the folder); shown: the models shipped with this "
              "install, which the run used only if it was given no --lung-model/--infection-model")
    try:
        from cxrseg.models.store import read_card, shipped_weights, weights_digest

        from cxrseg.inference.decision import resolve_classifier

        film = resolve_classifier("auto", None)
        for stage in ("lung", "infection", *(["classifier"] if film else [])):
            weights = shipped_weights(stage)
            blocks.append({"stage": stage, "weights": str(weights), "sha256": weights_digest(weights),
                           "lines": card_summary(read_card(weights))})
    except (CxrsegError, OSError) as e:
        source = f"not recorded by this run, and the shipped cards cannot be read ({e})"
    return source, blocks
