"""Shard plan, run folders and their reader: dataset runs in bounded memory, resumable.

A dataset run splits the images ``0..N-1`` into fixed index ranges (a :class:`ShardPlan`)
and writes one output shard per range into a run folder::

    runs/val/
        manifest.json             format, configuration + its hash, plan, info; "complete"
        shards/00000.safetensors  the maps of shard 0: name -> (n, C, H, W)
        shards/00000.errors.jsonl the items of shard 0 that could not be read (maybe empty)
        shards/00000.parquet      one index row per good image of shard 0 (written last)
        index.parquet             all shard tables in shard order   (written by finish)
        errors.jsonl              all errors in index order         (written by finish)

Every file is written atomically (a temporary file in the same folder, fsync, rename,
fsync of the folder), and a shard's Parquet table is written last: its presence means
the shard is done, so a run killed at any point resumes by computing the shards whose
table is missing. Unlike :class:`torch.utils.data.DistributedSampler`, the plan neither
pads nor repeats items: ranks share the shards, not the items.

The bytes of every shard file are a pure function of the inputs (nothing time- or
machine-dependent is stored in them), so an interrupted-and-resumed run, a run over
several processes and an uninterrupted run give byte-identical shards and index. One
detail makes this hold: safetensors keeps its metadata in a Rust ``HashMap`` whose key
order changes from process to process, so the metadata here is a single key
(``"seethrough"``) holding canonical JSON.

This is a different thing from ``reporting``'s output folder, which serves one-shot jobs:
a run folder is resumed, and written by several processes (torchrun ranks, Ray actors)
at once, each owning its shards.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import numbers
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from safetensors.torch import save as _save_safetensors
from torch import Tensor

from ..errors import InvalidInputError, InvalidOptionError, suggest

if TYPE_CHECKING:
    import pandas

__all__ = [
    "RUN_FORMAT",
    "Run",
    "RunMismatchError",
    "RunWriter",
    "ShardPlan",
    "atomic_write",
    "open_run",
]

RUN_FORMAT = "seethrough-run/1"
"""The format of run folders this version writes and reads."""

_FORMAT_NAME, _FORMAT_VERSION = RUN_FORMAT.split("/")
_MANIFEST = "manifest.json"
_INDEX = "index.parquet"
_ERRORS = "errors.jsonl"
_SHARDS = "shards"
_TMP = ".tmp-"
_META_KEY = "seethrough"
_RESERVED = ("shard", "offset")
_PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 3}

logger = logging.getLogger(__name__)


class RunMismatchError(InvalidOptionError):
    """A run folder holds a run made with a different configuration (or plan)."""


# ---------------------------------------------------------------- plan


@dataclass(frozen=True)
class ShardPlan:
    """Fixed index ranges of ``shard_size`` items over ``items`` images.

    Shard ``s`` covers ``[s * shard_size, min((s + 1) * shard_size, items))``: every item
    belongs to exactly one shard, the last shard is shorter, nothing is padded or repeated
    (unlike ``DistributedSampler``, which pads to equal shares).

    Parameters
    ----------
    items : int
        Number of items of the source (at least 1).
    shard_size : int
        Items per shard (at least 1).

    Raises
    ------
    InvalidInputError
        If ``items`` is 0 (an empty source).
    InvalidOptionError
        If ``shard_size`` is not a positive integer.
    """

    items: int
    shard_size: int

    def __post_init__(self) -> None:
        if not _is_int(self.items) or self.items < 0:
            raise InvalidOptionError(f"items must be a non-negative integer, got {self.items!r}")
        if self.items == 0:
            raise InvalidInputError(
                "the dataset has no items (0 images): give a source with at least one image"
            )
        if not _is_int(self.shard_size) or self.shard_size < 1:
            raise InvalidOptionError(
                f"shard_size must be a positive integer, got {self.shard_size!r}"
            )
        object.__setattr__(self, "items", int(self.items))
        object.__setattr__(self, "shard_size", int(self.shard_size))

    @property
    def shards(self) -> int:
        """Number of shards, ``ceil(items / shard_size)``."""
        return math.ceil(self.items / self.shard_size)

    def range(self, shard: int) -> tuple[int, int]:
        """The items ``[start, stop)`` of ``shard``."""
        self._check_shard(shard)
        start = int(shard) * self.shard_size
        return start, min(start + self.shard_size, self.items)

    def assigned(self, rank: int, world: int) -> tuple[int, ...]:
        """The shards that process ``rank`` of ``world`` computes: ``s % world == rank``."""
        if not _is_int(world) or world < 1:
            raise InvalidOptionError(f"world must be a positive integer, got {world!r}")
        if not _is_int(rank) or not 0 <= rank < world:
            raise InvalidOptionError(f"rank must be in 0..{world - 1}, got {rank!r}")
        return tuple(range(int(rank), self.shards, int(world)))

    def _check_shard(self, shard: int) -> None:
        if not _is_int(shard) or not 0 <= shard < self.shards:
            raise InvalidOptionError(
                f"shard {shard!r} does not exist: the plan has {self.shards} shards "
                f"(0..{self.shards - 1})"
            )


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# ---------------------------------------------------------------- atomic files


@contextmanager
def _atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it to ``path``."""
    path = Path(path)
    tmp = path.parent / f"{_TMP}{os.getpid()}-{secrets.token_hex(4)}-{path.name}"
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new, never half.

    The bytes go to a temporary file ``.tmp-<pid>-<random>-<name>`` in the same folder,
    which is flushed, fsynced and renamed over ``path`` (``os.replace``, atomic on POSIX
    and Windows); then the folder is fsynced so that the rename survives a power cut.
    """
    with _atomic_file(Path(path)) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


def _remove_leftovers(out: Path) -> None:
    leftovers = [p for folder in (out, out / _SHARDS) for p in _tmp_files(folder)]
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        logger.info(
            "removed %d temporary file(s) left in %s by an interrupted run", len(leftovers), out
        )


def _tmp_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith(_TMP))


# ---------------------------------------------------------------- JSON, manifest


def _canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, no NaN (raises TypeError/ValueError)."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_scalar,
    )


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _shorten(value: Any, width: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def _read_manifest(out: Path) -> dict[str, Any]:
    path = out / _MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidOptionError(
            f"cannot read {path}: {error}; the folder is not a seethrough run "
            "(give the folder a run was written to, or a new folder)"
        ) from None
    form = manifest.get("format") if isinstance(manifest, dict) else None
    name, _, version = str(form).partition("/")
    if name != _FORMAT_NAME or not version.isdigit():
        raise InvalidOptionError(
            f"{path} is not a seethrough run manifest (format {form!r}, expected {RUN_FORMAT!r}); "
            "give a run folder, or a new folder"
        )
    if int(version) > int(_FORMAT_VERSION):
        raise InvalidOptionError(
            f"{out} was written by a newer seethrough (format {form!r}; this version reads "
            f"{RUN_FORMAT!r}): upgrade seethrough (pip install -U seethrough) to read it"
        )
    return manifest


def _plan_dict(plan: ShardPlan) -> dict[str, int]:
    return {"items": plan.items, "shard_size": plan.shard_size, "shards": plan.shards}


# ---------------------------------------------------------------- writer


class RunWriter:
    """Create a run folder or resume one; write shards atomically; finish the run.

    Parameters
    ----------
    out : path
        The run folder. Missing or empty: a new run (``manifest.json`` is written). A run
        with the same configuration: resumed (:meth:`pending` lists what is left).
    config : mapping
        JSON-safe; everything that decides the results (methods and options, target rule,
        map format, shard size, batch size, seed, source fingerprint, model hash). Its
        SHA-256 over canonical JSON (sorted keys, no spaces) is :attr:`config_hash`.
    plan : ShardPlan
        The shard plan; resuming with a different plan is refused like a different config.
    info : mapping, optional
        Recorded in the manifest but not compared (source spec, model name, versions,
        engine). Only the writer that creates the run records it.
    create : bool
        ``False`` for a process that joins a run another process created (torchrun ranks
        above 0, Ray actors): the manifest must exist, and leftover temporary files are
        left alone (they may be another process's writes in progress).

    Raises
    ------
    RunMismatchError
        ``out`` holds a run with a different configuration or plan; the message names the
        differing settings with both values.
    InvalidOptionError
        ``out`` is a file, a non-empty folder that is not a run, a run of a newer format,
        or (``create=False``) has no manifest; ``config`` is not JSON-safe.

    Notes
    -----
    With ``create=True``, temporary files (``.tmp-*``) left by a killed run are removed
    (logged at INFO). Two processes must not write the same shard at the same time; the
    shard plan (:meth:`ShardPlan.assigned`) keeps them apart.
    """

    manifest: dict[str, Any]
    config_hash: str
    plan: ShardPlan
    out: Path

    def __init__(
        self,
        out: str | Path,
        *,
        config: Mapping[str, Any],
        plan: ShardPlan,
        info: Mapping[str, Any] | None = None,
        create: bool = True,
    ) -> None:
        if not isinstance(plan, ShardPlan):
            raise InvalidOptionError(f"plan must be a ShardPlan, got {type(plan).__name__}")
        if not isinstance(config, Mapping):
            raise InvalidOptionError(f"config must be a mapping, got {type(config).__name__}")
        try:
            canonical = _canonical(dict(config))
        except (TypeError, ValueError) as error:
            raise InvalidOptionError(
                f"the run configuration must be JSON-safe (numbers, strings, lists, dicts): {error}"
            ) from None
        self.out = Path(out)
        self.plan = plan
        self.config_hash = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        if self.out.exists() and not self.out.is_dir():
            raise InvalidOptionError(f"{self.out} is a file: give a folder for the run")
        if (self.out / _MANIFEST).exists():
            self.manifest = _read_manifest(self.out)
            self._check_same(json.loads(canonical))
        elif not create:
            raise InvalidOptionError(
                f"{self.out} has no {_MANIFEST}: the process that creates the run (rank 0, "
                "the driver) must create it before others join"
            )
        else:
            self.manifest = self._create(json.loads(canonical), info or {})
        if create:
            _remove_leftovers(self.out)
        (self.out / _SHARDS).mkdir(exist_ok=True)

    def _create(self, config: dict[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
        if self.out.is_dir():
            other = sorted(p.name for p in self.out.iterdir() if not p.name.startswith(_TMP))
            if other:
                listed = ", ".join(other[:5]) + (", ..." if len(other) > 5 else "")
                raise InvalidOptionError(
                    f"{self.out} is not empty ({listed}) and is not a seethrough run: "
                    "give a new or empty folder for the run"
                )
        self.out.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": RUN_FORMAT,
            "config_hash": self.config_hash,
            "config": config,
            "plan": _plan_dict(self.plan),
            "info": json.loads(json.dumps(dict(info), default=str)),
            "complete": False,
        }
        self._write_manifest(manifest)
        return manifest

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write(self.out / _MANIFEST, text.encode("utf-8"))

    def _check_same(self, config: dict[str, Any]) -> None:
        old = self.manifest.get("config", {})
        differ = [
            f"{key}: {_shorten(old.get(key))} in the run, {_shorten(config.get(key))} now"
            for key in sorted(set(old) | set(config))
            if old.get(key) != config.get(key)
        ]
        old_plan = self.manifest.get("plan", {})
        new_plan = _plan_dict(self.plan)
        differ += [
            f"plan.{key}: {old_plan.get(key)} in the run, {new_plan[key]} now"
            for key in ("items", "shard_size")
            if old_plan.get(key) != new_plan[key]
        ]
        if differ or self.manifest.get("config_hash") != self.config_hash:
            detail = "; ".join(differ) if differ else "the configuration hash differs"
            raise RunMismatchError(
                f"{self.out} holds a run made with different settings ({detail}): give a new "
                "output folder (--out), or the same settings to resume it"
            )

    # ---- shards

    def _path(self, shard: int, suffix: str) -> Path:
        return self.out / _SHARDS / f"{shard:05d}{suffix}"

    def done(self, shard: int) -> bool:
        """Whether ``shard`` is finished (its Parquet table, written last, exists)."""
        self.plan._check_shard(shard)
        return self._path(int(shard), ".parquet").exists()

    def pending(self, shards: Iterable[int] | None = None) -> list[int]:
        """The shards of ``shards`` (default: all) that are not done, in the given order."""
        chosen = range(self.plan.shards) if shards is None else shards
        return [int(s) for s in chosen if not self.done(s)]

    def write_shard(
        self,
        shard: int,
        maps: Mapping[str, Tensor],
        rows: Mapping[str, Sequence[Any] | np.ndarray | Tensor],
        errors: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Write one shard: maps, then errors, then the index table (its presence = done).

        Parameters
        ----------
        shard : int
            The shard, ``0 <= shard < plan.shards``.
        maps : mapping of str to Tensor
            Name (e.g. the method) to a tensor ``(n, ...)`` — typically ``(n, C, H, W)``
            — with one entry per good item of the shard, in index order (``n`` may be 0).
            Stored as given (dtype included), on the CPU.
        rows : mapping of str to sequence, array or Tensor
            Index column to ``n`` values (numbers, strings, booleans). Columns ``"shard"``
            and ``"offset"`` (int32, ``0..n-1``: the row's position in the shard's maps)
            are added here and may not be given.
        errors : sequence of mapping
            One JSON-safe dict per item of the range that could not be used (e.g.
            ``index``, ``path``, ``error``). ``n + len(errors)`` must equal the shard's
            length: every item is a row or an error.

        Raises
        ------
        InvalidInputError
            Lengths disagree, a map is not a tensor, a column is not one-dimensional, a
            reserved column is given, or an error is not JSON-safe.
        """
        self.plan._check_shard(shard)
        shard = int(shard)
        start, stop = self.plan.range(shard)
        tensors = _shard_tensors(shard, maps)
        table = _shard_table(shard, rows)
        n = table.num_rows
        for name, tensor in tensors.items():
            if tensor.shape[0] != n:
                raise InvalidInputError(
                    f"shard {shard}: map {name!r} has {tensor.shape[0]} entries but the index "
                    f"has {n} rows: give one map per row"
                )
        if n + len(errors) != stop - start:
            raise InvalidInputError(
                f"shard {shard} covers items {start}..{stop - 1} ({stop - start} items) but got "
                f"{n} rows and {len(errors)} errors: every item must be a row or an error"
            )
        metadata: dict[str, Any] = {"format": RUN_FORMAT, "shard": shard, "start": start}
        metadata.update(stop=stop, names=list(tensors))
        blob = _save_safetensors(tensors, metadata={_META_KEY: _canonical(metadata)})
        atomic_write(self._path(shard, ".safetensors"), blob)
        atomic_write(self._path(shard, ".errors.jsonl"), _jsonl(shard, errors))
        atomic_write(self._path(shard, ".parquet"), _parquet_bytes(table))

    def finish(self) -> None:
        """Write ``index.parquet``, ``errors.jsonl`` and mark the manifest complete.

        The index is every shard's table in shard order (streamed, one shard in memory at
        a time); the errors are every shard's errors, in index order. Idempotent: calling
        it again rewrites the same bytes.

        Raises
        ------
        InvalidOptionError
            Some shards are not done (the message names them).
        """
        missing = self.pending()
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
            raise InvalidOptionError(
                f"the run in {self.out} is not complete: {len(missing)} of {self.plan.shards} "
                f"shards are missing ({shown}); run again with the same settings to compute them"
            )
        shards = range(self.plan.shards)
        images = _write_index(self.out / _INDEX, [self._path(s, ".parquet") for s in shards])
        lines = _merged_errors([self._path(s, ".errors.jsonl") for s in shards])
        atomic_write(self.out / _ERRORS, b"".join(lines))
        manifest = dict(self.manifest, complete=True, images=images, errors=len(lines))
        self._write_manifest(manifest)
        self.manifest = manifest


def _shard_tensors(shard: int, maps: Mapping[str, Tensor]) -> dict[str, Tensor]:
    tensors: dict[str, Tensor] = {}
    for name, tensor in maps.items():
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"shard {shard}: map names must be non-empty strings")
        if not isinstance(tensor, Tensor) or tensor.dim() < 1:
            raise InvalidInputError(
                f"shard {shard}: map {name!r} must be a tensor (n, ...), got "
                f"{type(tensor).__name__} {getattr(tensor, 'shape', '')}"
            )
        # A fresh contiguous CPU copy: safetensors refuses views that share storage.
        tensors[name] = tensor.detach().to("cpu", copy=True).contiguous()
    return tensors


