"""One JSON form for every result (``seethrough.reporting.serialize``): exact numbers, valid
JSON for strict parsers (non-finite numbers as ``null`` plus a flag), the keys users read."""

from __future__ import annotations

import enum
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helpers import tiny_inputs, tiny_model
from seethrough.anatomy import Ablation, ablate, probe_layers
from seethrough.inside import Visualization, feature_maps, filters
from seethrough.reporting.serialize import (
    LAYOUTS,
    MAX_LISTED,
    NONFINITE,
    dumps,
    to_jsonable,
    write_json,
)
from seethrough.trust import efficient_mprt, model_randomization


def strict(text: str) -> Any:
    """``json.loads`` that refuses ``NaN``/``Infinity`` (as strict parsers do)."""

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_floats_are_written_exactly_in_their_own_precision() -> None:
    g = torch.Generator().manual_seed(0)
    single = torch.randn(1000, generator=g) * torch.logspace(-30, 30, 1000)
    double = single.double() / 3
    text = dumps({"single": single, "double": double})
    back = strict(text)
    # every float32 reads back bitwise, every float64 too: nothing is rounded
    assert torch.equal(torch.tensor(back["single"], dtype=torch.float32), single)
    assert torch.equal(torch.tensor(back["double"], dtype=torch.float64), double)
    # and a float32 is written as its shortest decimal, not as the float64 it widens to
    assert to_jsonable(torch.tensor([0.1, 0.3])) == [0.1, 0.3]
    assert to_jsonable(np.float32(0.1)) == 0.1
    assert to_jsonable(torch.tensor([1.5], dtype=torch.bfloat16)) == [1.5]


def test_nonfinite_numbers_become_null_and_the_holder_names_them() -> None:
    nan, inf = float("nan"), float("inf")
    value = {
        "rows": [{"score": nan, "image": "a"}, {"score": 0.5, "image": "b"}],
        "maps": torch.tensor([[1.0, nan], [-inf, 2.0]]),
        "fine": 1.0,
        "probability": np.float64(inf),
    }
    text = dumps(value)
    got = strict(text)  # valid JSON for strict parsers
    assert got["rows"][0] == {"score": None, "image": "a", NONFINITE: ["score"]}
    assert got["rows"][1] == {"score": 0.5, "image": "b"}  # no flag where all is finite
    assert got["maps"] == [[1.0, None], [None, 2.0]]
    assert got[NONFINITE] == ["maps", "probability"]  # the nearest object holding them
    assert "NaN" not in text and "Infinity" not in text


def test_a_result_with_nan_gives_valid_json() -> None:
    """Regression: ``Visualization.to_dict()`` rounded a NaN objective to ``NaN``, which
    ``json.dumps`` wrote as a bare ``NaN`` (invalid JSON; issue 18 #3)."""
    vis = Visualization(
        images=torch.zeros(2, 3, 4, 4),
        objectives=("conv:0", "conv:1"),
        traces=torch.zeros(3, 2),
        initial_values=torch.tensor([0.0, 1.0]),
        values=torch.tensor([float("nan"), 2.0]),
        seeds=(0, 1),
        settings={"steps": 3},
        seed=0,
        seconds=0.25,
        versions={"torch": torch.__version__},
    )
    got = strict(dumps(vis))
    assert got["values"] == [None, 2.0] and got[NONFINITE] == ["values"]
    assert "images" not in got and "traces" not in got  # the layout leaves them out
    assert got["versions"]["torch"] == str(torch.__version__)


class Colour(enum.Enum):
    RED = "red"


@dataclass(frozen=True)
class Inner:
    value: float
    big: torch.Tensor


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner
    path: Path
    colour: Colour
    dtype: torch.dtype
    counts: tuple[int, ...]
    table: dict[int, float]


def test_a_plain_dataclass_is_walked_by_field() -> None:
    outer = Outer(
        name="x",
        inner=Inner(float("nan"), torch.zeros(MAX_LISTED + 1)),
        path=Path("a") / "b.png",
        colour=Colour.RED,
        dtype=torch.float32,
        counts=(np.int64(3), 4),  # type: ignore[arg-type]
        table={1: 0.5},
    )
    got = strict(dumps(outer))
    assert got == {
        "name": "x",
        "inner": {
            "value": None,
            "big": {"shape": [MAX_LISTED + 1], "dtype": "float32"},
            NONFINITE: ["value"],
        },
        "path": str(Path("a") / "b.png"),
        "colour": "red",
        "dtype": "float32",
        "counts": [3, 4],
        "table": {"1": 0.5},
    }


