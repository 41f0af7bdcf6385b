"""One JSON form for every result: :func:`to_jsonable`, and :func:`dumps` / :func:`write_json`.

Results are frozen dataclasses; this module turns any of them (and the mappings,
sequences, tensors, NumPy values, enums and paths they hold) into plain JSON values, with
one set of conventions:

* a dataclass becomes an object of its fields, in order — or, for the result types
  listed in :data:`LAYOUTS`, of the fields and summaries its layout names (images and
  other bulky tensors left out, as each type's documentation says);
* numbers are written exactly: integers as integers, and each float as the shortest
  decimal that reads back to the same value *in its own precision* (a float32 ``0.1`` is
  written ``0.1``, not ``0.10000000149011612``); nothing is rounded;
* a non-finite number (NaN, ±inf) becomes ``null``, and the object that holds it (the
  nearest enclosing dataclass or mapping) gets a ``"nonfinite"`` entry listing the keys
  whose values held one — so the JSON is valid for strict parsers and nothing is lost
  silently (``{"score": null, "nonfinite": ["score"]}``);
* a tensor or array becomes nested lists, unless it has more than :data:`MAX_LISTED`
  elements: then ``{"shape": [...], "dtype": "..."}`` stands for it;
* enums give their value, paths, dtypes and devices their text, and anything else its
  ``str()``.

The analysis packages never call this module (they sit below it); jobs and scripts do.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..anatomy import (
    AblationResult,
    Anatomy,
    ModuleCard,
    ModuleGradients,
    Probe,
    ProbeTable,
    TcavResult,
)
from ..attribution import Explanation, PathExplanation
from ..decompose import Circuit, ConceptRelevance
from ..inside import (
    DreamResult,
    FeatureMaps,
    Filters,
    InversionResult,
    LayerInversions,
    ReceptiveField,
    StabilityResult,
    TopExamples,
    Visualization,
)
from ..robust import AttackResult, RobustnessReport
from ..trust import (
    METRICS,
    ComparisonResult,
    EfficientMprtResult,
    RandomizationResult,
    RoarComparison,
    RoarResult,
    SmoothMprtResult,
)
from ..trust.faithfulness import MetricResult

__all__ = [
    "LAYOUTS",
    "MAX_LISTED",
    "NONFINITE",
    "dumps",
    "roar_record",
    "to_jsonable",
    "write_json",
]

NONFINITE = "nonfinite"
"""The key that lists the entries of an object whose numbers were not finite."""

MAX_LISTED = 65_536
"""Tensors and arrays with more elements are summarised by shape and dtype."""

Layout = Callable[[Any], Mapping[str, Any]]


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (dict, list, str, int, float, bool, None).

    Parameters
    ----------
    obj
        A result (frozen dataclass), or any mapping, sequence, tensor, array or scalar.

    Returns
    -------
    Any
        A value that ``json.dumps(..., allow_nan=False)`` accepts; the conventions are
        in the module docstring.
    """
    value, _ = _convert(obj)
    return value


def dumps(obj: Any, indent: int | None = 1) -> str:
    """``obj`` as JSON text: :func:`to_jsonable`, then ``json.dumps(allow_nan=False)``.

    Parameters
    ----------
    obj
        Anything :func:`to_jsonable` takes.
    indent : int or None
        Indentation of nested values (None: one line).

    Returns
    -------
    str
        The text, with non-ASCII characters kept and a final newline; never ``NaN``.
    """
    text = json.dumps(to_jsonable(obj), indent=indent, ensure_ascii=False, allow_nan=False)
    return text + "\n"


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON (:func:`dumps`) to ``path`` in UTF-8.

    Parameters
    ----------
    path : path
        The file (replaced if it exists).
    obj, indent
        As in :func:`dumps`.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    text = dumps(obj, indent)
    path.write_text(text, encoding="utf-8")
    if f'"{NONFINITE}":' in text:  # a result held NaN or inf: say so, not only in the file
        warnings.warn(
            f"{path.name}: some numbers are not finite (NaN or infinite; written as null, "
            f'listed under "{NONFINITE}"): a model, weights or inputs that give NaN, or a '
            "quantity with no data (e.g. a class without images)",
            RuntimeWarning,
            stacklevel=2,
        )
    return path


# ------------------------------------------------------------------------ conversion