def _shard_table(shard: int, rows: Mapping[str, Any]) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for name, values in rows.items():
        if name in _RESERVED:
            raise InvalidInputError(
                f"shard {shard}: column {name!r} is added by the writer; do not give it"
            )
        columns[str(name)] = _column(shard, name, values)
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidInputError(f"shard {shard}: index columns differ in length: {lengths}")
    n = next(iter(lengths.values())) if lengths else 0
    columns["shard"] = pa.array(np.full(n, shard, dtype=np.int32))
    columns["offset"] = pa.array(np.arange(n, dtype=np.int32))
    return pa.table(columns)


def _column(shard: int, name: str, values: Any) -> pa.Array:
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise InvalidInputError(
                f"shard {shard}: column {name!r} must be one value per row (1-D), "
                f"got shape {values.shape}"
            )
        return pa.array(values)
    try:
        return pa.array(list(values))
    except (TypeError, pa.ArrowException) as error:
        raise InvalidInputError(
            f"shard {shard}: column {name!r} must hold numbers, strings or booleans: {error}"
        ) from None


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **_PARQUET_OPTIONS)
    return bytes(sink.getvalue().to_pybytes())


def _jsonl(shard: int, errors: Sequence[Mapping[str, Any]]) -> bytes:
    lines = []
    for error in errors:
        try:
            lines.append(_canonical(dict(error)) + "\n")
        except (TypeError, ValueError) as problem:
            raise InvalidInputError(
                f"shard {shard}: each error must be a JSON-safe dict: {problem}"
            ) from None
    return "".join(lines).encode("utf-8")


