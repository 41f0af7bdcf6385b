"""``seethrough features``: each subcommand writes exactly its files and its JSON is the
library's result; bad input is one line and exit 2 with nothing written. Also the figures
of activation maximization, DeepDream and inversion (their CLI runs use them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import test_cli
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.inside import DreamResult, InversionResult, LayerInversions, Visualization
from seethrough.inside.top_examples import top_examples
from seethrough.models.fashion_cnn import fashion_cnn
from seethrough.viz import plot_dream, plot_inversion, plot_traces, plot_visualization
from test_cli import run_cli, tree

assets = test_cli.assets  # the CLI tests' fixtures: the tiny model and its image files
tiny = test_cli.tiny
FASHION = ["--model", "fashion-cnn", "--device", "cpu", "-q"]


def _summary(out: Path, name: str) -> dict[str, object]:
    summary = json.loads((out / name).read_text(encoding="utf-8"))
    assert sorted(summary["files"]) == sorted(tree(out))  # the manifest lists every file
    return summary


def test_filters_writes_the_grid_and_the_weights_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    result = run_cli(capsys, "features", "filters", *FASHION, "--layer", "conv2", "--out", str(out))
    assert result.code == 0, result.err
    assert sorted(tree(out)) == ["filters.json", "filters.png", "index.html"]
    summary = _summary(out, "filters.json")["filters"]
    assert summary["shape"] == [64, 32, 5, 5] and summary["layer"] == "conv2"
    norms = fashion_cnn().conv2.weight.detach().double().flatten(1).norm(dim=1)
    assert summary["filter_norms"] == pytest.approx(norms.tolist(), abs=1e-6)


def test_maps_writes_a_figure_per_four_images_and_channel_statistics(
    tmp_path: Path, assets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    images = [str(assets / f"{n}.png") for n in ("a", "b", "c")] + [
        "sample:camera",
        "sample:coffee",
    ]
    result = run_cli(
        capsys, "features", "maps", *images, *FASHION, "--layer", "conv2",
        "--channels", "5,0", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert sorted(tree(out)) == ["index.html", "maps-000.png", "maps-001.png", "maps.json"]
    summary = _summary(out, "maps.json")
    assert [c["channel"] for c in summary["maps"]["channels"]] == [5, 0]
    assert [im["name"] for im in summary["images"]] == ["a", "b", "c", "camera", "coffee"]


def test_top_examples_on_fashion_mnist_equal_the_library(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    result = run_cli(
        capsys,
        "features",
        "top-examples",
        "--dataset",
        "fashion-mnist",
        "--limit",
        "200",
        "--layer",
        "pool2",
        "--channels",
        "0-2,40",
        "--k",
        "4",
        "-q",
        "--out",
        str(out),
    )  # fmt: skip  (no --model: --dataset fashion-mnist implies the Fashion CNN)
    assert result.code == 0, result.err
    assert sorted(tree(out)) == ["index.html", "top-examples-000.png", "top-examples.json"]
    summary = _summary(out, "top-examples.json")
    assert summary["model"] == "fashion-cnn" and summary["images"] == 200
    expected = top_examples(
        fashion_cnn(),
        load_fashion_mnist("test").inputs(0, 200),
        "pool2",
        channels=[0, 1, 2, 40],
        k=4,
    )
    found = summary["top_examples"]["channels"]
    assert [c["channel"] for c in found] == [0, 1, 2, 40]
    assert [[h["image"] for h in c["hits"]] for c in found] == expected.indices.tolist()
    assert [[h["box"] for h in c["hits"]] for c in found] == expected.boxes.tolist()
    assert found[0]["hits"][0]["name"].startswith(f"{found[0]['hits'][0]['image']}: ")
    assert summary["top_examples"]["receptive_field"]["size"] == [16, 16]


def test_top_examples_over_an_image_folder(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.png").write_bytes((assets / f"{name}.png").read_bytes())
    out = tmp_path / "out"
    result = run_cli(
        capsys, "features", "top-examples", str(folder), *tiny, "--layer", "features.0",
        "--k", "2", "-q", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = _summary(out, "top-examples.json")
    channels = summary["top_examples"]["channels"]
    assert len(channels) == 4 and all(len(c["hits"]) == 2 for c in channels)
    assert {h["name"] for c in channels for h in c["hits"]} <= {"a", "b", "c"}


def test_maximize_and_its_stability_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    result = run_cli(
        capsys, "features", "maximize", *FASHION, "--layer", "conv2", "--channels", "0-1",
        "--steps", "3", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert sorted(tree(out)) == [
        "index.html",
        "maximize-traces.png",
        "maximize.json",
        "maximize.png",
    ]
    summary = _summary(out, "maximize.json")["maximize"]
    assert len(summary["objectives"]) == 2 and summary["settings"]["steps"] == 3
    again = tmp_path / "again"
    result = run_cli(
        capsys, "features", "maximize", *FASHION, "--objective", "conv2:5", "--stability", "2",
        "--steps", "2", "--seed", "7", "--out", str(again),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert _summary(again, "maximize.json")["stability"]["seeds"] == [7, 8]


def test_dream_writes_each_dreamed_image(
    tmp_path: Path, assets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    result = run_cli(
        capsys, "features", "dream", str(assets / "a.png"), *FASHION, "--layer", "conv2",
        "--steps", "2", "--octaves", "1", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert sorted(tree(out)) == ["dream-000-a.png", "dream.json", "dream.png", "index.html"]
    assert _summary(out, "dream.json")["dream"]["sizes"] == [[28, 28]]


def test_invert_from_two_layers(
    tmp_path: Path, assets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    result = run_cli(
        capsys, "features", "invert", str(assets / "b.png"), *FASHION, "--layer", "conv1,pool2",
        "--steps", "3", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert sorted(tree(out)) == ["index.html", "inversion.json", "inversion.png"]
    table = _summary(out, "inversion.json")["inversion"]["table"]
    assert [row["layer"] for row in table] == ["conv1", "pool2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["filters", *FASHION, "--layer", "relu1"], "'relu1' is a ReLU, not a Conv2d"),
        (["filters", *FASHION], "Missing option '--layer'"),
        (["filters", *FASHION, "--layer", "conv1", "--factory", "m:f"], "needs its weights"),
        (["maps", "sample:camera", *FASHION, "--layer", "conv9"], "no layer 'conv9'"),
        (["maps", "sample:camera", *FASHION, "--layer", "conv2", "--channels", "70"],
         "channel 70 is out of range"),
        (["maps", "sample:camera", *FASHION, "--layer", "conv2", "--channels", "4-2"],
         "range 4-2 is empty"),
        (["maps", "missing.png", *FASHION, "--layer", "conv2"], "no such file: missing.png"),
        (["maximize", *FASHION], "nothing to visualize"),
        (["maximize", *FASHION, "--layer", "conv2", "--channels", "99"], "channel 99"),
        (["maximize", *FASHION, "--layer", "conv2", "--stability", "2"], "exactly one"),
        (["invert", "sample:camera", *FASHION, "--layer", "nope"], "no layer 'nope'"),
        (["dream", "sample:camera", *FASHION, "--layer", "conv2", "--octave-scale", "0.5"],
         "octave"),
        (["top-examples", *FASHION, "--layer", "conv2"], "not both, not neither"),
        (["top-examples", "--dataset", "fashion-mnist", "--layer", "conv2", "--channels", "64",
          "--limit", "5", "-q"], "channel 64 is out of range"),
        (["top-examples", "--dataset", "fashion-mnist", "--layer", "_conv_stem", "--limit", "5",
          "--model", "efficientnet-lite0", "-q"], "cannot run on Fashion-MNIST images"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    result = run_cli(capsys, "features", *args, "--out", str(out))
    assert result.code == 2, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert "Traceback" not in result.err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_unwritable_or_occupied_output_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file")
    args = ["features", "filters", *FASHION, "--layer", "conv1", "--out"]
    result = run_cli(capsys, *args, str(blocker / "sub"))
    assert result.code == 2 and "is a file, not a folder" in result.err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    result = run_cli(capsys, *args, str(taken))
    assert result.code == 2 and "pass --force" in result.err
    assert sorted(tree(taken)) == ["keep.txt"]
    result = run_cli(capsys, *args, str(taken), "--force")
    assert result.code == 0 and sorted(tree(taken)) == [
        "filters.json",
        "filters.png",
        "index.html",
        "keep.txt",
    ]


# --- figures of the optimisation results (built directly: fast, exact counts) -------------


def _versions() -> dict[str, str]:
    return {"seethrough": "test", "torch": torch.__version__}


def test_plot_visualization_titles_each_image_with_its_objective_and_value() -> None:
    images = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    vis = Visualization(
        images=images,
        objectives=tuple(f"channel('conv2', {c})" for c in range(5)),
        traces=torch.zeros(4, 5),
        initial_values=torch.zeros(5),
        values=torch.arange(5.0),
        seeds=tuple(range(5)),
        settings={},
        seed=0,
        seconds=0.0,
        versions=_versions(),
    )
    figure = plot_visualization(vis, columns=3)
    assert len(figure.axes) == 5
    assert [ax.get_title() for ax in figure.axes][4] == "channel('conv2', 4)\n4"
    lines = plot_traces(vis.traces, list(vis.objectives), title="t", ylabel="objective")
    assert len(lines.axes[0].get_lines()) == 5


def test_plot_dream_and_plot_inversion() -> None:
    pixels = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    result = DreamResult(
        images=pixels,
        inputs=pixels,
        original=pixels.flip(-1),
        objective="layer_objective('conv2')",
        traces=torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
        sizes=((8, 8),),
        settings={},
        seed=0,
        seconds=0.0,
        versions=_versions(),
    )
    figure = plot_dream(result)
    assert len(figure.axes) == 4 and "conv2" in figure.get_suptitle()
    assert figure.axes[1].get_title() == "dreamed  3"  # image 0, before the last step
    assert figure.axes[3].get_title() == "dreamed  4"

    def inversion(layer: str) -> InversionResult:
        return InversionResult(
            layer=layer,
            images=pixels,
            inputs=pixels,
            original=pixels,
            feature_error=torch.tensor([0.1, 0.2]),
            pixel_error=torch.tensor([0.3, 0.4]),
            traces=torch.zeros(3, 2),
            settings={},
            seed=0,
            seconds=0.0,
            versions=_versions(),
        )

    one = plot_inversion(inversion("conv1"))
    assert len(one.axes) == 4 and one.axes[1].get_title().startswith("conv1\nfeat 0.1")
    both = LayerInversions(
        layers=("conv1", "pool2"),
        results=(inversion("conv1"), inversion("pool2")),
        feature_error=torch.zeros(2, 2),
        pixel_error=torch.zeros(2, 2),
        seconds=0.0,
    )
    figure = plot_inversion(both, images=[1])
    assert len(figure.axes) == 3 and figure.axes[2].get_title().startswith("pool2\nfeat 0.2")


def test_load_dataset_cuts_the_fashion_mnist_test_set() -> None:
    from seethrough.errors import InvalidOptionError
    from seethrough.jobs.features import load_dataset

    full, first = load_fashion_mnist("test"), load_dataset("fashion-mnist", 7)
    assert (first.split, len(first), len(load_dataset("fashion-mnist"))) == ("test", 7, 10_000)
    assert torch.equal(first.images, full.images[:7]) and torch.equal(first.labels, full.labels[:7])
    with pytest.raises(InvalidOptionError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
