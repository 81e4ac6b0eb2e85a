"""TwoStagePipeline: X-ray -> lung mask -> lung ROI -> infection mask -> figures, at the input's own size.

Stage 1 runs on the X-ray resized to its model size (one model, or the mean probability of several: the
``accurate`` mode adds a wider stage 1 to the shipped one); its mask (two largest components, holes filled) makes
the lung ROI that stage 2 sees, built as stage 2's card says (X-ray x mask or both as channels, the whole image
or the lungs' box, at its own size; :mod:`cxrseg.data.roi`). Stage 2's image-level head vetoes infection on
images it judges free of it; surviving infection is clipped to the lung and specks under ``min_area``
dropped. Probabilities are upsampled to the input size before thresholding, so masks follow the original
resolution rather than blocky 256-pixel steps.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cxrseg.data.borders import content_box
from cxrseg.data.covidqu import DATA_SIZE
from cxrseg.data.dataset import stage2_input
from cxrseg.data.io import XRay, read_xray
from cxrseg.data.normalize import normalize_input
from cxrseg.data.roi import crop_resize, lung_box, paste_back
from cxrseg.errors import CxrsegError
from cxrseg.inference.backends import Backend, OnnxBackend, TorchBackend, choose, run_batched
from cxrseg.inference.decision import FilmClassifier, combine, resolve_classifier
from cxrseg.inference.lung_check import confidence_threshold, lung_confidence
from cxrseg.inference.postprocess import clean_infection, clean_lung, split_lungs
from cxrseg.inference.result import Segmentation
from cxrseg.inference.severity import lung_densities, severity
from cxrseg.models.factory import ModelConfig
from cxrseg.models.store import load_model, read_card, shipped_weights

BACKENDS = ("auto", "torch", "onnx")
COVID_STATUSES = ("unknown", "positive")
# The slower 'accurate' mode: flip TTA, and stage 1 the mean of the shipped lung model and a wider one. Better lungs
# move stage 2's box and mask; with TTA on both stages that gave +0.008 COVID-19 Dice on Val (docs/experiments.md).
ACCURATE_LUNGS = ("lung", "lung-wide")


@dataclass
class LungMember:
    """One stage-1 model: how to run it and what its card says about its input."""

    backend: Backend
    card: dict
    config: ModelConfig
    size: int

    @classmethod
    def of(cls, backend: Backend, card: dict) -> LungMember:
        return cls(backend, card, ModelConfig.from_dict(card.get("architecture", {})), int(card.get("input_size", 256)))


@dataclass
class ModelSizeOutputs:
    """Stage outputs at the model size S for N images."""

    lung_prob: np.ndarray  # (N, S, S) float
    lung: np.ndarray  # (N, S, S) bool, cleaned
    infection_prob: np.ndarray  # (N, S, S) float before the image-level veto, below threshold outside kept opacity
    image_prob: np.ndarray | None  # (N,) P(COVID-19) from the stage-2 head
    uncertainty: np.ndarray | None  # (N, S, S) std across TTA members
    vetoed: np.ndarray  # (N,) bool: the head judged the film not COVID-19-like (its opacity is not counted)
    lung_confidence: np.ndarray  # (N,) stage 1's mean probability inside its mask (lung_check)


@dataclass
class ModelPass:
    """What :meth:`TwoStagePipeline.model_pass` hands to :meth:`TwoStagePipeline.finish` for a batch of films."""

    outputs: ModelSizeOutputs
    small: np.ndarray  # (N, S, S) the films (their content boxes) at the model grid
    boxes: list[tuple[int, int, int, int]]  # each film's content box (top, bottom, left, right) at its own size
    status: str  # the COVID-19 status the decision used


def resize_batch(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (N, H, W) float32 to ``size``; antialiased when shrinking."""
    if x.shape[-2:] == tuple(size):
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))[:, None]
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=shrink)[:, 0].numpy()