def _unified_schema(paths: Sequence[Path]) -> pa.Schema:
    schemas = [pq.read_schema(p).remove_metadata() for p in paths]
    names = schemas[0].names
    for path, schema in zip(paths, schemas, strict=True):
        if schema.names != names:
            raise InvalidInputError(
                f"{path} has columns {schema.names} but the first shard has {names}: "
                "the shards of a run must share their columns"
            )
    # An all-errors shard has no rows, so its list columns are typed null: promote them.
    return pa.unify_schemas(schemas, promote_options="default")


def _write_index(path: Path, shard_tables: Sequence[Path]) -> int:
    schema = _unified_schema(shard_tables)
    images = 0
    with _atomic_file(path) as tmp, pq.ParquetWriter(tmp, schema, **_PARQUET_OPTIONS) as writer:
        for shard_path in shard_tables:
            table = pq.ParquetFile(shard_path).read().cast(schema)
            images += table.num_rows
            if table.num_rows:
                writer.write_table(table)
    return images


def _merged_errors(paths: Sequence[Path]) -> list[bytes]:
    lines = [line for p in paths for line in p.read_bytes().splitlines(keepends=True)]
    keyed = [json.loads(line).get("index") for line in lines]
    if all(_is_int(k) for k in keyed):
        order = sorted(range(len(lines)), key=lambda i: keyed[i])  # stable
        lines = [lines[i] for i in order]
    return lines


