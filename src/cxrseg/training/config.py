"""Training configuration: one dataclass whose defaults train a usable model on COVID-QU-Ex."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from cxrseg.models.factory import ModelConfig

LOSSES = ("bce_dice", "bce_dice_per_image", "focal_jaccard", "focal_tversky")
ROI_SOURCES = ("predicted", "ground_truth")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class TrainConfig:
    """Everything ``cxrseg train`` needs. ``stage`` is 'lung' (stage 1) or 'infection' (stage 2).

    Stage 2 trains on the lung ROI: by default the stage-1 model's own predictions (``roi='predicted'``,
    so training sees what inference will), or the ground-truth lung masks (``roi='ground_truth'``).
    """

    stage: str
    data: Path
    out: Path
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    size: int = 256
    loss: str = "bce_dice"
    model: ModelConfig = field(default_factory=ModelConfig)
    roi: str = "predicted"
    lung_model: Path | None = None  # stage-1 weights for roi='predicted'; default: the shipped model
    init_from: Path | None = None  # transfer: start from these weights (e.g. stage 1), matching layers only
    class_loss_weight: float = 0.5  # weight of the image-level head's BCE (stage 2)
    train_split: str = "Train"
    val_split: str = "Val"
    max_train: int | None = None  # subsample for quick runs (stratified by class)
    max_val: int | None = None
    num_workers: int = 0
    device: str = "auto"
    resume: bool = True
    precision: str = "auto"  # bf16 autocast where the device supports it (GPU, AVX-512 BF16 CPU), else fp32
    shift_augment: bool = False  # random acquisition shifts (gamma, window, blur, noise, JPEG, borders, text)
    batch_augment: bool = False  # augment whole batches on the device (GPU) instead of per sample in workers
    framing_zoom: float = 1.0  # batch augmentation: an isotropic zoom in or out up to this factor (1: off; row 78)
    tighten_negatives: float = 1.0  # batch augmentation: half the negatives framed tighter, up to this zoom (row 79)
    distill_from: tuple[Path, ...] = ()  # teacher weights: their mean probability is a soft target too (distill)
    distill_weight: float = 1.0  # weight of the distillation loss beside the ground-truth loss
    ema: float | None = None  # keep an exponential moving average of the weights (e.g. 0.999); validate and save it
    time_budget_s: float | None = None  # fit the schedule to this many seconds, measured on the first epoch
    progress: bool = True
    command: str = ""  # the command line that started the run, kept in the card

    def __post_init__(self) -> None:
        from cxrseg.errors import CxrsegError

        if self.stage not in ("lung", "infection"):
            raise CxrsegError(f"unknown stage {self.stage!r}; use 'lung' or 'infection'")
        if self.loss not in LOSSES:
            raise CxrsegError(f"unknown loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        if self.roi not in ROI_SOURCES:
            raise CxrsegError(f"unknown ROI source {self.roi!r}; use one of {', '.join(ROI_SOURCES)}")
        if self.precision not in PRECISIONS:
            raise CxrsegError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")
        if self.framing_zoom < 1 or self.tighten_negatives < 1:
            raise CxrsegError("framing_zoom and tighten_negatives are factors of at least 1, got "
                              f"{self.framing_zoom} and {self.tighten_negatives}")
        if (self.framing_zoom > 1 or self.tighten_negatives > 1) and not self.batch_augment:
            raise CxrsegError("framing_zoom and tighten_negatives are part of the batch augmentation: add --batch-augment")
        if self.distill_weight < 0:
            raise CxrsegError(f"distill_weight must be at least 0, got {self.distill_weight}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise CxrsegError("ema must be a decay between 0 and 1, e.g. 0.999")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise CxrsegError(f"{name} must be at least 1")
        self.data, self.out = Path(self.data), Path(self.out)
        self.distill_from = tuple(Path(p) for p in self.distill_from)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["distill_from"] = [str(p) for p in self.distill_from]
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
