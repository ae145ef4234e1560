"""Process-group bookkeeping for torchrun, shared by every stage. Single-process runs need none.

torch is imported inside the functions: the CLI, the runner and `occiforge validate` use
`DistInfo` without paying for `import torch` (about 4 s).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

_local = False  # inside `local()`: this process works alone, whatever process group exists


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> str:
        """`cuda:<local rank>` where a GPU is present, else `cpu` (torch takes either string)."""
        import torch

        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"

    def hardware(self) -> str:
        """What the run trained on, for manifests and model cards: `4 x NVIDIA H100 80GB HBM3`, `CPU (2 threads)`."""
        import torch

        if torch.cuda.is_available():
            return f"{self.world_size} x {torch.cuda.get_device_name(self.local_rank)}"
        procs = f", {self.world_size} processes" if self.world_size > 1 else ""
        return f"CPU ({torch.get_num_threads()} threads{procs})"

    @classmethod
    def single(cls) -> DistInfo:
        return cls()


def env_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun), before or without a process group."""
    return int(os.environ.get("RANK", "0"))


def init(timeout_minutes: float = 30) -> DistInfo:
    """Join the process group torchrun set up (NCCL on GPU, gloo on CPU); none for one process.
    `timeout_minutes`: how long a rank waits in a collective (NCCL's default is 10) while rank 0
    works alone: builds the model, hashes a checkpoint, saves the final folder."""
    info = DistInfo(env_rank(), int(os.environ.get("WORLD_SIZE", "1")),
                    int(os.environ.get("LOCAL_RANK", "0")))
    if info.world_size == 1:
        return info
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        from datetime import timedelta

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=timedelta(minutes=timeout_minutes))
    return info


@contextmanager
def local() -> Iterator[None]:
    """Work that one rank does alone (the stages that run on rank 0 only): no barrier, no collective,
    a world of one, even though the other ranks are in the process group (and waiting elsewhere)."""
    global _local
    before, _local = _local, True
    try:
        yield
    finally:
        _local = before


def is_initialized() -> bool:
    """Whether this process trains with others: a process group exists, and it is not inside `local()`."""
    if _local or "torch" not in sys.modules:  # nothing can have started a process group without torch
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of ranks this process trains with (1 alone, or inside `local()`)."""
    if not is_initialized():
        return 1
    import torch.distributed as dist

    return dist.get_world_size()


def any_rank(flag: Any, device: Any = "cpu") -> bool:
    """Whether `flag` (a bool or a 0/1 tensor) holds on any rank: every rank gets the same answer, so
    one rank seeing it first cannot leave the others waiting in a collective. One sync."""
    if not is_initialized():
        return bool(flag)
    import torch
    import torch.distributed as dist

    t = flag.reshape(1).to(device=device, dtype=torch.int32) if torch.is_tensor(flag) else torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier() -> None:
    if is_initialized():
        import torch.distributed as dist

        dist.barrier()


def finish() -> None:
    """Leave the process group at the end of a command: torch warns, and gloo can abort the process
    at exit, when a rank exits without it. Only after normal completion: a rank that failed exits
    as it is, since destroying a group other ranks still use can block."""
    if is_initialized():
        import torch.distributed as dist

        dist.destroy_process_group()
