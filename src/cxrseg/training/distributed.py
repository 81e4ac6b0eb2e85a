"""PyTorch DDP plumbing: detect a torchrun launch, shard data, reduce results, let rank 0 write."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(use_cuda: bool | None = None) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): nccl when training on GPU, else gloo.

    ``use_cuda`` says whether this run trains on GPU (default: whenever CUDA is available); a CPU run on
    a GPU machine (``--device cpu``) must use gloo, since nccl only moves CUDA tensors.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    use_cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` (all ranks get the list); a one-element list when not distributed."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def sum_floats(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (every rank gets the sums); unchanged when not distributed."""
    if not info.enabled:
        return list(values)
    return [float(sum(col)) for col in zip(*gather_objects(list(values), info))]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
