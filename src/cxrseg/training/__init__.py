"""Training: configuration, losses, and the fit loop."""

from cxrseg.training.config import TrainConfig
from cxrseg.training.loop import FitResult, fit

__all__ = ["FitResult", "TrainConfig", "fit"]
