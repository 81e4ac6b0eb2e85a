"""Augmentation of whole batches on the training device, for GPUs that per-sample CPU workers cannot keep busy.

The per-sample path (:class:`cxrseg.data.dataset.SegmentationDataset` in DataLoader workers) costs about 5 ms of
CPU per image; on a lent H100 the epochs ran at the pace of those workers (docs/experiments.md, session 4). Here
the same steps run as tensor ops on a batch, in the same order and with the same distributions: acquisition
shifts (:mod:`cxrseg.data.shifts`: gamma, window, equalisation, blur, sharpening, noise, down-sampling, JPEG,
borders, burnt-in text), the input normalisation, flip and a small affine (or brightness/contrast jitter without
shifts), then stage 2's crop to the lungs' box and its two-channel or masked input. The training set itself lives on the
device (:class:`DeviceBatches`), so an epoch moves no data between host and device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cxrseg.data.dataset import ArrayBundle, InputSpec

N_SHIFT_KINDS = 10  # the kinds of cxrseg.data.shifts.random_shift, in its order
QUALITY_LOSSES = (3, 5, 6, 7)  # blur, noise, down-sampling, JPEG: the shift kinds that lose image quality
TEXT_LABELS = ("R", "L", "PORTABLE", "AP ERECT", "2020-04-01 10:12", "ICU BED 7", "SUPINE")
# ITU T.81 Annex K luminance quantisation table, scaled by quality as libjpeg does.
_JPEG_TABLE = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32)


def equalize_batch(x: torch.Tensor) -> torch.Tensor:
    """:func:`cxrseg.data.normalize.equalize` on every (H, W) image of (N, 1, H, W) at once (256 bins)."""
    n = x.shape[0]
    q = (x.reshape(n, -1).clamp(0, 1) * 255).round().long()
    counts = torch.zeros(n, 256, device=x.device).scatter_add_(1, q, torch.ones_like(q, dtype=torch.float32))
    cdf = counts.cumsum(1) / q.shape[1]
    return cdf.gather(1, q).reshape(x.shape)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W) with one sigma per image (reflected edges, truncated at 4 sigma)."""
    n, _, h, w = x.shape
    radius = int(math.ceil(4 * float(sigma.max())))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)
    y = F.pad(x.reshape(1, n, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=n)
    y = F.conv2d(y, k[:, None, :, None], groups=n)
    return y.reshape(n, 1, h, w)


def jpeg_like(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Baseline-JPEG round trip of grayscale (N, 1, H, W): 8x8 DCT, quantisation at ``quality``, inverse."""
    n, _, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    y = F.pad(x * 255 - 128, (0, pw, 0, ph), mode="replicate")
    hh, ww = y.shape[-2:]
    i = torch.arange(8, device=x.device, dtype=x.dtype)
    d = torch.cos((2 * i[None] + 1) * i[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    blocks = y.reshape(n, hh // 8, 8, ww // 8, 8).permute(0, 1, 3, 2, 4)  # (N, by, bx, 8, 8)
    scale = torch.where(quality < 50, 5000 / quality, 200 - 2 * quality)
    table = ((_JPEG_TABLE.to(x.device)[None] * scale[:, None, None] + 50) / 100).floor().clamp(min=1)
    table = table[:, None, None]
    coef = d @ blocks @ d.T
    blocks = d.T @ ((coef / table).round() * table) @ d
    y = blocks.permute(0, 1, 3, 2, 4).reshape(n, 1, hh, ww)[..., :h, :w]
    return (y + 128).round().clamp(0, 255) / 255  # decoded back to 8 bits


def resample_each(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Down-sample each image by its ``factor`` (antialiased) and back up, bilinear: a small or rescaled film."""
    h, w = x.shape[-2:]
    out = torch.empty_like(x)
    for i, f in enumerate(factor.tolist()):
        small = F.interpolate(x[i : i + 1], size=(max(8, int(h / f)), max(8, int(w / f))), mode="bilinear",
                              antialias=True, align_corners=False)
        out[i : i + 1] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out


def black_borders(x: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Black out (top, bottom, left, right) ``fractions`` (N, 4) of each image: collimation."""
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    t, b = (fractions[:, 0] * h).round()[:, None, None], (fractions[:, 1] * h).round()[:, None, None]
    le, r = (fractions[:, 2] * w).round()[:, None, None], (fractions[:, 3] * w).round()[:, None, None]
    keep = (rows >= t) & (rows < h - b) & (cols >= le) & (cols < w - r)
    return x * keep[:, None].to(x.dtype)


def _text_stamps(size: int, count: int = 48, seed: int = 0) -> list[np.ndarray]:
    """Rendered labels (float masks in [0, 1]) at 3-6% of the image height, as :func:`cxrseg.data.shifts.text`."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    stamps = []
    for _ in range(count):
        font = ImageFont.load_default(size=max(8, int(size * rng.uniform(0.03, 0.06))))
        label = str(rng.choice(TEXT_LABELS))
        left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), label, font=font)
        img = Image.new("L", (max(1, right), max(1, bottom)))
        ImageDraw.Draw(img).text((0, 0), label, fill=255, font=font)
        stamps.append(np.asarray(img, np.float32)[:, : size // 2] / 255.0)
    return stamps


class BatchAugment:
    """Random training augmentation of a batch on its own device; see the module docstring.

    Call with uint8 images (N, H, W) and bool masks ``mask`` and ``roi`` (N, H, W); returns the network's input
    (N, C, S, S) and the target and lung masks (N, 1, S, S) as float, like the per-sample dataset's items.
    """

    def __init__(
        self,
        spec: InputSpec,
        target: str = "lung",
        shifts: bool = False,
        seed: int = 0,
        flip_prob: float = 0.5,
        affine_prob: float = 0.7,
        shift_prob: float = 0.6,
        jitter_prob: float = 0.3,
        framing_zoom: float = 1.0,
    ) -> None:
        if framing_zoom < 1:
            raise ValueError(f"framing_zoom is a factor of at least 1, got {framing_zoom}")
        self.spec, self.target, self.shifts = spec, target, shifts
        # with the affine, an isotropic zoom drawn log-uniformly from [1/framing_zoom, framing_zoom] (1: none): a
        # tighter or wider field of view for every film alike (experiments row 78: it blurs the framing cue but does
        # not remove it; DeviceBatches' tighten_negatives does)
        self.framing_zoom = framing_zoom
        self.flip_prob, self.affine_prob, self.shift_prob, self.jitter_prob = flip_prob, affine_prob, shift_prob, jitter_prob
        self.seed = seed
        self._stamps: list[torch.Tensor] | None = None
        self.generator: torch.Generator | None = None

    def reseed(self, seed: int, device: torch.device) -> None:
        """Start a fresh random stream (each epoch: a resumed run draws what the uninterrupted one would)."""
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    # -- random numbers on the batch's device -----------------------------------------------------------
    def _uniform(self, n: int, low, high, device) -> torch.Tensor:
        return torch.rand(n, device=device, generator=self.generator) * (high - low) + low

    def _chance(self, n: int, p: float, device) -> torch.Tensor:
        return torch.rand(n, device=device, generator=self.generator) < p

    # -- acquisition shifts -------------------------------------------------------------------------
    def _shift(self, kind: int, x: torch.Tensor) -> torch.Tensor:
        n, dev = x.shape[0], x.device
        u = lambda lo, hi: self._uniform(n, lo, hi, dev)[:, None, None, None]  # noqa: E731
        if kind == 0:  # gamma 0.5-2, log-uniform
            return x.clamp(0, 1) ** torch.exp(u(math.log(0.5), math.log(2.0)))
        if kind == 1:  # contrast window
            low = u(0.0, 0.25)
            floor = torch.clamp(low + 0.4, min=0.7)
            high = floor + self._uniform(n, 0, 1, dev)[:, None, None, None] * (1 - floor)
            return ((x - low) / (high - low).clamp(min=1e-6)).clamp(0, 1)
        if kind == 2:
            return equalize_batch(x)
        if kind == 3:
            return gaussian_blur(x, self._uniform(n, 0.5, 2.0, dev))
        if kind == 4:  # unsharp masking
            amount, sigma = u(0.5, 2.0), self._uniform(n, 1.0, 4.0, dev)
            return (x + amount * (x - gaussian_blur(x, sigma))).clamp(0, 1)
        if kind == 5:  # noise, stronger in bright regions
            noise = torch.randn(x.shape, device=dev, generator=self.generator)
            return (x + noise * u(0.01, 0.06) * (0.5 + x)).clamp(0, 1)
        if kind == 6:
            return resample_each(x, self._uniform(n, 1.5, 5.0, dev))
        if kind == 7:
            return jpeg_like(x, torch.randint(15, 70, (n,), device=dev, generator=self.generator).float())
        if kind == 8:
            sides = self._uniform(4 * n, 0.0, 0.1, dev) * self._chance(4 * n, 0.6, dev)
            return black_borders(x, sides.reshape(n, 4))
        return self._text(x)

    def _text(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self._stamps is None:
            self._stamps = [torch.from_numpy(s).to(x.device) for s in _text_stamps(h, seed=self.seed)]
        out = x.clone()
        for i in range(x.shape[0]):
            for _ in range(int(torch.randint(1, 4, (1,), generator=self.generator, device=x.device))):
                r = torch.rand(4, device=x.device, generator=self.generator).tolist()
                stamp = self._stamps[int(r[0] * len(self._stamps))] * (200 + 55 * r[1]) / 255
                sh, sw = min(stamp.shape[0], h), min(stamp.shape[1], w)
                y0 = int((0.02 if r[2] < 0.5 else 0.9) * h)
                x0 = int((0.02 if r[3] < 0.5 else 0.7) * w)
                sh, sw = min(sh, h - y0), min(sw, w - x0)
                out[i, 0, y0 : y0 + sh, x0 : x0 + sw] = torch.maximum(out[i, 0, y0 : y0 + sh, x0 : x0 + sw], stamp[:sh, :sw])
        return out

    def degrade(self, x: torch.Tensor, chance: torch.Tensor) -> torch.Tensor:
        """One random quality loss (blur, noise, down-sampling or JPEG) on each image with probability ``chance``
        (N,). Given to negative films only, it takes away a shortcut: COVID-QU-Ex's COVID-19 films come from
        lower-quality sources than its other films, so image quality alone predicts the label there."""
        n, dev = x.shape[0], x.device
        doing = torch.rand(n, device=dev, generator=self.generator) < chance
        kind = torch.randint(len(QUALITY_LOSSES), (n,), device=dev, generator=self.generator)
        x = x.clone()
        for j, k in enumerate(QUALITY_LOSSES):
            idx = torch.nonzero(doing & (kind == j)).flatten()
            if len(idx):
                x[idx] = self._shift(k, x[idx])
        return x

    def frame_tighter(self, x: torch.Tensor, mask: torch.Tensor, roi: torch.Tensor, most: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each film's centre enlarged by a zoom drawn log-uniformly from [1, ``most``] (N,; 1: unchanged), as a
        tighter field of view frames it; masks (N, H, W) follow. Given to negative films only, it takes away a
        shortcut: COVID-QU-Ex's COVID-19 films are framed tighter than its other films (experiments row 76)."""
        n, dev = x.shape[0], x.device
        scale = torch.exp(-torch.rand(n, device=dev, generator=self.generator) * torch.log(most.clamp(min=1)))
        zero = torch.zeros(n, device=dev)
        theta = torch.stack([torch.stack([scale, zero, zero], 1), torch.stack([zero, scale, zero], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        masks = torch.stack([mask, roi], 1).float()
        masks = F.grid_sample(masks, grid, mode="nearest", padding_mode="border", align_corners=False) > 0.5
        return x, masks[:, 0].to(mask.dtype), masks[:, 1].to(roi.dtype)

    def acquisition_shifts(self, x: torch.Tensor) -> torch.Tensor:
        """With probability ``shift_prob``, one or two random shifts per image (as RandAcquisitionShift)."""
        n, dev = x.shape[0], x.device
        active = self._chance(n, self.shift_prob, dev)
        count = torch.randint(1, 3, (n,), device=dev, generator=self.generator)
        x = x.clone()
        for step in range(2):
            kind = torch.randint(N_SHIFT_KINDS, (n,), device=dev, generator=self.generator)
            doing = active & (count > step)
            for k in range(N_SHIFT_KINDS):
                idx = torch.nonzero(doing & (kind == k)).flatten()
                if len(idx):
                    x[idx] = self._shift(k, x[idx])
        return x

    # -- geometry and intensity jitter ----------------------------------------------------------------
    def _affine(self, stack: torch.Tensor) -> torch.Tensor:
        """Flip, then rotation up to 10 degrees, scale 0.9-1.1 per axis (times the framing zoom, when on) and shift up
        to 12 px (zeros outside)."""
        n, _, h, w = stack.shape
        dev = stack.device
        flip = self._chance(n, self.flip_prob, dev)
        stack = torch.where(flip[:, None, None, None], stack.flip(-1), stack)
        on = self._chance(n, self.affine_prob, dev).float()
        angle = self._uniform(n, -math.radians(10), math.radians(10), dev) * on
        sy, sx = (1 + self._uniform(n, -0.1, 0.1, dev) * on for _ in range(2))
        if self.framing_zoom > 1:
            span = math.log(self.framing_zoom)
            zoom = torch.exp(self._uniform(n, -span, span, dev) * on)
            sy, sx = sy * zoom, sx * zoom
        ty, tx = self._uniform(n, -12, 12, dev) * on * 2 / h, self._uniform(n, -12, 12, dev) * on * 2 / w
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos * sx, -sin * sy, tx], 1), torch.stack([sin * sx, cos * sy, ty], 1)], 1)
        grid = F.affine_grid(theta, list(stack.shape), align_corners=False)
        return F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _jitter(self, x: torch.Tensor) -> torch.Tensor:
        """Contrast (gamma 0.7-1.5 within each image's range), scale +-15%, shift +-0.08: each with ``jitter_prob``."""
        n, dev = x.shape[0], x.device
        col = lambda t: t[:, None, None, None]  # noqa: E731
        lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
        g = torch.where(self._chance(n, self.jitter_prob, dev), self._uniform(n, 0.7, 1.5, dev), torch.ones(n, device=dev))
        x = ((x - lo) / (hi - lo).clamp(min=1e-8)) ** col(g) * (hi - lo) + lo
        x = x * col(1 + self._uniform(n, -0.15, 0.15, dev) * self._chance(n, self.jitter_prob, dev))
        return x + col(self._uniform(n, -0.08, 0.08, dev) * self._chance(n, self.jitter_prob, dev))

    # -- stage 2's view --------------------------------------------------------------------------------
    def _crop_to_lungs(self, stack: torch.Tensor, roi: torch.Tensor, size: int) -> torch.Tensor:
        """Each image's lungs' box grown by the spec's margin (as :func:`cxrseg.data.roi.lung_box`), resized to ``size``."""
        n, c, h, w = stack.shape
        margin = float(self.spec.roi_margin)
        boxes = []
        for axis, extent in ((2, h), (1, w)):  # rows: any over columns; columns: any over rows
            hit = roi.any(axis)
            idx = torch.arange(extent, device=roi.device)
            first = torch.where(hit, idx, extent).amin(1)
            last = torch.where(hit, idx, -1).amax(1) + 1
            empty = ~hit.any(1)
            first, last = torch.where(empty, 0, first), torch.where(empty, extent, last)
            m = (margin * (last - first).float()).round().long()
            boxes.append(((first - m).clamp(min=0).float(), (last + m).clamp(max=extent).float()))
        (y0, y1), (x0, x1) = boxes
        zero = torch.zeros(n, device=stack.device)
        theta = torch.stack([torch.stack([(x1 - x0) / w, zero, (x0 + x1) / w - 1], 1),
                             torch.stack([zero, (y1 - y0) / h, (y0 + y1) / h - 1], 1)], 1)
        grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
        image = F.grid_sample(stack[:, :1], grid, mode="bilinear", padding_mode="border", align_corners=False)
        # 'nearest' as F.interpolate (and so inference's crop_resize) takes it: the input pixel under each output
        # pixel's top-left corner, not its centre; half an output pixel back, plus a hair against ties.
        corner = torch.stack([theta[:, 0, 0], theta[:, 1, 1]], -1)[:, None, None] * (1 - 1e-3) / size
        masks = F.grid_sample(stack[:, 1:], grid - corner, mode="nearest", padding_mode="border", align_corners=False)
        return torch.cat([image, masks], 1)

    def __call__(self, images: torch.Tensor, mask: torch.Tensor, roi: torch.Tensor,
                 degrade: torch.Tensor | None = None, tighten: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.generator is None or self.generator.device != images.device:
            self.reseed(self.seed, images.device)
        x = images[:, None].float() / 255.0
        if tighten is not None:
            x, mask, roi = self.frame_tighter(x, mask, roi, tighten)
        if degrade is not None:
            x = self.degrade(x, degrade)
        if self.shifts:
            x = self.acquisition_shifts(x)
        if self.spec.norm == "equalize":
            x = equalize_batch(x)
        stack = self._affine(torch.cat([x, mask[:, None].float(), roi[:, None].float()], 1))
        x = stack[:, :1] if self.shifts else self._jitter(stack[:, :1])
        stack = torch.cat([x.clamp(0, 1), (stack[:, 1:] > 0.5).float()], 1)
        size = self.spec.size or stack.shape[-1]
        if self.target == "infection" and self.spec.roi_margin is not None:
            stack = self._crop_to_lungs(stack, stack[:, 2] > 0.5, size)
        elif size != stack.shape[-1]:
            stack = torch.cat([F.interpolate(stack[:, :1], size=(size, size), mode="bilinear", align_corners=False),
                               F.interpolate(stack[:, 1:], size=(size, size), mode="nearest")], 1)
        x, mask, roi = stack[:, :1], stack[:, 1:2], stack[:, 2:3]
        if self.target == "infection":
            x = x * roi if self.spec.roi_input == "masked" else torch.cat([x, roi], 1)
        return {"image": x.contiguous(), "mask": mask, "roi": roi}


class DeviceBatches:
    """The training set as tensors on ``device``, served in shuffled batches and augmented there.

    Drop-in for the training DataLoader: ``len()`` is batches per epoch, iteration yields dicts with ``image``,
    ``mask``, ``roi`` and ``has_infection``. Under DDP each rank takes every ``world_size``-th image of the
    epoch's permutation. Call :meth:`set_epoch` before each epoch (it seeds the shuffle and the augmentation).
    """

    def __init__(
        self,
        bundle: ArrayBundle,
        target: str,
        roi: np.ndarray | None,
        spec: InputSpec,
        batch_size: int,
        device: torch.device,
        shifts: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        degrade_negatives: float = 0.0,
        framing_zoom: float = 1.0,
        tighten_negatives: float = 1.0,
    ) -> None:
        self.images = torch.from_numpy(bundle.images).to(device)
        masks = bundle.lungs if target == "lung" else bundle.infections
        self.masks = torch.from_numpy(masks).to(device)
        self.rois = torch.from_numpy(bundle.lungs if roi is None else roi).to(device)
        self.positive = torch.from_numpy(bundle.has_infection().astype(np.float32)).to(device)
        self.augment = BatchAugment(spec, target, shifts, seed=seed, framing_zoom=framing_zoom)
        self.degrade_negatives = degrade_negatives  # chance of one quality loss on a film without COVID-19
        self.tighten_negatives = tighten_negatives  # largest tighter framing of a film without COVID-19 (1: off)
        self.batch_size, self.device = batch_size, device
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.drop_last = len(bundle) > batch_size * world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(len(self.images), generator=g)[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = len(range(self.rank, len(self.images), self.world_size))
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        self.augment.reseed(self.seed * 100_003 + self.epoch * 1_009 + self.rank, self.device)
        order = self._indices().to(self.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            degrade = self.degrade_negatives * (1 - self.positive[idx]) if self.degrade_negatives else None
            tighten = None
            if self.tighten_negatives > 1:  # half the negatives, each zoomed in by up to the factor
                coin = torch.rand(len(idx), device=self.device, generator=self.augment.generator) < 0.5
                tighten = 1 + (self.tighten_negatives - 1) * (1 - self.positive[idx]) * coin
            item = self.augment(self.images[idx], self.masks[idx], self.rois[idx], degrade, tighten)
            item["has_infection"] = self.positive[idx]
            yield item