def _convert(obj: Any) -> tuple[Any, bool]:
    """``(JSON value, whether it holds a non-finite number not yet flagged)``."""
    if obj is None or isinstance(obj, bool):
        return obj, False
    if isinstance(obj, str):
        return str(obj), False  # str subclasses too (torch's version string)
    if isinstance(obj, int):
        return int(obj), False
    if isinstance(obj, float):
        return (obj, False) if math.isfinite(obj) else (None, True)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        layout = _layout(type(obj))
        return _object(layout(obj) if layout is not None else _fields(obj)), False
    if isinstance(obj, Mapping):
        return _object(obj), False
    if isinstance(obj, Tensor):
        return _tensor(obj)
    if isinstance(obj, (np.ndarray, np.generic)):
        return _array(np.asarray(obj))
    if isinstance(obj, enum.Enum):
        return _convert(obj.value)
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        converted = [_convert(v) for v in items]
        return [v for v, _ in converted], any(bad for _, bad in converted)
    if isinstance(obj, torch.dtype):
        return str(obj).removeprefix("torch."), False
    return str(obj), False  # paths, devices, and anything else: its text


def _layout(kind: type) -> Layout | None:
    """The layout of ``kind`` or of its nearest base class that has one (an
    ``IntegratedGradientsExplanation`` is laid out as a ``PathExplanation``)."""
    for base in kind.__mro__:
        if base in LAYOUTS:
            return LAYOUTS[base]
    return None


