"""The one place that knows architectures: a MONAI U-Net, optionally with an image-level classifier head, and the
whole-film image classifier (a MONAI DenseNet)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from monai.networks.layers.simplelayers import SkipConnection
from monai.networks.nets import UNet
from torch import nn


@dataclass
class ModelConfig:
    """U-Net size and heads. Defaults: 5 levels, 16..256 channels, 2 residual units (1.6 M parameters).

    ``classifier`` adds a head on the bottleneck that predicts "this image has infection" (stage 2):
    the segmentation alone cannot tell COVID-19 opacities from other pneumonia, the head can veto it.

    The input is part of the model: ``input_norm`` (:mod:`cxrseg.data.normalize`) is applied to the X-ray
    first; stage 2 sees either the X-ray times the lung mask (``roi_input='masked'``, 1 channel) or the X-ray
    and the lung mask as two channels (``'image_and_mask'``: the context around the lungs stays visible), over
    the whole image or, with ``roi_margin`` set, cropped to the lungs' box grown by that fraction.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    num_res_units: int = 2
    dropout: float = 0.0
    classifier: bool = False
    in_channels: int = 1
    input_norm: str = "none"
    roi_input: str = "masked"
    roi_margin: float | None = None

    def __post_init__(self) -> None:
        from cxrseg.data.normalize import NORMS
        from cxrseg.errors import CxrsegError

        if self.roi_input not in ("masked", "image_and_mask"):
            raise CxrsegError(f"unknown roi_input {self.roi_input!r}; use 'masked' or 'image_and_mask'")
        if self.input_norm not in NORMS:
            raise CxrsegError(f"unknown input normalisation {self.input_norm!r}; use one of {', '.join(NORMS)}")
        if self.roi_input == "image_and_mask":
            self.in_channels = 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["channels"] = tuple(d.get("channels", cls.channels))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def _bottom_layer(unet: UNet) -> nn.Module:
    """Walk MONAI's nested (down, SkipConnection(sub), up) blocks to the bottleneck module."""
    m: nn.Module = unet.model
    while isinstance(m, nn.Sequential) and len(m) == 3 and isinstance(m[1], SkipConnection):
        m = m[1].submodule
    return m


class SegNet(nn.Module):
    """MONAI U-Net returning segmentation logits (B,1,H,W), plus image logits (B,) when it has a classifier."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        ch = tuple(config.channels)
        self.unet = UNet(
            spatial_dims=2,
            in_channels=config.in_channels,
            out_channels=1,
            channels=ch,
            strides=(2,) * (len(ch) - 1),
            num_res_units=config.num_res_units,
            dropout=config.dropout,
        )
        self.head: nn.Module | None = None
        self._features: torch.Tensor | None = None
        if config.classifier:
            self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * ch[-1], 1))
            _bottom_layer(self.unet).register_forward_hook(self._keep_features)

    def _keep_features(self, _module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        self._features = output

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        seg = self.unet(x)
        if self.head is None:
            return seg
        f = self._features
        self._features = None
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return seg, self.head(pooled).squeeze(1)


def build_model(config: ModelConfig | None = None) -> SegNet:
    return SegNet(config or ModelConfig())


def split_outputs(out: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(segmentation logits, image logits or None) from either kind of model output."""
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, None


IMAGE_CLASSIFIER = "monai.networks.nets.DenseNet"  # the card's architecture type of the whole-film classifier
# name -> MONAI DenseNet settings: the standard DenseNet121 (7.0M parameters) and a small one (0.67M)
CLASSIFIER_SIZES = {
    "densenet121": {"init_features": 64, "growth_rate": 32, "block_config": (6, 12, 24, 16)},
    "densenet-small": {"init_features": 32, "growth_rate": 16, "block_config": (4, 8, 12, 8)},
}


def build_image_classifier(arch: str = "densenet121") -> nn.Module:
    """A MONAI DenseNet on one grey channel, one logit out: P(COVID-19) for a whole film (cxrseg.training.classifier)."""
    from monai.networks.nets import DenseNet

    from cxrseg.errors import CxrsegError

    if arch not in CLASSIFIER_SIZES:
        raise CxrsegError(f"unknown classifier {arch!r}; use one of {', '.join(CLASSIFIER_SIZES)}")
    return DenseNet(spatial_dims=2, in_channels=1, out_channels=1, **CLASSIFIER_SIZES[arch])
