"""Models: the U-Net factory and safetensors + model-card storage."""

from cxrseg.models.factory import ModelConfig, SegNet, build_model, split_outputs
from cxrseg.models.store import load_model, read_card, save_model, shipped_weights

__all__ = ["ModelConfig", "SegNet", "build_model", "load_model", "read_card", "save_model", "shipped_weights", "split_outputs"]
