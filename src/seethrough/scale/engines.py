"""Engines that compute a dataset run's shards: one process, ``torchrun``, or Ray Data.

Every engine runs the same job (:class:`~seethrough.scale.explain.ShardJob`) over the same
:class:`~seethrough.data.shards.ShardPlan` and writes through the same
:class:`~seethrough.data.shards.RunWriter`; they differ only in who computes which
shard. No scheduler of our own:

``"local"``
    This process computes every pending shard in order.
``"torchrun"``
    Each rank ``r`` of ``world`` computes its pending shards among
    ``plan.assigned(r, world)`` (shards ``s`` with ``s % world == r``). Rank 0 creates
    (or checks) the run folder first; the others open it once it exists; rank 0 writes
    the index when every rank is done. ``torch.distributed`` is initialised when needed
    (gloo for a model on the CPU, NCCL for one on CUDA) and shut down again.
``"ray"``
    Ray Data: ``from_items(pending shards).map_batches(<actor holding a copy of the
    model>, batch_size=1, concurrency=actors)``; each actor writes the shards it is
    given; the driver writes the index. Ray is an optional dependency
    (``pip install "seethrough[ray]"``); ``ray.init()`` is called only when Ray is not
    initialised yet (and shut down again at the end).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from ..data.shards import RunWriter, ShardPlan
from ..errors import InvalidOptionError, check_option, integer, one_of, optional

__all__ = [
    "ENGINES",
    "EngineReport",
    "ShardWork",
    "detect_engine",
    "run_shards",
    "torchrun_device",
]

log = logging.getLogger(__name__)

ENGINES = ("auto", "local", "torchrun", "ray")
"""The engines :func:`run_shards` accepts (``"auto"`` picks local or torchrun)."""
_ENGINE_CHECK = one_of(*ENGINES)
RAY_MISSING = 'engine="ray" needs Ray: install it with pip install "seethrough[ray]"'

Progress = Callable[[int, int], None]


class ShardWork(Protocol):
    """What an engine runs: a picklable job over a shard plan
    (:class:`seethrough.scale.explain.ShardJob`)."""

    @property
    def plan(self) -> ShardPlan: ...

    @property
    def device(self) -> torch.device: ...

    def open_writer(self, *, create: bool = True) -> RunWriter: ...

    def run(
        self,
        shards: Sequence[int],
        writer: RunWriter,
        on_shard: Callable[[int], None] | None = None,
    ) -> None: ...

    def on_device(self, device: str | torch.device) -> ShardWork: ...


@dataclass(frozen=True)
class EngineReport:
    """Which shards an engine computed (this rank's, for ``torchrun``) and skipped."""

    engine: str
    computed: tuple[int, ...]
    skipped: tuple[int, ...]
    world: int = 1


def _world() -> tuple[int, int, int]:
    """``(rank, world, local_rank)`` from ``torchrun``'s environment (``(0, 1, 0)`` without)."""

    def read(name: str, default: int) -> int:
        value = os.environ.get(name)
        try:
            return int(value) if value is not None else default
        except ValueError:
            raise InvalidOptionError(f"{name}={value!r} is not an integer") from None

    return read("RANK", 0), read("WORLD_SIZE", 1), read("LOCAL_RANK", 0)


def detect_engine() -> str:
    """``"torchrun"`` in a process that ``torchrun`` started with more than one rank
    (``WORLD_SIZE`` > 1), or in an initialised process group of more than one; else
    ``"local"``."""
    _, world, _ = _world()
    if world > 1:
        return "torchrun"
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return "torchrun" if distributed.get_world_size() > 1 else "local"
    return "local"


def torchrun_device() -> torch.device:
    """The device of this ``torchrun`` rank: ``cuda:LOCAL_RANK`` when CUDA is available,
    else the CPU. Load the model there (the CLI does)."""
    _, _, local_rank = _world()
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def run_shards(
    job: ShardWork,
    engine: str = "auto",
    *,
    actors: int | None = None,
    progress: Progress | None = None,
) -> EngineReport:
    """Compute the pending shards of ``job`` with ``engine`` and finish the run.

    Parameters
    ----------
    job : ShardWork
        Built by :func:`~seethrough.scale.explain.explain_dataset`.
    engine : {"auto", "local", "torchrun", "ray"}
        See the module's docstring; ``"auto"`` is :func:`detect_engine`.
    actors : int, optional
        Ray only: the number of actors (default: the cluster's CPUs, or GPUs for a model
        on CUDA).
    progress : callable, optional
        ``progress(shards_done, shards_total)``, done counting the skipped shards.

    Returns
    -------
    EngineReport
    """
    check_option("explain_dataset", "engine", engine, _ENGINE_CHECK)
    check_option("explain_dataset", "actors", actors, optional(integer()))
    chosen = detect_engine() if engine == "auto" else engine
    if actors is not None and chosen != "ray":
        raise InvalidOptionError(f"actors= is for engine='ray' only (the engine is {chosen!r})")
    if chosen == "torchrun":
        return _run_torchrun(job, progress)
    if chosen == "ray":
        return _run_ray(job, actors, progress)
    return _run_local(job, progress)


def _counter(total: int, done: int, progress: Progress | None) -> Callable[[int], None] | None:
    """A per-shard callback that reports ``done + shards so far`` of ``total``."""
    if progress is None:
        return None
    count = [done]
    progress(done, total)

    def on_shard(shard: int) -> None:
        count[0] += 1
        progress(count[0], total)

    return on_shard


def _run_local(job: ShardWork, progress: Progress | None) -> EngineReport:
    writer = job.open_writer(create=True)
    pending = writer.pending()
    skipped = _others(job, pending)
    job.run(pending, writer, _counter(job.plan.shards, len(skipped), progress))
    writer.finish()
    return EngineReport("local", tuple(pending), skipped)


def _others(
    job: ShardWork, pending: Sequence[int], mine: Sequence[int] | None = None
) -> tuple[int, ...]:
    shards = range(job.plan.shards) if mine is None else mine
    left = set(pending)
    return tuple(s for s in shards if s not in left)


# ------------------------------------------------------------------ torchrun


def _run_torchrun(job: ShardWork, progress: Progress | None) -> EngineReport:
    import torch.distributed as dist

    if not dist.is_available():
        raise InvalidOptionError(
            "engine='torchrun' needs torch.distributed, which this torch lacks"
        )
    device = job.device
    created = False
    if not dist.is_initialized():
        _, world, _ = _world()
        if world < 2 and "MASTER_ADDR" not in os.environ:
            raise InvalidOptionError(
                "engine='torchrun' needs a process started by torchrun (e.g. torchrun "
                "--nproc-per-node 2 -m seethrough explain-dataset ...); for one process "
                "use engine='local'"
            )
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        created = True
    try:
        return _torchrun_work(job, progress, dist, device)
    finally:
        if created:
            dist.destroy_process_group()


def _torchrun_work(
    job: ShardWork, progress: Progress | None, dist: Any, device: torch.device
) -> EngineReport:
    rank, world = dist.get_rank(), dist.get_world_size()

    def barrier() -> None:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[device.index])
        else:
            dist.barrier()

    # rank 0 creates (or checks) the folder first; its refusal reaches every rank
    failure: list[Any] = [None]
    writer: RunWriter | None = None
    if rank == 0:
        try:
            writer = job.open_writer(create=True)
        except Exception as error:
            failure[0] = f"{type(error).__name__}: {error}"
            dist.broadcast_object_list(failure, src=0)
            raise
    dist.broadcast_object_list(failure, src=0)
    if failure[0] is not None:
        raise InvalidOptionError(f"rank 0 could not open the run folder: {failure[0]}")
    if writer is None:
        writer = job.open_writer(create=False)
    mine = job.plan.assigned(rank, world)
    pending = writer.pending(mine)
    skipped = _others(job, pending, mine)
    job.run(pending, writer, _counter(len(mine), len(skipped), progress))
    barrier()
    if rank == 0:
        writer.finish()
    barrier()
    return EngineReport("torchrun", tuple(pending), skipped, world)


