"""Data-parallel training under torchrun: process group set-up and small collectives.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without them (or with one process)
everything here is a no-op and training runs in the one process. NCCL is used on GPUs, gloo
on CPUs (tests/test_ddp.py checks two gloo processes against one).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place in the data-parallel group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        """This rank's GPU, or the CPU."""
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def init_world() -> World:
    """Join the process group torchrun describes in the environment (once), or stay alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), local_rank)


def sum_over_ranks(value: int, world: World) -> int:
    """The sum of an integer over all ranks."""
    if world.world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.long, device=world.device())
    dist.all_reduce(t)
    return int(t.item())


def barrier(world: World) -> None:
    """Wait for every rank (no-op alone)."""
    if world.world_size > 1:
        dist.barrier()