def test_write_json_keeps_unicode_and_ends_with_a_newline(tmp_path: Path) -> None:
    with pytest.warns(RuntimeWarning, match=r"s\.json: some numbers are not finite"):
        path = write_json(tmp_path / "s.json", {"name": "nœud café", "score": float("nan")})
    text = path.read_text(encoding="utf-8")
    assert "nœud café" in text and text.endswith("}\n")
    assert strict(text) == {"name": "nœud café", "score": None, NONFINITE: ["score"]}


def test_write_json_is_quiet_when_every_number_is_finite(tmp_path: Path) -> None:
    """The tester's case: NaN results of the features and anatomy jobs were written as
    null without a word on the console; now a warning says so (and only then)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_json(tmp_path / "ok.json", {"score": 0.5, "maps": torch.ones(3)})


# The keys each result's JSON had when every result wrote its own (``to_dict``): users and
# scripts read them, so they are kept. Values are the same numbers, written exactly.
# (``skipped``, the unreadable images of a streamed source, was added with issue 15: an addition)
ABLATION_KEYS = {"baseline", "seed", "seconds", "batched", "ablations", "skipped"}
ABLATION_ROW_KEYS = {"name", "layer", "channels", "mode", "accuracy_drop"}
EVALUATION_KEYS = {"accuracy", "loss", "class_accuracy", "class_loss", "class_counts"}
FILTER_KEYS = {
    "layer", "shape", "in_channels", "out_channels", "groups", "depthwise", "stride",
    "padding", "dilation", "bias", "dtype", "weights", "filter_norms",
}  # fmt: skip
MAPS_KEYS = {"layer", "images", "layer_channels", "map_size", "selection", "order", "channels"}
RANDOMIZATION_KEYS = {
    "mode", "granularity", "steps", "follow_prediction", "init", "std", "reset_running_stats",
    "seed", "self_check_seed", "step_seeds", "seconds", "predictions", "explained", "methods",
}  # fmt: skip
EMPRT_KEYS = {
    "method", "order", "steps", "bins", "normalise", "absolute", "seed", "score",
    "complexity_trained", "complexity_random", "model_complexity_trained",
    "model_complexity_random", "seconds", "mean_score", "mean_model_score",
}  # fmt: skip


def test_results_keep_their_keys_and_values() -> None:
    model = tiny_model().eval()
    x, y = tiny_inputs(n=20), torch.arange(20) % 4  # class 4 has no image: NaN per class
    result = ablate(model, x, y, [Ablation("conv2", (0, 1)), Ablation("bn1", (), "mean")])
    got = strict(dumps(result))
    assert set(got) == ABLATION_KEYS
    assert set(got["baseline"]) == EVALUATION_KEYS | {NONFINITE}
    assert got["baseline"][NONFINITE] == ["class_accuracy", "class_loss"]
    assert got["baseline"]["class_accuracy"][4] is None
    row = got["ablations"][0]
    assert set(row) == ABLATION_ROW_KEYS | EVALUATION_KEYS | {NONFINITE}
    assert row["name"] == "conv2[0,1] zero" and row["channels"] == [0, 1]
    assert row["accuracy_drop"] == float(result.accuracy_drop[0])
    assert got["ablations"][1]["channels"] == []

    f = filters(model, "conv2")
    got = strict(dumps(f))
    assert set(got) == FILTER_KEYS and got["dtype"] == "float64"
    assert got["filter_norms"] == f.weights.flatten(1).norm(dim=1).tolist()

    maps = feature_maps(model, x[:3], "bn1", channels=[5, 0])
    got = strict(dumps(maps))
    assert set(got) == MAPS_KEYS | {"settings"}
    assert got["channels"][1] == {
        "channel": 0,
        "mean": float(maps.mean[1]),
        "max": float(maps.max[1]),
    }

    table = strict(dumps(probe_layers(model, x, y, ["fc"])))
    assert set(table["layers"]["fc"]) == {"trained", "random_network"}
    assert set(table["layers"]["fc"]["trained"]) == {"test_accuracy", "train_accuracy", "features"}

    xs = tiny_inputs(n=2)
    randomized = model_randomization(model, xs, ["gradient"], target=2)
    got = strict(dumps(randomized))
    assert set(got) >= RANDOMIZATION_KEYS
    assert got["steps"][0] == {
        "name": randomized.steps[0].name,
        "modules": list(randomized.steps[0].modules),
    }
    assert set(got["methods"]["gradient"]) >= {"self_check", "constant_maps", "spearman_abs"}
    emprt = efficient_mprt(model, xs, "gradient", 1)
    got = strict(dumps(emprt))
    assert set(got) == EMPRT_KEYS
    assert got["score"] == emprt.score.tolist()


@pytest.mark.parametrize("kind", sorted(LAYOUTS, key=lambda t: t.__name__))
def test_every_layout_is_for_a_frozen_dataclass(kind: type) -> None:
    params = getattr(kind, "__dataclass_params__", None)
    assert params is not None and params.frozen, kind
