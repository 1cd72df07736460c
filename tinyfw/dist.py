"""The process group of a ``torchrun`` / ``accelerate launch`` job, started early.

Accelerate starts the process group lazily, with the first ``Accelerator``. Code that must
coordinate ranks before that (a cache entry that every rank trains together, rank 0 deciding
under a file lock) calls :func:`init` first; the runner does so at the start of every stage.
"""

from __future__ import annotations

import atexit
import os

import torch


def _from_slurm_tasks() -> None:
    """A job with several tasks started by submitit (``hydra/launcher=submitit_slurm`` or
    ``submitit_local`` with ``tasks_per_node``/``nodes`` > 1) has no torchrun variables: export them
    (MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK) from the job environment."""
    if "WORLD_SIZE" in os.environ or "SUBMITIT_EXECUTOR" not in os.environ:
        return
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    if JobEnvironment().num_tasks > 1:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def launched() -> bool:
    """True in a process started by a distributed launcher with more than one rank."""
    _from_slurm_tasks()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def use_cpu() -> bool:
    """CPU (gloo) when ``ACCELERATE_USE_CPU`` is set or no GPU is present."""
    return os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()


def init() -> int:
    """Start the process group when launched with several ranks (no-op otherwise, or when it
    is already up); returns the world size."""
    import torch.distributed as dist

    if launched() and not (dist.is_available() and dist.is_initialized()):
        from accelerate import PartialState

        PartialState(cpu=use_cpu())
        atexit.register(_shutdown)
    return world_size()


def _shutdown() -> None:
    """Tear the process group down before the interpreter exits: left to the C++ destructors,
    gloo's threads can abort the process (``terminate called without an active exception``,
    SIGABRT) after all the work succeeded."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", "0"))


def device() -> str:
    """This process's device, as Accelerate picks it for training: the CPU when ``use_cpu()``,
    ``cuda:LOCAL_RANK`` under a multi-process launch, else ``cuda``."""
    if use_cpu():
        return "cpu"
    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if launched() else "cuda"


def barrier() -> None:
    import torch.distributed as dist

    if world_size() > 1:
        dist.barrier()