# ---------------------------------------------------------------- reader


class Run:
    """A run folder, read lazily: its index as a table, any image's maps on demand.

    Open one with :func:`open_run`. A run that is not complete is read from its finished
    shards (the index is a snapshot taken at first access).

    Attributes
    ----------
    out : Path
        The run folder.
    manifest : dict
        The manifest (format, configuration and hash, plan, info, ``complete``).
    config : dict
        The configuration the run was made with.
    plan : ShardPlan
        Its shard plan.
    complete : bool
        Whether :meth:`RunWriter.finish` ran (``index.parquet`` and ``errors.jsonl`` exist).
    """

    out: Path
    manifest: dict[str, Any]
    config: dict[str, Any]
    plan: ShardPlan
    complete: bool

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        if not self.out.is_dir():
            raise InvalidOptionError(f"{self.out} is not a folder: give the folder of a run")
        if not (self.out / _MANIFEST).exists():
            raise InvalidOptionError(
                f"{self.out} has no {_MANIFEST}: it is not a seethrough run (give the --out "
                "folder of explain-dataset)"
            )
        self.manifest = _read_manifest(self.out)
        self.config = dict(self.manifest.get("config", {}))
        plan = self.manifest.get("plan", {})
        self.plan = ShardPlan(plan["items"], plan["shard_size"])
        self.complete = bool(self.manifest.get("complete")) and (self.out / _INDEX).exists()

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{len(self.done_shards)} shards done"
        return (
            f"Run({str(self.out)!r}, {self.plan.items} items, {self.plan.shards} shards, {state})"
        )

    def _path(self, shard: int, suffix: str) -> Path:
        return self.out / _SHARDS / f"{shard:05d}{suffix}"

    @functools.cached_property
    def done_shards(self) -> tuple[int, ...]:
        """The finished shards (all of them when the run is complete)."""
        return tuple(s for s in range(self.plan.shards) if self._path(s, ".parquet").exists())

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        """The map names stored (e.g. the methods), in the order they were written."""
        for shard in self.done_shards:
            with safe_open(self._path(shard, ".safetensors"), framework="pt") as file:
                meta = json.loads((file.metadata() or {}).get(_META_KEY, "{}"))
                return tuple(meta.get("names", sorted(file.keys())))
        return ()

    @functools.cached_property
    def index(self) -> pa.Table:
        """One row per image with maps, in index order (``pyarrow.Table``)."""
        if self.complete:
            return pq.read_table(self.out / _INDEX)
        tables = [pq.read_table(self._path(s, ".parquet")) for s in self.done_shards]
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables, promote_options="default")

    def to_pandas(self) -> pandas.DataFrame:
        """The index as a pandas DataFrame (needs pandas)."""
        return self.index.to_pandas()

    @property
    def errors(self) -> list[dict[str, Any]]:
        """One dict per item that could not be used (index, path, error), in index order."""
        if self.complete:
            lines = (self.out / _ERRORS).read_bytes().splitlines()
        else:
            lines = _merged_errors([self._path(s, ".errors.jsonl") for s in self.done_shards])
        return [json.loads(line) for line in lines]

    def __len__(self) -> int:
        return int(self.index.num_rows)

    @functools.cached_property
    def _locations(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        shard = self.index.column("shard").to_numpy().astype(np.int64)
        offset = self.index.column("offset").to_numpy().astype(np.int64)
        return shard, offset

    def _check_name(self, name: str) -> None:
        if name not in self.names:
            raise InvalidOptionError(
                f"no maps named {name!r} in {self.out}; stored: {', '.join(self.names) or 'none'}"
                + suggest(str(name), self.names)
            )

    def _positions(self, rows: Sequence[int] | np.ndarray | Tensor | None) -> np.ndarray:
        if rows is None:
            return np.arange(len(self), dtype=np.int64)
        if isinstance(rows, Tensor):
            rows = rows.detach().cpu().numpy()
        array = np.asarray(rows)
        if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
            raise InvalidOptionError(
                f"rows must be integer positions in the index (one dimension), got {rows!r}"
            )
        array = array.astype(np.int64)
        bad = array[(array < 0) | (array >= len(self))]
        if bad.size:
            raise InvalidOptionError(
                f"row {int(bad[0])} is out of range: the run's index has {len(self)} rows "
                f"(0..{len(self) - 1})"
            )
        return array

    def maps(self, name: str, rows: int | Sequence[int] | np.ndarray | None = None) -> Tensor:
        """The maps ``name`` of the given index rows, read from only the shards they are in.

        Parameters
        ----------
        name : str
            A stored map name (see :attr:`names`).
        rows : int, sequence of int, array, or None
            Positions in :attr:`index` (``0..len-1``); ``None`` for every row (the whole
            run in memory: prefer :meth:`iter_maps`).

        Returns
        -------
        Tensor
            ``(len(rows), ...)`` in the order of ``rows`` — or one map without the
            leading dimension for an int — in the dtype stored.
        """
        self._check_name(name)
        if _is_int(rows):
            return self._read(name, self._positions([int(rows)]))[0]  # type: ignore[arg-type]
        return self._read(name, self._positions(rows))  # type: ignore[arg-type]

    def iter_maps(
        self,
        name: str,
        rows: Sequence[int] | np.ndarray | None = None,
        *,
        batch: int = 256,
    ) -> Iterator[tuple[np.ndarray, Tensor]]:
        """Yield ``(row positions, maps)`` for ``rows`` (default: all), ``batch`` at a time.

        Memory is bounded by one batch: each batch reads only the slices it needs.
        """
        self._check_name(name)
        if not _is_int(batch) or batch < 1:
            raise InvalidOptionError(f"batch must be a positive integer, got {batch!r}")
        positions = self._positions(rows)
        for begin in range(0, positions.size, batch):
            chunk = positions[begin : begin + batch]
            yield chunk, self._read(name, chunk)

    def shard_maps(self, shard: int) -> dict[str, Tensor]:
        """Every map of one finished shard, ``name -> (n, ...)`` (row ``offset`` = position)."""
        self.plan._check_shard(shard)
        if int(shard) not in self.done_shards:
            raise InvalidOptionError(
                f"shard {shard} of {self.out} is not done: resume the run to compute it"
            )
        with safe_open(self._path(int(shard), ".safetensors"), framework="pt") as file:
            return {name: file.get_tensor(name) for name in self.names}

    def _read(self, name: str, positions: np.ndarray) -> Tensor:
        shards, offsets = self._locations
        want_shard, want_offset = shards[positions], offsets[positions]
        out: Tensor | None = None
        for shard in dict.fromkeys(want_shard.tolist()):
            where = np.flatnonzero(want_shard == shard)
            with safe_open(self._path(int(shard), ".safetensors"), framework="pt") as file:
                part = file.get_slice(name)
                for a, b in _runs(np.unique(want_offset[where])):
                    block = part[a:b]
                    if out is None:
                        out = torch.empty((positions.size, *block.shape[1:]), dtype=block.dtype)
                    inside = where[(want_offset[where] >= a) & (want_offset[where] < b)]
                    out[torch.from_numpy(inside)] = block[torch.from_numpy(want_offset[inside] - a)]
        return out if out is not None else self._empty(name)

    def _empty(self, name: str) -> Tensor:
        for shard in self.done_shards:
            with safe_open(self._path(shard, ".safetensors"), framework="pt") as file:
                return file.get_slice(name)[0:0]
        return torch.empty(0)


def _runs(sorted_unique: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs ``[a, b)`` of sorted unique integers."""
    if sorted_unique.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_unique) != 1) + 1
    return [(int(g[0]), int(g[-1]) + 1) for g in np.split(sorted_unique, breaks)]


def open_run(path: str | Path) -> Run:
    """Open a run folder for reading (also a run that is not complete).

    Parameters
    ----------
    path : path
        The ``out`` folder of a dataset run.

    Returns
    -------
    Run
        Lazy access to the index (``run.index``, ``run.to_pandas()``), the errors, and any
        image's maps (``run.maps(name, rows)``, ``run.iter_maps(name)``).

    Raises
    ------
    InvalidOptionError
        The folder does not exist, has no manifest, or was written by a newer format.
    """
    return Run(path)
