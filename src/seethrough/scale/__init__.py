"""Dataset scale: explain a whole dataset in bounded memory, resumable, across processes
(torchrun) and machines (Ray), and find the model's strategies across it (SpRAy)."""

from __future__ import annotations

from .classes import By, ClassMaps, class_maps, top_share
from .engines import ENGINES, EngineReport, detect_engine, run_shards, torchrun_device
from .explain import (
    DatasetRun,
    ShardJob,
    class_mapping,
    explain_dataset,
    map_statistics,
    model_hash,
)
from .spray import SprayCluster, SprayResult, spray, spray_run

__all__ = [
    "ENGINES",
    "By",
    "ClassMaps",
    "SprayCluster",
    "SprayResult",
    "class_maps",
    "spray",
    "spray_run",
    "top_share",
    "DatasetRun",
    "EngineReport",
    "ShardJob",
    "class_mapping",
    "detect_engine",
    "explain_dataset",
    "map_statistics",
    "model_hash",
    "run_shards",
    "torchrun_device",
]