class TwoStagePipeline:
    """Both stages behind one call. Build with :meth:`from_pretrained` (shipped models by default)."""

    def __init__(
        self,
        lung: Backend | Sequence[Backend],
        infection: Backend,
        lung_card: dict | Sequence[dict],
        infection_card: dict,
        tta: bool = False,
        batch_size: int = 8,
        covid_status: str = "unknown",
        crop_borders: bool = False,
        classifier: FilmClassifier | None = None,
        accurate: bool = False,
    ) -> None:
        """``lung`` and ``lung_card``: one stage-1 model, or several whose probabilities are averaged (the first is
        the primary: its card names stage 1 in the outputs). ``accurate``: take the decision tuned for the accurate
        mode (the card's ``accurate`` block); :meth:`from_pretrained` builds that mode's models."""
        if covid_status not in COVID_STATUSES:
            raise CxrsegError(f"unknown COVID-19 status {covid_status!r}; use one of {', '.join(COVID_STATUSES)}")
        self.covid_status = covid_status  # 'positive': confirmed by the user, so the image-level veto is skipped
        lungs = [lung] if not isinstance(lung, Sequence) else list(lung)
        cards = [lung_card] if isinstance(lung_card, dict) else list(lung_card)
        if not lungs or len(lungs) != len(cards):
            raise CxrsegError(f"stage 1 needs one card per model ({len(lungs)} models, {len(cards)} cards)")
        self.lung_members = [LungMember.of(b, c) for b, c in zip(lungs, cards)]
        self.lung_backend, self.infection_backend = lungs[0], infection
        self.lung_card, self.infection_card = cards[0], infection_card
        self.lung_config = self.lung_members[0].config
        self.infection_config = ModelConfig.from_dict(infection_card.get("architecture", {}))
        self.lung_size = max(m.size for m in self.lung_members)
        # The grid both stages' outputs live on. A stage 2 that crops the lungs' box crops it from the films' own
        # 256 grid, as in training, so a smaller stage 1 runs at its own size and its output is resized to the grid.
        crops = self.infection_config.roi_margin is not None
        self.size = max(DATA_SIZE, self.lung_size) if crops else self.lung_size
        self.infection_size = int(infection_card.get("input_size", self.size))
        self.tta, self.accurate = tta or accurate, accurate
        self.batch_size = batch_size
        self.weights: dict[str, Path] = {}  # 'lung' ('lung-2', ...)/'infection' -> the files loaded, when built by from_pretrained
        # Run the models on the content inside flat edge bands only (cxrseg.data.borders). Off by default: on Val it
        # helped padded films a little, but on films whose edges were blacked out it doubled the false alarms
        # (docs/experiments.md), since the models were trained on films with their bands.
        self.crop_borders = crop_borders
        self.lung_threshold = float(self.lung_card.get("threshold", 0.5))
        self.lung_confidence_threshold = confidence_threshold(len(self.lung_members), self.tta)
        # An optional whole-film classifier averaged with the head (cxrseg.inference.decision); thresholds tuned with it
        # live in its card. TTA averages two predictions, which shifts the probabilities, and the accurate mode's lungs
        # move stage 2's input: each has its own tuned decision (the card's 'tta' or 'accurate' block), where the card
        # has one.
        self.classifier = classifier
        source = classifier.card if classifier is not None and classifier.has_decision else infection_card
        # the accurate mode runs TTA too: a card tuned for TTA but not for it gives its TTA decision
        fallbacks = {"accurate": ("accurate", "tta"), "tta": ("tta",), None: ()}[self.decision_block]
        decision = next((source[k] for k in fallbacks if k in source), source)
        self.infection_threshold = float(decision.get("threshold", 0.5))
        t = decision.get("image_threshold")
        self.image_threshold = None if t is None else float(t)
        self.min_area = int(decision.get("min_area", 0))

    @property
    def backend_name(self) -> str:
        return self.lung_backend.name

    @property
    def cards(self) -> dict[str, dict]:
        """Every model card this pipeline runs, by the names of :attr:`weights`: 'lung' ('lung-2', ... for further
        stage-1 models), 'infection', and 'classifier' when a whole-film classifier joins the decision."""
        cards = {"lung": self.lung_card}
        cards.update({f"lung-{i}": m.card for i, m in enumerate(self.lung_members[1:], start=2)})
        cards["infection"] = self.infection_card
        if self.classifier is not None:
            cards["classifier"] = self.classifier.card
        return cards

    @property
    def decision_block(self) -> str | None:
        """The block of the decision card this pipeline's thresholds come from: 'accurate', 'tta' or None (the top)."""
        return "accurate" if self.accurate else "tta" if self.tta else None

    @classmethod
    def from_pretrained(
        cls,
        lung: str | Path | Sequence[str | Path] | None = None,
        infection: str | Path | None = None,
        backend: str = "auto",
        device: str = "auto",
        tta: bool = False,
        batch_size: int = 8,
        threads: int | None = None,
        precision: str = "auto",
        covid_status: str = "unknown",
        crop_borders: bool = False,
        classifier: str | Path | None = "auto",
        accurate: bool = False,
    ) -> TwoStagePipeline:
        """Load both stages (shipped models when a path is None) on 'torch', 'onnx' or 'auto', in 'fp32', 'bf16'
        or 'auto' precision.

        'auto' picks the fastest path that keeps the masks (:func:`cxrseg.inference.backends.choose`): PyTorch
        bf16 where the CPU/GPU has native bf16, else onnxruntime fp32 on CPU when installed, else PyTorch fp32.
        A backend named explicitly runs fp32 unless ``precision='bf16'``: ``backend='torch'`` is the fp32
        reference. ``threads``: onnxruntime's intra-op threads (PyTorch uses ``torch.set_num_threads``).
        ``classifier``: the whole-film classifier averaged with stage 2's head, 'auto' (the shipped one, with the
        shipped stage 2), 'none', or a path (:func:`cxrseg.inference.decision.resolve_classifier`).
        ``lung`` may list several stage-1 models, whose probabilities are averaged. ``accurate``: the slower mode,
        flip TTA with stage 1 the mean of the shipped lung model and the shipped wider one (when ``lung`` is None)
        and the thresholds tuned for it.
        """
        backend, precision = choose(backend, precision, device)
        if lung is None:
            lungs = [shipped_weights(s) for s in (ACCURATE_LUNGS if accurate else ("lung",))]
        else:
            lungs = [Path(lung)] if isinstance(lung, (str, Path)) else [Path(p) for p in lung]
        paths = [*lungs, Path(infection) if infection else shipped_weights("infection")]
        cards = [read_card(p) for p in paths]
        if backend == "torch":
            backends = [TorchBackend(load_model(p)[0], device, precision=precision) for p in paths]
        else:
            backends = [OnnxBackend(onnx_path_for(p), threads=threads) for p in paths]
        film = None
        weights = resolve_classifier(classifier, infection)
        if weights is not None:  # PyTorch in either backend: bf16 where the stages run bf16, else fp32
            film = FilmClassifier(weights, backends[0].device if backend == "torch" else "cpu", precision)
        pipeline = cls(backends[:-1], backends[-1], cards[:-1], cards[-1], tta=tta, batch_size=batch_size,
                       covid_status=covid_status, crop_borders=crop_borders, classifier=film, accurate=accurate)
        names = ["lung", *(f"lung-{i}" for i in range(2, len(lungs) + 1)), "infection"]
        pipeline.weights = dict(zip(names, paths))
        return pipeline

    # -- model-size core, shared by predict() and evaluation -------------------------------------
    def _probs(self, backend: Backend, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(mean seg prob (N,S,S), mean image prob, seg std across TTA or None) for (N, C, S, S) inputs."""
        seg, cls = run_batched(backend, x, self.batch_size)
        if not self.tta:
            return seg[:, 0], cls, None
        seg_f, cls_f = run_batched(backend, np.ascontiguousarray(x[..., ::-1]), self.batch_size)
        seg_f = seg_f[:, 0, :, ::-1]
        members = np.stack([seg[:, 0], seg_f])
        image = None if cls is None else (cls + cls_f) / 2
        return members.mean(0), image, members.std(0)

    def lungs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1 alone on (N, S, S) float32 images in [0, 1]: (lung probabilities, cleaned bool lung masks).
        Each stage-1 model sees the films normalised and sized as its card says; their probabilities are averaged."""
        probs = []
        for member in self.lung_members:
            x = normalize_input(images, member.config.input_norm)
            if member.size != x.shape[-1]:
                x = resize_batch(x, (member.size, member.size))
            prob, _, _ = self._probs(member.backend, x[:, None])
            if len(images) and prob.shape[-2:] != images.shape[-2:]:
                prob = resize_batch(prob, images.shape[-2:])
            probs.append(prob)
        lung_prob = probs[0] if len(probs) == 1 else np.mean(probs, axis=0, dtype=np.float32)
        lung = np.stack([clean_lung(p > self.lung_threshold) for p in lung_prob]) if len(images) else lung_prob > 1
        return lung_prob, lung

    def _stage2(self, images: np.ndarray, lung: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Stage 2 on its own input (normalised, masked or two-channel, maybe cropped), mapped back to (N, S, S)."""
        cfg, size, shape = self.infection_config, self.infection_size, images.shape[-2:]
        x = torch.from_numpy(normalize_input(images, cfg.input_norm))[:, None]
        m = torch.from_numpy(lung.astype(np.float32))[:, None]
        boxes = [lung_box(lg, cfg.roi_margin) if cfg.roi_margin is not None else (0, shape[0], 0, shape[1]) for lg in lung]
        if len(images):
            inputs = np.stack([
                stage2_input(crop_resize(x[i], b, size), crop_resize(m[i], b, size, "nearest"), cfg.roi_input).numpy()
                for i, b in enumerate(boxes)
            ])
        else:
            inputs = np.zeros((0, cfg.in_channels, size, size), np.float32)
        prob, image_prob, unc = self._probs(self.infection_backend, inputs)
        resized = cfg.roi_margin is not None or (size, size) != tuple(shape)
        if resized and len(prob):
            prob = np.stack([paste_back(p, b, shape) for p, b in zip(prob, boxes)])
            if unc is not None:
                unc = np.stack([paste_back(u, b, shape) for u, b in zip(unc, boxes)])
        return prob, image_prob, unc

    def _status(self, covid_status: str | None) -> str:
        """``covid_status`` checked, or the pipeline's own when None."""
        status = covid_status or self.covid_status
        if status not in COVID_STATUSES:
            raise CxrsegError(f"unknown COVID-19 status {status!r}; use one of {', '.join(COVID_STATUSES)}")
        return status

    def run_model_size(self, images: np.ndarray, covid_status: str | None = None) -> ModelSizeOutputs:
        """Both stages on (N, S, S) float32 images in [0, 1] at the model size (``covid_status``: see predict)."""
        lung_prob, lung = self.lungs(images)
        inf_prob, image_prob, unc = self._stage2(images, lung)
        if self.classifier is not None and len(images):
            image_prob = combine(image_prob, self.classifier(images, self.tta))
        vetoed = np.zeros(len(images), bool)
        if image_prob is not None and self.image_threshold is not None and self._status(covid_status) == "unknown":
            vetoed = image_prob < self.image_threshold
        for i in range(len(images)):
            kept = clean_infection(inf_prob[i] > self.infection_threshold, lung[i], self.min_area)
            inf_prob[i] = np.where(kept, inf_prob[i], np.minimum(inf_prob[i], self.infection_threshold) * lung[i])
        return ModelSizeOutputs(lung_prob, lung, inf_prob, image_prob, unc, vetoed, lung_confidence(lung_prob, lung))

    # -- public API ------------------------------------------------------------------------------
    def predict(self, xrays: list[XRay], covid_status: str | None = None) -> list[Segmentation]:
        """Segment a batch of decoded X-rays; masks come back at each image's own size.

        ``covid_status`` ('unknown' or 'positive'; default: the pipeline's) says what the user knows: for a
        confirmed COVID-19 patient the image-level veto is skipped and the grades come from the opacity alone.
        With ``crop_borders`` the models see only the content inside flat bands at the film's edges
        (collimation, padding); the masks come back at the full size, empty in the bands.
        """
        if not xrays:
            return []
        return self.finish(xrays, self.model_pass(xrays, covid_status))

    def model_pass(self, xrays: list[XRay], covid_status: str | None = None) -> ModelPass:
        """The first half of :meth:`predict`: the films at the model grid through both stages (the models' work)."""
        status = self._status(covid_status)
        s = (self.size, self.size)
        boxes = [content_box(x.pixels) if self.crop_borders else (0, x.size[0], 0, x.size[1]) for x in xrays]
        small = np.stack([resize_batch(x.pixels[None, t:b, le:r], s)[0]
                          for x, (t, b, le, r) in zip(xrays, boxes)]).astype(np.float32)
        return ModelPass(self.run_model_size(small, status), small, boxes, status)

    def finish(self, xrays: list[XRay], done: ModelPass) -> list[Segmentation]:
        """The second half of :meth:`predict`: masks at each film's own size, cleaned, and their figures. Numpy and
        SciPy on one core, so a folder run does it on its writer thread while the models take the next batch."""
        out, small, boxes, status = done.outputs, done.small, done.boxes, done.status
        results = []
        for i, x in enumerate(xrays):
            h, w = x.size
            lung_p, inf_p = _to_full(np.stack([out.lung_prob[i], out.infection_prob[i]]), boxes[i], (h, w))
            lung = clean_lung(lung_p > self.lung_threshold)
            opacity = (inf_p > self.infection_threshold) & lung
            infection = np.zeros_like(opacity) if out.vetoed[i] else opacity
            # at the model size (the same for any input size), ranked inside the film's flat edge bands
            density = lung_densities(small[i], out.lung[i], content_box(small[i]))
            sides = split_lungs(lung)
            unc = score = None
            if out.uncertainty is not None:
                unc = _to_full(out.uncertainty[i][None], boxes[i], (h, w))[0]
                score = float(unc[lung].mean()) if lung.any() else 0.0
            results.append(
                Segmentation(
                    source=x.source,
                    lung=lung,
                    infection=infection,
                    figures=severity(lung, infection, density, sides),
                    opacity=opacity,
                    opacity_figures=severity(lung, opacity, density, sides),
                    covid_status=status,
                    image_threshold=self.image_threshold,
                    infection_probability=None if out.image_prob is None else float(out.image_prob[i]),
                    uncertainty=unc,
                    uncertainty_score=score,
                    lung_confidence=float(out.lung_confidence[i]),
                    lung_confidence_threshold=self.lung_confidence_threshold,
                )
            )
        return results

    def predict_one(self, image: XRay | str | Path | np.ndarray) -> Segmentation:
        """Segment one X-ray given as a decoded :class:`XRay`, a file path, or a (H, W) array in [0, 1]."""
        if isinstance(image, (str, Path)):
            image = read_xray(image)
        elif isinstance(image, np.ndarray):
            image = XRay(np.asarray(image, np.float32), "<array>")
        return self.predict([image])[0]


def _to_full(maps: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """(C, S, S) model-size maps of the content box, resized to the box and placed in zeros of the full ``shape``."""
    t, b, le, r = box
    inner = resize_batch(maps, (b - t, r - le))
    if (b - t, r - le) == tuple(shape):
        return inner
    full = np.zeros((len(maps), *shape), inner.dtype)
    full[:, t:b, le:r] = inner
    return full


def onnx_path_for(weights: Path) -> Path:
    """The .onnx beside ``weights`` if present, else one exported once into the user's cache (keyed by the
    weights' digest; ``CXRSEG_CACHE`` or ``~/.cache/cxrseg``), or a temporary folder where that is not writable."""
    beside = weights.with_suffix(".onnx")
    if beside.is_file():
        return beside
    from cxrseg.export import export_onnx
    from cxrseg.models.store import weights_digest

    cache = Path(os.environ.get("CXRSEG_CACHE", Path.home() / ".cache" / "cxrseg")) / "onnx"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = Path(tempfile.mkdtemp(prefix="cxrseg-onnx-"))
    out = cache / f"{weights.stem}-{weights_digest(weights)}.onnx"
    return out if out.is_file() else export_onnx(weights, out)
