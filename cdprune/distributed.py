"""Data-parallel training under torchrun: one process per device, gradients averaged by DDP.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and the rendezvous address) in every
process it starts; `from_environment` reads them and `join` enters the process group — gloo on the CPU,
NCCL on CUDA. Without torchrun (or with one process) nothing here does anything, so the
same code path trains on a single process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import CdpruneError


@dataclass(frozen=True)
class Group:
    """This process's place in the job: rank 0 of 1 when not under torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the files and shows the progress bar; the others only compute."""
        return self.rank == 0


def from_environment() -> Group:
    """The group torchrun describes in the environment (rank 0 of 1 without it)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise CdpruneError("RANK, WORLD_SIZE or LOCAL_RANK is not a number", "start the job with torchrun") from None
    return Group(rank, world, local)


def join(group: Group, device: str) -> torch.device | None:
    """Join torchrun's process group (once); return the device this rank trains on.

    None when not distributed: the caller resolves `device` as usual.
    Under torchrun, "auto" and "cuda" mean this process's own GPU (cuda:LOCAL_RANK).
    """
    if not group.active:
        return None
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        chosen, backend = torch.device("cpu"), "gloo"
    elif device in ("auto", "cuda"):
        if not torch.cuda.is_available():
            raise CdpruneError("device 'cuda' requested but CUDA is not available; use --device cpu")
        if group.local_rank >= torch.cuda.device_count():
            raise CdpruneError(f"local rank {group.local_rank} has no GPU ({torch.cuda.device_count()} visible)",
                               "give torchrun --nproc_per_node at most the number of GPUs")
        chosen, backend = torch.device("cuda", group.local_rank), "nccl"
        torch.cuda.set_device(chosen)
    else:
        raise CdpruneError(f"--device {device} cannot be split across {group.world_size} processes",
                           "use auto, cuda or cpu under torchrun (each process takes GPU LOCAL_RANK)")
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return chosen


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(*values: torch.Tensor) -> list[torch.Tensor]:
    """The values, each summed in place over all ranks when distributed."""
    if dist.is_available() and dist.is_initialized():
        for v in values:
            dist.all_reduce(v)
    return list(values)


def share_from_main(obj):
    """Rank 0's `obj` on every rank (a no-op when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
