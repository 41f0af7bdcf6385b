"""``seethrough explain-dataset`` and ``seethrough strategies``: a whole dataset's
explanations in a resumable run folder, and the strategies found in them (the work is in
:mod:`seethrough.scale` and :mod:`seethrough.jobs.strategies`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidOptionError
from ._methods import method_names, method_options
from ._shared import (
    ModelChoice,
    choice_option,
    count_option,
    load_net,
    model_options,
    progress_bars,
    seed_option,
)

__all__ = ["explain_dataset_command", "strategies_command"]


@click.command("explain-dataset")
@click.argument("data")
@model_options()
@click.option(
    "--methods",
    default="gradient,grad_cam",
    show_default=True,
    help="Comma-separated method names (see 'seethrough methods').",
)
@click.option(
    "--layer", default=None, help="Layer for CAM methods (dotted name, see 'seethrough layers')."
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="[METHOD.]KEY=VALUE",
    help="A method option, as for 'seethrough explain': KEY=VALUE (to every method that "
    "has it) or METHOD.KEY=VALUE.",
)
@choice_option(
    "--target",
    ["label", "predicted"],
    "Explain each image's true class (from its folder or the list) or the model's top class.",
)
@choice_option(
    "--maps", ["sum", "full"], "Store maps summed over colour channels, or one per channel."
)
@choice_option("--dtype", ["float16", "float32"], "The stored maps' number type.")
@count_option("--shard-size", "Images per shard (the unit of resuming).", default=256)
@count_option("--batch-size", "Images per model call.", default=64)
@count_option(
    "--workers", "Processes decoding images (0: decode in the main process).", default=0, least=0
)
@count_option("--limit", "Only the first N images of the data.")
@choice_option(
    "--engine",
    ["auto", "local", "torchrun", "ray"],
    "Where shards run: auto = torchrun when started by torchrun, else this process; "
    "ray = a Ray cluster (pip install 'seethrough[ray]').",
)
@count_option("--actors", "Ray actors, each holding the model (default: one per CPU).")
@click.option(
    "--path-column", default="path", show_default=True, help="Path column of a CSV/Parquet list."
)
@click.option(
    "--label-column",
    default="label",
    show_default=True,
    help="Label column of a CSV/Parquet list ('' for a list without labels).",
)
@seed_option
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="The run folder: a new or empty folder, or an earlier run of the same settings "
    "to resume (its finished shards are kept).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def explain_dataset_command(
    *,
    data: str,
    model: ModelChoice,
    methods: str,
    layer: str | None,
    settings: tuple[str, ...],
    target: str,
    maps: str,
    dtype: str,
    shard_size: int,
    batch_size: int,
    workers: int,
    limit: int | None,
    engine: str,
    actors: int | None,
    path_column: str,
    label_column: str,
    seed: int,
    out: str,
    quiet: bool,
) -> None:
    """Explain every image of DATA into a resumable run folder: a folder with one
    subfolder per class, a CSV/Parquet list of paths and labels, or 'fashion-mnist:test'
    (or ':train'). Run it again after a crash to resume; start it with 'torchrun
    --nproc-per-node N -m seethrough explain-dataset ...' to split the shards over N
    processes. Read the run with 'seethrough strategies OUT' or seethrough.open_run(OUT)."""
    from ..attribution import make_method
    from ..scale import explain_dataset
    from ..scale.engines import detect_engine, torchrun_device

    if not out.strip():
        raise InvalidOptionError("the run folder (--out) is empty; name a folder")
    names = method_names(methods)
    options = method_options(settings, names, layer)
    chosen = [make_method(n, **options[n]) for n in names]
    distributed = engine == "torchrun" or (engine == "auto" and detect_engine() == "torchrun")
    if distributed and model.device == "auto":
        model = ModelChoice(**{**vars(model), "device": str(torchrun_device())})
    net = load_net(model)
    leader = not distributed or int(os.environ.get("RANK", "0")) == 0
    with progress_bars(leader and not quiet) as bars:
        done = explain_dataset(
            net,
            data,
            chosen,
            Path(out),
            target=target,
            channels=maps,
            dtype=dtype,
            shard_size=shard_size,
            batch_size=batch_size,
            seed=seed,
            num_workers=workers,
            engine=engine,
            actors=actors,
            limit=limit,
            path_column=path_column,
            label_column=label_column or None,
            progress=None if bars is None else _shard_bar(bars),
        )
    if leader:
        click.echo(
            f"{done.images} images explained in {done.out} ({done.shards} "
            f"shard{'s' if done.shards > 1 else ''}: "
            f"{len(done.computed)} computed, {len(done.skipped)} already done; "
            f"{done.errors} unreadable, listed in errors.jsonl)"
        )


def _shard_bar(bars: Any) -> Any:
    def progress(done: int, total: int) -> None:
        bars("shards", done, total)

    return progress


@click.command("strategies")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--class",
    "classes",
    multiple=True,
    help="A class to cluster (name or index; repeat for several). Default: every class.",
)
@click.option(
    "--method", default=None, help="Which stored map to cluster (default: the run's first)."
)
@choice_option(
    "--by",
    ["label", "target", "predicted"],
    "Group images by their true class, the explained class, or the predicted class.",
)
@count_option("--clusters", "Number of clusters (default: chosen by the eigengap).")
@count_option("--max-clusters", "Most clusters the eigengap may choose.", default=10, least=2)
@count_option("--size", "Maps are sum-pooled to SIZE × SIZE before clustering.", default=32)
@count_option("--min-images", "Skip classes with fewer images.", default=20, least=3)
@seed_option
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Output folder (default: RUN/strategies).",
)
@click.option("--force", is_flag=True, help="Replace the results in an existing output folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or notes.")
def strategies_command(
    *,
    run: str,
    classes: tuple[str, ...],
    method: str | None,
    by: str,
    clusters: int | None,
    max_clusters: int,
    size: int,
    min_images: int,
    seed: int,
    out: str | None,
    force: bool,
    quiet: bool,
) -> None:
    """Find the model's strategies in a run of explain-dataset: per class, the mean map
    and how concentrated the maps are, and spectral relevance analysis (SpRAy, Lapuschkin
    et al. 2019) — clusters of similar maps, with each cluster's accuracy and confidence
    against the rest of its class (a cluster that differs is a candidate 'Clever Hans'
    strategy). Writes strategies.json, figures and index.html."""
    from ..jobs.strategies import run_strategies
    from ._shared import OutputChoice, run_job

    output = OutputChoice(out if out is not None else str(Path(run) / "strategies"), force, quiet)
    output.check()
    run_job(
        output,
        run_strategies,
        run,
        classes=list(classes) or None,
        method=method,
        by=by,
        clusters=clusters,
        max_clusters=max_clusters,
        size=size,
        min_images=min_images,
        seed=seed,
        notes=lambda done: done.notes,
    )
