"""Save and load models as safetensors + a JSON model card; the registry of shipped weights.

A card says what a user needs to trust and reuse a model: architecture, input size, normalisation,
decision thresholds, training data and command, measured metrics, software versions.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cxrseg._atomic import atomic_path, atomic_write_text
from cxrseg.errors import CxrsegError
from cxrseg.models.factory import IMAGE_CLASSIFIER, ModelConfig, SegNet, build_image_classifier, build_model

STAGES = ("lung", "infection")
SHIPPED = (*STAGES, "lung-wide", "classifier")  # every network in weights/, each with its card
NORMALISATION = "grayscale in [0, 1]: 8-bit / 255, deeper images min-max stretched (cxrseg.data.io)"


def software_versions() -> dict[str, str]:
    import monai
    import numpy

    from cxrseg import __version__

    return {
        "cxrseg": __version__,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def default_card(stage: str, config: ModelConfig, input_size: int = 256) -> dict:
    """A card with the fields every model has; training fills in data, command and metrics."""
    return {
        "name": f"cxrseg-{stage}",
        "stage": stage,
        "task": "lung segmentation" if stage == "lung" else "COVID-19 infection segmentation in the lung ROI",
        "architecture": {"type": "monai.networks.nets.UNet", **config.to_dict()},
        "input_size": input_size,
        "input": describe_input(stage, config),
        "normalisation": NORMALISATION + ("; then global histogram equalisation" if config.input_norm == "equalize" else ""),
        "threshold": 0.5,
        "image_threshold": 0.5 if config.classifier else None,
        "min_area": 0,
        "training": {},
        "metrics": {},
        "software": software_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def describe_input(stage: str, config: ModelConfig) -> str:
    """The card's one-line account of what the network is fed."""
    if stage == "lung":
        return "chest X-ray"
    what = "X-ray multiplied by the lung mask" if config.roi_input == "masked" else "X-ray and lung mask as two channels"
    where = "whole image" if config.roi_margin is None else f"cropped to the lungs' box + {config.roi_margin:.0%} margin"
    return f"lung ROI: {what}, {where}"


def _decision(d: dict) -> str:
    """One line for a decision block (the card itself, or its ``tta`` block): thresholds and how chosen."""
    text = f"pixel threshold {d.get('threshold')}"
    if d.get("image_threshold") is not None:
        text += f", image threshold {d['image_threshold']}"
    if d.get("min_area"):
        text += f", components under {d['min_area']} px dropped"
    if d.get("thresholds_tuned_on"):
        text += f" (tuned on {d['thresholds_tuned_on']})"
    return text


def card_summary(card: dict) -> list[str]:
    """The lines of a card a user reads first: network, input, decision, training, measured figures.

    ``cxrseg info`` prints these; the whole card (software versions, the full training chain) is JSON.
    """
    arch, training, metrics = card.get("architecture", {}), card.get("training", {}), card.get("metrics", {})
    network = (
        f"{arch.get('type', '?')} ({arch.get('arch', '?')}), one output: P(COVID-19) for the film"
        if card.get("stage") == "classifier" else
        f"{arch.get('type', '?')}, channels {'-'.join(map(str, arch.get('channels', [])))}, "
        f"{arch.get('num_res_units', '?')} residual units" + (", image-level head" if arch.get("classifier") else "")
    )
    decision = _decision(card)
    tta = card.get("tta") if isinstance(card.get("tta"), dict) else {}
    chain, link = 0, training.get("init_from")
    while isinstance(link, dict):
        chain, link = chain + 1, link.get("training", {}).get("init_from")
    lines = [
        f"task:      {card.get('task', '?')}",
        f"network:   {network}",
        f"input:     {card.get('input_size')}x{card.get('input_size')} {card.get('input', '?')}",
        f"decision:  {decision}",
        *([f"with TTA:  {_decision(tta)}"] if "threshold" in tta else []),
        f"trained:   {training.get('data', '?')}; epoch {training.get('epoch', '?')} of the last run"
        + (f", which started from {chain} earlier run(s)" if chain else ""),
        f"command:   {training.get('command', '?')}",
    ]
    if training.get("roi") not in (None, "n/a"):
        lines.insert(-1, f"ROI:       {training['roi']}")
    return (lines + _measured(metrics) + _measured(tta.get("metrics", {}))
            + _measured(card.get("severity_agreement", {})))


