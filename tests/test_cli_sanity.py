"""``seethrough sanity``: bad input is one line and exit 2 with nothing written; a run
writes exactly its files, and its JSON is the library's result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import test_cli
from test_cli import run_cli, tree

assets = test_cli.assets  # the CLI tests' fixtures: the tiny model and its image files
tiny = test_cli.tiny


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "gradiant"], "unknown method 'gradiant'"),
        (["--mode", "bottom_up"], "Invalid value for '--mode'"),
        (["--granularity", "layer"], "Invalid value for '--granularity'"),
        (["--layer", "featurs.2", "--methods", "grad_cam"], "no layer 'featurs.2'"),
        (["--target", "9"], "target 9 is out of range"),
        (["--set", "steps=-1", "--methods", "integrated_gradients"], "steps must be"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path,
    assets: Path,
    tiny: list[str],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    result = run_cli(capsys, "sanity", str(assets / "a.png"), *tiny, *extra, "--out", str(out))
    assert result.code == 2, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not out.exists()


def test_sanity_writes_curves_grids_and_json(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    result = run_cli(
        capsys,
        "sanity",
        str(assets / "a.png"),
        str(assets / "b.png"),
        *tiny,
        "--methods",
        "gradient,grad_cam,edge_detector",
        "--figures",
        "1",
        "--out",
        str(out),
    )
    assert result.code == 0, result.err
    files = sorted(tree(out))
    assert files == sorted(
        [f"similarity-{m}.png" for m in ("spearman_abs", "spearman", "ssim", "hog")]
        + ["index.html", "randomization-000-a.png", "sanity.json"]
    )
    summary = json.loads((out / "sanity.json").read_text(encoding="utf-8"))
    steps = [s["name"] for s in summary["randomization"]["steps"]]
    assert steps == ["fc", "features.2", "features.0"]  # logits first, in execution order
    edges = summary["randomization"]["methods"]["edge_detector"]["spearman_abs"]["mean"]
    assert edges == [1.0, 1.0, 1.0]
    assert summary["edge_similarity"]["edge_detector"]["ssim"] == [1.0, 1.0]
    assert "rank correlation with the trained map after features.0" in result.err


def test_a_scoped_setting_reaches_its_method_only(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--set smoothgrad.samples=2`` used to be flattened into ``samples=2`` for every
    method that has a ``samples`` option (here: expected gradients too)."""
    out = tmp_path / "out"
    args = ["--methods", "smoothgrad,expected_gradients", "--set", "smoothgrad.samples=2"]
    extra = ["--set", "expected_gradients.samples=3", "--figures", "0", "-q", "--out", str(out)]
    result = run_cli(capsys, "sanity", str(assets / "a.png"), *tiny, *args, *extra)
    assert result.code == 0, result.err
    methods = json.loads((out / "sanity.json").read_text(encoding="utf-8"))["randomization"]
    # Each configured method is labelled with its non-default options.
    assert sorted(methods["methods"]) == ["expected_gradients(samples=3)", "smoothgrad(samples=2)"]
