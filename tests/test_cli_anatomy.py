"""``seethrough anatomy``: bad input is one line and exit 2 with nothing written; a run on
the Fashion-MNIST CNN and on a labelled image folder writes exactly its files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import test_cli
from test_cli import run_cli

assets = test_cli.assets
tiny = test_cli.tiny


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--modules", "conv9"], "no layer 'conv9'"),
        (["--data", "nowhere"], "--data 'nowhere': not 'fashion-mnist' and not a folder"),
        (["--concept", "stripes"], "expected NAME=FOLDER"),
        (["--concept-class", "Sandle", "--concept-layer", "fc1"], "unknown class name 'Sandle'"),
        (["--sweep-size", "0"], "Invalid value for '--sweep-size'"),
        (["--model", "nonexistent-net"], "unknown model 'nonexistent-net'"),
        (["--modules", " , "], "--modules is empty"),  # the tester's: ran the defaults
        (["--concept-class", "Sandal"], "--concept-class needs --concept NAME=FOLDER"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    result = run_cli(capsys, "anatomy", *extra, "--out", str(out))
    assert result.code == 2, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not out.exists()


def test_anatomy_of_the_fashion_cnn_writes_cards_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    result = run_cli(
        capsys,
        "anatomy",
        "--limit",
        "120",
        "--sweep-size",
        "40",
        "--probe-size",
        "120",
        "--modules",
        "conv2,fc1",
        "-q",
        "--out",
        str(out),
    )
    assert result.code == 0, result.err
    files = sorted(p.name for p in out.iterdir())
    assert files == ["anatomy.json", "anatomy.png", "card-conv2.png", "card-fc1.png", "index.html"]
    summary = json.loads((out / "anatomy.json").read_text())
    assert summary["model"] == "fashion-cnn" and summary["data"] == "fashion-mnist"
    cards = summary["anatomy"]["cards"]
    assert [c["module"] for c in cards] == ["conv2", "fc1"]
    assert len(cards[1]["channel_drop"]) == 1024
    assert summary["anatomy"]["class_names"][0] == "T-shirt/top"
    assert sorted(summary["files"]) == files
    # a second run without --force refuses and leaves the first intact
    again = run_cli(capsys, "anatomy", "--limit", "50", "--out", str(out))
    assert again.code == 2 and "--force" in again.err


def test_anatomy_of_a_labelled_folder_with_the_tiny_model(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    labels = (assets / "labels.txt").read_text().splitlines()
    for name in labels[:2]:
        (data / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, size=(30, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / name / f"{i}.png")
    out = tmp_path / "out"
    result = run_cli(
        capsys, "anatomy", *tiny, "--data", str(data), "--probe-size", "12", "-q", "--out", str(out)
    )
    assert result.code == 0, result.err
    summary = json.loads((out / "anatomy.json").read_text())
    assert summary["anatomy"]["settings"]["inputs"] == 12
    assert summary["anatomy"]["baseline"]["class_counts"][:2] == [6, 6]
    shutil.rmtree(out)
    (data / "not-a-class").mkdir()
    bad = run_cli(capsys, "anatomy", *tiny, "--data", str(data), "--out", str(out))
    assert bad.code == 2 and "names no class of the model" in bad.err
    assert not out.exists()


def test_labelled_data_is_cut_to_the_limit_on_the_models_device(
    tmp_path: Path, assets: Path, tiny: list[str]
) -> None:
    """``--limit`` and the device move, now in the job (a folder's images used to stay on
    the CPU while the model ran on ``--device cuda``)."""
    from seethrough.data.fashion_mnist import load_fashion_mnist
    from seethrough.jobs.anatomy import labelled_data
    from seethrough.models import load_model

    net = load_model(f"{test_cli.TINY_MODULE}:build", labels=assets / "labels.txt", device="meta")
    data = tmp_path / "data"
    labels = (assets / "labels.txt").read_text().splitlines()
    for name in (labels[1], labels[3]):
        (data / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 20), (40 * i, 0, 0)).save(data / name / f"{i}.png")
    folder = labelled_data(net, data, limit=4)
    assert folder.inputs.device.type == "meta" and folder.inputs.shape == (4, 3, 224, 224)
    assert folder.labels.tolist() == [
        3,
        3,
        3,
        1,
    ]  # "bird", then "tiger cat" and folder.source == str(data)
    fashion = labelled_data(net, "fashion-mnist", limit=5)
    assert fashion.inputs.device.type == "meta" and fashion.inputs.shape == (5, 1, 28, 28)
    assert torch.equal(fashion.labels, load_fashion_mnist("test").labels[:5])
    assert len(labelled_data(net, "fashion-mnist").labels) == 10_000