def _measured(metrics: dict) -> list[str]:
    """The numeric figures of a card's ``metrics`` block, where and how they were measured."""
    figures = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    if not figures:
        return []
    return [
        f"measured:  {metrics.get('split', '?')}, {metrics.get('pipeline', '?')}",
        *(f"  {k}: {v}" for k, v in figures.items()),
        f"  by: {metrics.get('command', '?')}",
    ]


def weights_digest(weights: str | Path) -> str:
    """The first 12 hex digits of the weights file's SHA-256: names a model wherever its file lives."""
    return hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:12]


def describe_weights(path: str | Path | None, stage: str) -> str:
    """Which weights ran, for a benchmark's header: the path (or 'shipped'), the card's name and date, and the
    weights' sha256 prefix."""
    weights = Path(path) if path else shipped_weights(stage)
    card = read_card(weights)
    return (f"{path or 'shipped'} ({card.get('name', stage)}, created {card.get('created', '?')}, "
            f"sha256 {weights_digest(weights)})")


def card_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_model(weights: str | Path, model: SegNet, card: dict) -> Path:
    """Write ``weights`` (.safetensors) and its card (.json) atomically; returns the weights path."""
    weights = Path(weights).with_suffix(".safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"stage": str(card.get("stage", ""))})
    card = {**card, "architecture": {"type": "monai.networks.nets.UNet", **model.config.to_dict()}}
    atomic_write_text(card_path(weights), json.dumps(card, indent=2, default=str) + "\n")
    return weights


def read_card(weights: str | Path) -> dict:
    path = card_path(weights)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise CxrsegError(f"{path}: model card not found (it belongs beside {Path(weights).name})") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CxrsegError(f"{path}: model card is not valid JSON ({e})") from e


def load_model(weights: str | Path, map_location: str = "cpu") -> tuple[SegNet, dict]:
    """Load a model and its card; a missing or unreadable file gives one clear :class:`CxrsegError`."""
    weights = Path(weights)
    if not weights.is_file():
        raise CxrsegError(f"{weights}: checkpoint not found")
    card = read_card(weights)
    try:
        config = ModelConfig.from_dict({k: v for k, v in card["architecture"].items() if k != "type"})
        model = build_model(config)
        state = load_file(str(weights), device=map_location)
        model.load_state_dict(state)
    except (KeyError, TypeError) as e:
        raise CxrsegError(f"{weights}: model card does not describe a cxrseg model ({e})") from e
    except RuntimeError as e:
        raise CxrsegError(f"{weights}: checkpoint does not match its card ({str(e).splitlines()[0]})") from e
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CxrsegError(f"{weights}: unreadable checkpoint ({type(e).__name__}: {e})") from e
    model.eval()
    return model, card


def save_classifier(path: Path, model: torch.nn.Module, card: dict) -> Path:
    """Write the whole-film classifier's weights and its card, atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"stage": "classifier"})
    atomic_write_text(card_path(path), json.dumps(card, indent=2, default=str) + "\n")
    return path


def load_classifier(weights: str | Path) -> tuple[torch.nn.Module, dict]:
    """The classifier and its card; a missing or mismatched file gives one clear :class:`CxrsegError`."""
    weights = Path(weights)
    if not weights.is_file():
        raise CxrsegError(f"{weights}: classifier weights not found")
    card = read_card(weights)  # names a missing or unreadable card
    arch = card.get("architecture", {})
    if arch.get("type") not in (IMAGE_CLASSIFIER, IMAGE_CLASSIFIER + "121"):  # DenseNet121: the first run's card
        raise CxrsegError(f"{weights}: not a cxrseg image classifier (architecture {arch})")
    model = build_image_classifier(arch.get("arch", "densenet121"))
    try:
        model.load_state_dict(load_file(str(weights)))
    except Exception as e:
        raise CxrsegError(f"{weights}: checkpoint does not match its card ({type(e).__name__})") from e
    return model.eval(), card


def shipped_weights(stage: str) -> Path:
    """Path of the model shipped inside the package for ``stage`` ('lung', 'infection', 'lung-wide', the wider
    stage 1 of the accurate mode, or 'classifier', the whole-film classifier averaged with stage 2's head)."""
    if stage not in SHIPPED:
        raise CxrsegError(f"unknown stage {stage!r}; use one of {SHIPPED}")
    path = Path(str(resources.files("cxrseg.models") / "weights" / f"{stage}.safetensors"))
    if not path.is_file():
        raise CxrsegError(f"{path}: the shipped {stage} model is missing from this install; pass a model path")
    return path
