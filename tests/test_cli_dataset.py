"""``seethrough explain-dataset`` and ``seethrough strategies``: a folder of real photos in
class subfolders (with an unreadable file) explained end to end with the labels read from
the folder names, resumed, analysed; bad input is one line and exit 2 with nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from skimage import data as skdata

import seethrough as st
import test_cli
from test_cli import run_cli, tree

assets = test_cli.assets  # the CLI tests' fixtures: the tiny model and its image files
tiny = test_cli.tiny

PHOTOS = {
    "tabby cat": ("chelsea", "coffee", "astronaut"),
    "dog": ("rocket", "camera"),
}


def _rgb(name: str) -> np.ndarray:
    pixels = getattr(skdata, name)()
    return np.stack([pixels] * 3, axis=-1) if pixels.ndim == 2 else pixels[..., :3]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """``photos/<class>/*.jpg`` of real photos, plus one truncated file among them."""
    root = tmp_path / "photos"
    for label, names in PHOTOS.items():
        (root / label).mkdir(parents=True)
        for name in names:
            Image.fromarray(_rgb(name)).save(root / label / f"{name}.jpg", quality=90)
    whole = (root / "dog" / "rocket.jpg").read_bytes()
    (root / "dog" / "broken.jpg").write_bytes(whole[: len(whole) // 3])
    return root


def test_folder_run_reads_labels_skips_bad_files_resumes_and_finds_strategies(
    tmp_path: Path, tiny: list[str], photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["explain-dataset", str(photos), *tiny, "--methods", "gradient,grad_cam"]
    args += ["--shard-size", "2", "--batch-size", "2", "--out", str(out), "-q"]
    done = run_cli(capsys, *args)
    assert done.code == 0, done.err
    assert "5 images explained" in done.out and "1 unreadable" in done.out
    assert "3 shards: 3 computed, 0 already done" in done.out
    run = st.open_run(out)
    index = run.to_pandas()
    # folder names are the model's class names: "tabby cat" is class 0, "dog" class 2
    labels = dict(zip(index["path"].map(lambda p: Path(p).stem), index["label"], strict=True))
    assert labels == {"chelsea": 0, "coffee": 0, "astronaut": 0, "rocket": 2, "camera": 2}
    assert index["target"].tolist() == index["label"].tolist()
    (error,) = run.errors
    assert Path(error["path"]).name == "broken.jpg" and error["error"]
    assert run.maps("gradient").shape == (5, 1, 224, 224)  # the default preprocessing: 224 px
    assert run.maps("grad_cam").shape == (5, 1, 224, 224)  # upsampled to the input

    # the same command again resumes: nothing recomputed, nothing changed
    before = tree(out)
    again = run_cli(capsys, *args)
    assert again.code == 0 and "3 shards: 0 computed, 3 already done" in again.out
    assert tree(out) == before

    strategies = tmp_path / "strategies"
    found = run_cli(
        capsys,
        "strategies",
        str(out),
        "--class",
        "tabby cat",
        "--min-images",
        "3",
        "--max-clusters",
        "2",
        "--out",
        str(strategies),
    )
    assert found.code == 0, found.err
    summary = json.loads((strategies / "strategies.json").read_text())
    (spray,) = summary["spray"]
    assert spray["class_name"] == "tabby cat" and spray["settings"]["n"] == 3
    assert sorted(summary["files"]) == sorted(p.name for p in strategies.iterdir())
    page = (strategies / "index.html").read_text()
    assert "SpRAy" in page and "tabby cat" in page


def test_strategies_default_out_is_inside_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    done = run_cli(
        capsys,
        "explain-dataset",
        "fashion-mnist:test",
        "--model",
        "fashion-cnn",
        "--methods",
        "gradient",
        "--limit",
        "120",
        "--device",
        "cpu",
        "--out",
        str(out),
        "-q",
    )
    assert done.code == 0, done.err
    found = run_cli(capsys, "strategies", str(out), "--class", "Trouser", "-q")
    assert found.code == 0, found.err
    assert (out / "strategies" / "strategies.json").is_file()
    # the representatives are shown with their images: the run's source was reopened
    written = json.loads((out / "strategies" / "strategies.json").read_text())
    (spray,) = written["spray"]
    index = pq.read_table(out / "index.parquet").to_pandas()
    rows = {r for c in spray["clusters"] for r in c["representatives"]}
    assert all(index["label"][r] == 1 for r in rows)


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        ("empty", [], "no images"),
        ("list_without_label", [], "--label-column"),
        ("unknown_class_folder", [], "is not a class the model knows"),
        ("photos", ["--methods", "gradient,nosuch"], "unknown method 'nosuch'"),
        ("photos", ["--shard-size", "0"], "Invalid value for '--shard-size'"),
        ("photos", ["--engine", "spark"], "Invalid value for '--engine'"),
        ("photos", ["--engine", "torchrun"], "torchrun"),
    ],
)
def test_explain_dataset_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path,
    tiny: list[str],
    photos: Path,
    capsys: pytest.CaptureFixture[str],
    make: str,
    extra: list[str],
    message: str,
) -> None:
    data = photos
    if make == "empty":
        data = tmp_path / "empty"
        data.mkdir()
    elif make == "list_without_label":
        data = tmp_path / "list.csv"
        data.write_text("path,class\nphotos/dog/camera.jpg,dog\n")
    elif make == "unknown_class_folder":
        (photos / "zebra").mkdir()
        Image.fromarray(_rgb("coffee")).save(photos / "zebra" / "z.jpg")
    out = tmp_path / "run"
    done = run_cli(capsys, "explain-dataset", str(data), *tiny, "--out", str(out), *extra)
    assert done.code == 2
    (line,) = _lines(done.err)
    assert line.startswith("seethrough: error: ") and message in line, line
    assert not out.exists()


def test_a_run_of_other_settings_is_refused_and_kept(
    tmp_path: Path, tiny: list[str], photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    first = run_cli(capsys, "explain-dataset", str(photos), *tiny, "--out", str(out), "-q")
    assert first.code == 0, first.err
    before = tree(out)
    other = run_cli(
        capsys, "explain-dataset", str(photos), *tiny, "--seed", "1", "--out", str(out), "-q"
    )
    assert other.code == 2
    (line,) = _lines(other.err)
    assert "different settings" in line and "seed" in line and "--out" in line
    assert tree(out) == before


def test_strategies_bad_input(
    tmp_path: Path, tiny: list[str], photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_run = tmp_path / "folder"
    not_a_run.mkdir()
    done = run_cli(capsys, "strategies", str(not_a_run))
    assert done.code == 2 and "manifest" in _lines(done.err)[0]
    out = tmp_path / "run"
    assert run_cli(capsys, "explain-dataset", str(photos), *tiny, "--out", str(out), "-q").code == 0
    for extra, message in (
        (["--class", "zebra"], "zebra"),
        (["--method", "smoothgrad"], "smoothgrad"),
        ([], "no class has 20 images"),
    ):
        done = run_cli(capsys, "strategies", str(out), *extra)
        assert done.code == 2, done.err
        (line,) = _lines(done.err)
        assert message in line, line
    assert not (out / "strategies").exists()


def test_python_api_matches_the_command(
    tmp_path: Path, tiny: list[str], photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``st.explain_dataset`` with the same settings writes the same shards as the CLI."""
    out = tmp_path / "cli"
    assert run_cli(capsys, "explain-dataset", str(photos), *tiny, "--out", str(out), "-q").code == 0
    from seethrough.models import load_model

    net = load_model(
        "efficientnet-lite0",
        factory=f"{test_cli.TINY_MODULE}:build",
        weights=tiny[3],
        labels=tiny[5],
        device="cpu",
    )
    api = tmp_path / "api"
    st.explain_dataset(net, photos, ["gradient", "grad_cam"], api)
    assert tree(api / "shards") == tree(out / "shards")
    assert torch.equal(st.open_run(api).maps("gradient"), st.open_run(out).maps("gradient"))
