"""The explain job shows first results early (issue 18 #8): fast methods run first, and a
complete, valid report is on disk after every step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import seethrough.jobs.explain as explain_job
from helpers import tiny_model
from seethrough.attribution import make_method
from seethrough.cli.explain import DEFAULT_METHODS
from seethrough.data import load_images
from seethrough.jobs.explain import FAST_PASSES, run_explain, schedule
from seethrough.models import load_model
from seethrough.reporting.html import RELOAD_SECONDS

DEFAULT = DEFAULT_METHODS.split(",")  # the methods of `seethrough explain`


def strict(text: str) -> Any:
    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_fast_methods_run_first_and_slow_ones_cheapest_first() -> None:
    methods = [make_method(n) for n in DEFAULT]
    steps = [[m.name for m in step] for step in schedule(methods)]
    assert steps == [
        ["gradient", "gradient_x_input", "grad_cam", "guided_grad_cam"],  # one shared pass
        ["guided_backprop", "deconvnet"],  # a pass each
        ["smoothgrad"],  # 51 passes per image
        ["integrated_gradients"],  # 130 planned passes per image
    ]
    assert all(
        m.planned_rows(1) <= FAST_PASSES for m in [*schedule(methods)[0], *schedule(methods)[1]]
    )
    cheap = make_method("smoothgrad", samples=2)  # three passes per image: before IG
    steps = [[m.name for m in s] for s in schedule([make_method("integrated_gradients"), cheap])]
    assert steps == [["smoothgrad"], ["integrated_gradients"]]


def folder_state(out: Path) -> dict[str, Any]:
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    summary = strict((out / "summary.json").read_text(encoding="utf-8"))
    return {
        "files": files,
        "summary": summary,
        "index": (out / "index.html").read_text(encoding="utf-8"),
        "tensors": sorted(load_file(str(out / "attributions.safetensors"))),
    }


def test_a_complete_report_is_on_disk_after_each_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = load_model(tiny_model(dtype=torch.float32))
    images = load_images(["sample:camera", "sample:chelsea"])
    methods = [
        make_method("smoothgrad", samples=3),  # four passes per image: a slow step
        make_method("gradient"),
        make_method("grad_cam", layer="conv3"),
    ]
    out = tmp_path / "out"
    seen: list[dict[str, Any]] = []
    real = explain_job.explain

    def explain(*args: Any, **kwargs: Any) -> Any:
        if out.is_dir() and (out / "index.html").exists():
            seen.append(folder_state(out))  # what a user sees while this step runs
        return real(*args, **kwargs)

    monkeypatch.setattr(explain_job, "explain", explain)
    result = run_explain(net, images, methods, out)

    assert len(seen) == 1  # before the second (slow) step: the first step's report
    first = seen[0]
    assert first["files"] == [
        "attributions.safetensors",
        "camera.png",
        "chelsea.png",
        "index.html",
        "summary.json",
    ]
    assert first["summary"]["files"] == first["files"]  # every listed file is there
    assert [m["method"] for m in first["summary"]["methods"]] == ["gradient", "grad_cam"]
    assert first["summary"]["pending"] == ["smoothgrad"]
    assert "gradient.attributions" in first["tensors"]
    assert "smoothgrad.attributions" not in first["tensors"]
    assert "Partial report" in first["index"] and "smoothgrad" in first["index"]
    assert f'http-equiv="refresh" content="{RELOAD_SECONDS}"' in first["index"]

    final = folder_state(out)
    assert final["files"] == first["files"] == sorted(result.files)
    order = ["smoothgrad", "gradient", "grad_cam"]  # the order asked for
    assert [m["method"] for m in final["summary"]["methods"]] == order
    assert final["summary"]["pending"] == []
    assert [ex.method for ex in result.explanations] == order
    assert "Partial report" not in final["index"] and "refresh" not in final["index"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no stage, no lock


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("boom")])
def test_a_run_stopped_after_a_step_leaves_a_report_that_says_so(
    error: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tester's case: after Ctrl-C the published report still listed smoothgrad as
    running, and its page reloaded forever."""
    net = load_model(tiny_model(dtype=torch.float32))
    images = load_images(["sample:camera"])
    methods = [make_method("smoothgrad", samples=3), make_method("gradient")]
    out = tmp_path / "out"
    real = explain_job.explain

    def explain(model: Any, x: Any, step: list[Any], *args: Any, **kwargs: Any) -> Any:
        if step[0].name == "smoothgrad":
            raise error
        return real(model, x, step, *args, **kwargs)

    monkeypatch.setattr(explain_job, "explain", explain)
    with pytest.raises(type(error)):
        run_explain(net, images, methods, out)
    state = folder_state(out)
    assert [m["method"] for m in state["summary"]["methods"]] == ["gradient"]
    assert state["summary"]["pending"] == [] and state["summary"]["not_run"] == ["smoothgrad"]
    reason = "interrupted" if isinstance(error, KeyboardInterrupt) else "RuntimeError"
    assert f"Incomplete report: the run stopped ({reason})" in state["index"]
    assert "refresh" not in state["index"] and "Partial report" not in state["index"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no stage, no lock