def _object(items: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    flagged: list[str] = []
    for key, value in items.items():
        name = str(key.value if isinstance(key, enum.Enum) else key)
        out[name], bad = _convert(value)
        if bad:
            flagged.append(name)
    if flagged:
        out[NONFINITE] = flagged
    return out


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _tensor(t: Tensor) -> tuple[Any, bool]:
    return _convert(_plain(t))


def _array(a: np.ndarray) -> tuple[Any, bool]:
    return _convert(_numbers(a))


def _plain(t: Tensor) -> Any:
    """A tensor as nested Python numbers (non-finite floats kept), or its summary."""
    t = t.detach()
    if t.numel() > MAX_LISTED:
        return _summary(tuple(t.shape), str(t.dtype).removeprefix("torch."))
    if t.is_complex():
        return str(t.tolist())
    if t.dtype.is_floating_point and t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # float16, bfloat16: exactly representable in float32
    return _numbers(t.cpu().numpy())


def _numbers(a: np.ndarray) -> Any:
    """An array as nested Python numbers; floats as the shortest text of their precision."""
    if a.size > MAX_LISTED:
        return _summary(a.shape, str(a.dtype))
    if a.dtype.kind == "f" and a.dtype.itemsize < 8:
        # the shortest decimal that reads back to the same float32 (or float16) value
        return _floats(a.astype(str).tolist())
    if a.dtype.kind == "f":
        return a.astype(np.float64).tolist()  # float64 (longer floats: rounded to it)
    if a.dtype.kind in "biu":
        return a.tolist()
    return str(a.tolist())


def _floats(nested: Any) -> Any:
    if isinstance(nested, list):
        return [_floats(v) for v in nested]
    return float(nested)


def _summary(shape: tuple[int, ...], dtype: str) -> dict[str, Any]:
    return {"shape": list(shape), "dtype": dtype}


# ------------------------------------------------------------------------ layouts
# One function per result type whose JSON is not simply its fields: which fields it
# leaves out (images, bulky tensors) and which summaries it adds. The values are
# converted afterwards, by the conventions above.


def _pick(obj: Any, names: str) -> dict[str, Any]:
    """The attributes of ``obj`` (fields or properties) that ``names`` lists, separated by
    spaces, in that order."""
    return {name: getattr(obj, name) for name in names.split()}


def _without(obj: Any, *names: str) -> dict[str, Any]:
    fields = _fields(obj)
    return {k: v for k, v in fields.items() if k not in names}


def _ablation_result(r: AblationResult) -> dict[str, Any]:
    drops = r.accuracy_drop.tolist()
    return {
        **_pick(r, "baseline seed seconds batched skipped"),
        "ablations": [
            {"name": a.name, **_fields(a), "accuracy_drop": d, **_fields(e)}
            for a, e, d in zip(r.ablations, r.evaluations, drops, strict=True)
        ],
    }


def _tcav(r: TcavResult) -> dict[str, Any]:
    return {
        **_pick(r, "concept layer target examples mean"),
        "std": float(r.scores.std()) if len(r.scores) > 1 else 0.0,
        "null_mean": float(r.null_means.mean()),
        "null_std": float(r.null_means.std()),
        **_pick(r, "p_value cav_p_value smallest_p alpha significant seed scores cav_accuracy"),
        "skipped": r.skipped,
        "null_set_means": r.null_means,
        "null_set_cav_accuracy": r.null_cav_accuracy.mean(dim=1),
    }


def _probe(p: Probe) -> dict[str, Any]:
    return {
        **_pick(p, "test_accuracy train_accuracy features"),
    }


def _probe_table(t: ProbeTable) -> dict[str, Any]:
    random = t.random or (None,) * len(t.layers)
    return {
        "seed": t.seed,
        "seconds": t.seconds,
        "skipped": t.skipped,
        "chance": t.trained[0].chance if t.trained else None,
        "pixels": t.pixels,
        "layers": {
            name: {"trained": trained, "random_network": untrained}
            for name, trained, untrained in zip(t.layers, t.trained, random, strict=True)
        },
        "p_values": t.p_values(),
        "p_values_holm": t.p_values_holm(),
        "p_family": sum(p is not None for p in t.p_values().values()),
    }


def _module_card(c: ModuleCard) -> dict[str, Any]:
    return {
        **_pick(c, "name module kind output_shape parameters ablation accuracy_drop"),
        **_pick(c, "class_accuracy_drop worst_class channel_drop cumulative channel_order"),
        **_pick(c, "gradients"),
        "probe_accuracy": None if c.probe is None else c.probe.test_accuracy,
        "random_probe_accuracy": None if c.random_probe is None else c.random_probe.test_accuracy,
        "probe_p_value": c.probe_p_value,
        "extras": c.extras,
    }


def _anatomy(a: Anatomy) -> dict[str, Any]:
    return {
        "baseline": a.baseline,
        "pixel_probe_accuracy": None if a.pixel_probe is None else a.pixel_probe.test_accuracy,
        "chance": None if a.pixel_probe is None else a.pixel_probe.chance,
        "class_names": a.class_names or None,
        **_pick(a, "seconds settings cards"),
        "probe_p_holm": a.probe_p_holm(),
        "probe_family": sum(c.probe_p_value is not None for c in a.cards),
    }


def _filters(f: Filters) -> dict[str, Any]:
    w = f.weights.double()
    return {
        **_pick(f, "layer shape in_channels out_channels groups depthwise stride padding dilation"),
        "bias": f.bias is not None,
        "dtype": f.weights.dtype,  # "float32"
        "weights": {
            "mean": float(w.mean()),
            "std": float(w.std()) if w.numel() > 1 else 0.0,
            "min": float(w.min()),
            "max": float(w.max()),
        },
        "filter_norms": w.flatten(1).norm(dim=1),
    }


def _dream(r: DreamResult) -> dict[str, Any]:
    return {
        "objective": r.objective,
        "sizes": r.sizes,
        "initial": r.traces[0],
        "final": r.traces[-1],
        **_pick(r, "settings seed seconds versions"),
    }


def _receptive_field(r: ReceptiveField) -> dict[str, Any]:
    return {
        **_pick(r, "layer size stride start input_size map_size"),
    }


def _top_examples(t: TopExamples) -> dict[str, Any]:
    images, values = t.indices.tolist(), _plain(t.values)
    locations, boxes = t.locations.tolist(), t.boxes.tolist()

    def hit(row: int, rank: int) -> dict[str, Any]:
        return {
            "image": images[row][rank],
            "path": t.paths[row][rank] if t.paths else "",
            "value": values[row][rank],
            "location": locations[row][rank],
            "box": boxes[row][rank],
        }

    return {
        "layer": t.layer,
        "images_seen": t.count,
        "skipped": t.skipped,
        **_pick(t, "layer_channels k receptive_field"),
        "channels": [
            {"channel": c, "hits": [hit(r, j) for j in range(t.k)]}
            for r, c in enumerate(t.channels.tolist())
        ],
        "settings": t.settings,
    }


def _feature_maps(m: FeatureMaps) -> dict[str, Any]:
    return {
        "layer": m.layer,
        "images": len(m),
        **_pick(m, "layer_channels map_size selection order"),
        "channels": [
            {"channel": c, "mean": mean, "max": top}
            for c, mean, top in zip(m.channels.tolist(), _plain(m.mean), _plain(m.max), strict=True)
        ],
        "settings": m.settings,
    }


def _explanation(e: Explanation) -> dict[str, Any]:
    return {**_fields(e), "focus": e.focus()}


def _path_explanation(e: PathExplanation) -> dict[str, Any]:
    return {**_explanation(e), "completeness": e.completeness()}


def _smooth_mprt(r: SmoothMprtResult) -> dict[str, Any]:
    return {
        **_without(r, "reference", "explained", "noise_seeds"),
        "last_mean": float(r.last.nanmean()),
        "self_check_mean": float(r.self_check.nanmean()),
    }


def _efficient_mprt(r: EfficientMprtResult) -> dict[str, Any]:
    return {
        "score": r.score,
        **_without(r, "explained"),
        "mean_score": float(r.score.nanmean()),
        "mean_model_score": float(r.model_score.nanmean()),
    }


def _metric(r: MetricResult) -> dict[str, Any]:
    return {**_fields(r), "mean": r.mean()}


def _comparison(r: ComparisonResult) -> dict[str, Any]:
    return {**_fields(r), "verdicts": {v.method: v for v in r.verdicts()}}


def _randomization(r: RandomizationResult) -> dict[str, Any]:
    skipped = ("methods", "similarities", "original", "original_maps", "maps")
    return {
        **_without(r, *skipped),
        "methods": {
            s.method: {
                "self_check": s.self_check,
                "self_check_per_image": s.self_check_values,
                "constant_maps": s.constant.sum(dim=1),
                **{
                    m: {"mean": s.mean(m), "std": s.std(m), "per_image": s.values(m)}
                    for m in METRICS
                },
            }
            for s in r.similarities
        },
        "verdicts": {v.method: v for v in r.verdicts()},
    }


def roar_record(
    result: RoarResult,
    resamples: int = 10_000,
    comparisons: Sequence[RoarComparison] | None = None,
) -> dict[str, Any]:
    """A :class:`~seethrough.trust.RoarResult` with its bootstrap intervals and comparisons.

    Parameters
    ----------
    result : RoarResult
    resamples : int
        Bootstrap resamples of each interval.
    comparisons : sequence of RoarComparison, optional
        The output of :meth:`RoarResult.compare`, to reuse; computed otherwise.

    Returns
    -------
    dict
        Accuracies per seed, intervals, comparisons, settings and versions (convert with
        :func:`to_jsonable`; ``to_jsonable(result)`` is this with the defaults).
    """
    if comparisons is None:
        comparisons = result.compare(resamples=resamples)
    reference = result.reference_accuracy
    unretrained = None
    if result.unretrained_correct is not None:
        unretrained = result.unretrained_correct.double().mean(dim=-1)
    return {
        "reference": "Hooker et al. (2019), A Benchmark for Interpretability Methods "
        "in Deep Neural Networks, NeurIPS",
        **_pick(result, "methods fractions removed seeds"),
        "n_test": int(result.correct.shape[-1]),
        "accuracy": result.accuracy,
        "intervals": {
            m: [result.interval(m, f, resamples=resamples) for f in result.fractions]
            for m in result.methods
        },
        "reference_accuracy": reference,
        "reference_interval": result.reference_interval(resamples=resamples),
        "unretrained_accuracy": unretrained,
        "comparisons": list(comparisons),
        **_pick(result, "settings attribution_seconds seconds versions"),
    }


LAYOUTS: dict[type, Layout] = {
    AblationResult: _ablation_result,
    Anatomy: _anatomy,
    ModuleCard: _module_card,
    Probe: _probe,
    ProbeTable: _probe_table,
    TcavResult: _tcav,
    DreamResult: _dream,
    FeatureMaps: _feature_maps,
    Filters: _filters,
    ModuleGradients: lambda g: _without(g, "class_grad_x_activation"),
    InversionResult: lambda r: _without(r, "images", "inputs", "original", "traces"),
    LayerInversions: lambda r: {"table": r.table(), "results": r.results, "seconds": r.seconds},
    ReceptiveField: _receptive_field,
    StabilityResult: lambda r: _without(
        r, "pairwise_activation", "pairwise_gram", "pairwise_pixel"
    ),
    TopExamples: _top_examples,
    Visualization: lambda r: _without(r, "images", "traces", "seed"),
    Explanation: _explanation,
    PathExplanation: _path_explanation,
    EfficientMprtResult: _efficient_mprt,
    RandomizationResult: _randomization,
    ComparisonResult: _comparison,
    MetricResult: _metric,  # and its subclasses (ROAD, infidelity, localisation, …)
    RoarResult: roar_record,
    SmoothMprtResult: _smooth_mprt,
    AttackResult: lambda r: _without(r, "adversarial"),  # the images: a job writes them as files
    RobustnessReport: lambda r: {**_fields(r), "masking_suspected": r.masking_suspected},
    # the images and maps: a job writes them as tensors; the model and fills: not JSON
    ConceptRelevance: lambda r: _without(r, "inputs", "heatmaps", "heatmap", "input_transform"),
    Circuit: lambda r: _without(r, "module", "fills"),
}
"""Result type → the mapping its JSON object is made of (a subclass: its nearest listed base's;
types not listed: their fields)."""