# ------------------------------------------------------------------ Ray


class ShardActor:
    """A Ray Data actor: holds its own copy of the job (and model), built once; each call
    computes and writes the shards of one batch of rows ``{"shard": [...]}``."""

    def __init__(self, job: ShardWork, gpu: bool = False) -> None:
        self.job = job.on_device("cuda") if gpu else job
        self.writer = self.job.open_writer(create=False)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shards = [int(s) for s in batch["shard"]]
        self.job.run(shards, self.writer)
        return {"shard": np.asarray(shards, dtype=np.int64)}


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise InvalidOptionError(RAY_MISSING) from None
    return ray


def _run_ray(job: ShardWork, actors: int | None, progress: Progress | None) -> EngineReport:
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False)
    try:
        return _ray_work(ray, job, actors, progress)
    finally:
        if started:
            ray.shutdown()


def _ray_work(
    ray: Any, job: ShardWork, actors: int | None, progress: Progress | None
) -> EngineReport:
    writer = job.open_writer(create=True)
    pending = writer.pending()
    skipped = _others(job, pending)
    on_shard = _counter(job.plan.shards, len(skipped), progress)
    if pending:
        gpu = job.device.type == "cuda"
        resources = ray.cluster_resources()
        available = int(resources.get("GPU" if gpu else "CPU", 1))
        count = max(1, min(len(pending), actors if actors is not None else available))
        needs = {"num_gpus": 1} if gpu else {"num_cpus": 1}
        shards = ray.data.from_items(
            [{"shard": s} for s in pending], override_num_blocks=len(pending)
        )
        done = shards.map_batches(
            ShardActor,
            fn_constructor_kwargs={"job": job, "gpu": gpu},
            batch_size=1,
            concurrency=count,
            **needs,
        )
        for row in done.iter_rows():
            if on_shard is not None:
                on_shard(int(row["shard"]))
    writer.finish()
    return EngineReport("ray", tuple(pending), skipped)
