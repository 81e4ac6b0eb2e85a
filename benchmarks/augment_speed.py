"""Training augmentation cost per image: per sample (DataLoader workers' path) against whole batches (``--batch-augment``).

    python benchmarks/augment_speed.py                          # synthetic 256x256 films, stage 2 as shipped
    python benchmarks/augment_speed.py --data ../shared/data/COVID-QU-Ex --device cuda

Both paths do the same work for stage 2 as the shipped model is trained: acquisition shifts, histogram
equalisation, flip and affine, crop to the lungs' box + 8% and resize to 192, two channels. Per sample is
``SegmentationDataset.__getitem__`` in this process (one worker's cost); batch is ``BatchAugment`` on a batch of
``--batch`` on ``--device``. Median of ``--repeats`` rounds, milliseconds per image.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from cxrseg.data.dataset import ArrayBundle, InputSpec, SegmentationDataset
from cxrseg.training.batch_augment import BatchAugment

SPEC = InputSpec(norm="equalize", roi_input="image_and_mask", roi_margin=0.08, size=192)


def films(args) -> ArrayBundle:
    """Real Val films when ``--data`` is given, else synthetic ones (a phantom with lungs and lesions)."""
    if args.data:
        from cxrseg.data.covidqu import find_dataset, require_samples
        from cxrseg.data.dataset import load_arrays

        index = find_dataset(args.data, part="infection", splits=("Val",))
        return load_arrays(require_samples(index, ("Val",), "infection")[: args.batch], 256)
    from cxrseg.data.synthetic import phantom

    rng = np.random.default_rng(0)
    made = [phantom("COVID-19", 256, rng) for _ in range(args.batch)]
    return ArrayBundle(np.stack([m[0] for m in made]), np.stack([m[1] for m in made]), np.stack([m[2] for m in made]),
                       ["COVID-19"] * args.batch, [str(i) for i in range(args.batch)])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="COVID-QU-Ex folder (default: synthetic films)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (a DataLoader worker has 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bundle = films(args)
    dataset = SegmentationDataset(bundle, "infection", augment=True, spec=SPEC, shifts=True)
    augment = BatchAugment(SPEC, "infection", shifts=True)
    images, masks, lungs = (torch.from_numpy(a).to(device) for a in (bundle.images, bundle.infections, bundle.lungs))
    augment(images, masks, lungs)  # warm-up (kernels, the text stamps)
    per_sample, batched = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        for i in range(len(bundle)):
            dataset[i]
        per_sample.append((time.perf_counter() - t) / len(bundle))
        synchronize(device)
        t = time.perf_counter()
        augment(images, masks, lungs)
        synchronize(device)
        batched.append((time.perf_counter() - t) / len(bundle))
    ps, bt = statistics.median(per_sample) * 1e3, statistics.median(batched) * 1e3
    source = "COVID-QU-Ex Val" if args.data else "synthetic"
    print(f"stage-2 training augmentation, {source} 256x256 films -> 2x192x192, {args.threads} CPU thread(s)\n")
    print("| path | where | ms / image |")
    print("|---|---|---:|")
    print(f"| per sample (SegmentationDataset, one DataLoader worker) | CPU | {ps:.2f} |")
    print(f"| batch of {args.batch} (BatchAugment, `--batch-augment`) | {device} | {bt:.2f} |")


if __name__ == "__main__":
    main()
