"""``seethrough robust attack|evaluate``: bad input is one line and exit 2 with nothing
written; a run writes exactly its files, its JSON holds the library's numbers on the same
inputs, and its page renders in a browser."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import test_cli
from test_cli import TINY_MODULE, run_cli, tree
from test_cli_startup import _imported_after

assets = test_cli.assets  # the CLI tests' fixtures: the tiny model and its image files
tiny = test_cli.tiny

PHOTOS = ("sample:chelsea", "sample:coffee")


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eps", "-0.1"], "--eps '-0.1': '-0.1' is not a non-negative number"),
        (["--eps", "4/0"], "is not a non-negative number"),
        (["--eps", "0.1,0.2"], "--eps takes one radius for an attack"),
        (["--norm", "lnf"], "unknown norm 'lnf'; did you mean 'linf'? (valid: linf, l2)"),
        (["--attack", "pdg"], "unknown attack 'pdg'; did you mean 'pgd'?"),
        (["--eps-space", "pixel"], "unknown eps space 'pixel'; did you mean 'pixels'?"),
        (["--target", "true"], "--target true needs --true-labels"),
        (["--target", "true", "--true-labels", "1"], "--true-labels gives 1 classes for 2 images"),
        (["--true-labels", "1,zebra"], "unknown class name 'zebra'"),
        (["--true-labels", "1,"], "--true-labels '1,' has an empty item"),
        (["--target", "9"], "class 9 is out of range: the model has 5 classes"),
        (["--target", "top3"], "'top3' is not an attack target"),
        (["--attack", "fgsm", "--norm", "l2"], "FGSM is an L∞ attack"),
        (["--attack", "fgsm", "--steps", "3"], "--steps: PGD settings"),
        (["--steps", "0"], "Invalid value for '--steps'"),
        (["--lang", "fr"], "Invalid value for '--lang'"),
    ],
)
def test_attack_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path,
    assets: Path,
    tiny: list[str],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    images = [str(assets / "a.png"), str(assets / "b.png")]
    result = run_cli(capsys, "robust", "attack", *images, *tiny, *extra, "--out", str(out))
    assert result.code == 2, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert "Traceback" not in result.err
    assert not out.exists()


def test_attack_on_an_unknown_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    result = run_cli(capsys, "robust", "attack", "--model", "nonexistent-net", "--out", str(out))
    assert result.code == 2 and "unknown model 'nonexistent-net'" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not out.exists()


def test_an_attack_that_fails_midway_leaves_nothing(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The model's scores turn NaN for the second image: the attack raises inside the job,
    after the output folder was taken; the folder is removed again."""
    broken = [*tiny[:1], f"{TINY_MODULE}:build_broken", *tiny[2:]]
    out = tmp_path / "out"
    images = [str(assets / "a.png"), str(assets / "b.png")]
    result = run_cli(
        capsys, "robust", "attack", *images, *broken, "--steps", "1", "--out", str(out)
    )
    assert result.code == 2, result.err
    assert "NaN or infinite" in result.err and len(result.err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eps", "0.1,-0.2"], "--eps '0.1,-0.2': '-0.2' is not a non-negative number"),
        (["--norm", "l3"], "unknown norm 'l3'"),
        (["--model", "nonexistent-net"], "unknown model 'nonexistent-net'"),
        (["--data", "nowhere"], "--data 'nowhere': not 'fashion-mnist[:test|train]'"),
        (["--data", "fashion-mnist:val"], "unknown split 'val'"),
        (["--model", "efficientnet-lite0"], "holds 28×28 grayscale images normalised for"),
        (["--transfer-from", "nonexistent-net"], "unknown model 'nonexistent-net'"),
        (["--limit", "0"], "Invalid value for '--limit'"),
    ],
)
def test_evaluate_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    args = ["robust", "evaluate", "--device", "cpu", "--limit", "8", *extra, "--out", str(out)]
    result = run_cli(capsys, *args)
    assert result.code == 2, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not out.exists()


def test_help_imports_no_heavy_module_and_names_match_the_library() -> None:
    code = (
        "from seethrough.cli import main\n"
        "for command in (['robust'], ['robust', 'attack'], ['robust', 'evaluate']):\n"
        "    assert main([*command, '--help']) == 0\n"
        "assert main(['robust', 'attack', '--norm', 'l3']) == 2\n"
    )
    assert _imported_after(code) == []
    from seethrough import robust
    from seethrough.cli import robust as cli_robust
    from seethrough.jobs.robust import ATTACKS

    assert sorted(cli_robust.NORMS) == sorted(robust.NORMS)
    assert sorted(cli_robust.EPS_SPACES) == sorted(robust.EPS_SPACES)
    assert sorted(cli_robust.ATTACKS) == sorted(ATTACKS)


# ---------------------------------------------------------------------- attack


def _cli(*args: str) -> tuple[int, str, str]:
    """The CLI in-process, outside a test (module fixtures): exit code, stdout, stderr."""
    from seethrough.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def photo_attack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """PGD (2 steps) on two photos with the default EfficientNet-Lite0, figures for one."""
    out = tmp_path_factory.mktemp("attack") / "out"
    code, _, err = _cli(
        "robust", "attack", *PHOTOS, "--steps", "2", "--figures", "1", "--device", "cpu",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    return out, err


def test_attack_writes_its_files_and_the_librarys_numbers(photo_attack: tuple[Path, str]) -> None:
    from seethrough.data import load_images
    from seethrough.models import load_model
    from seethrough.robust import pgd

    out, err = photo_attack
    assert sorted(tree(out)) == sorted(
        [
            "adversarial-000-chelsea.png",
            "adversarial-001-coffee.png",
            "adversarial.safetensors",
            "attack-000-chelsea.png",
            "attack.json",
            "index.html",
        ]
    )
    summary = json.loads((out / "attack.json").read_text(encoding="utf-8"))
    assert sorted(summary["files"]) == sorted(tree(out))
    net = load_model("efficientnet-lite0")
    x = net.preprocess(load_images(list(PHOTOS)))
    # the CLI's defaults: ε = 4/255 in pixel units, the clean prediction, seed 0
    ours = pgd(net, x, eps=4 / 255, eps_space="pixels", steps=2, target="predicted", seed=0)
    tensors = load_file(str(out / "adversarial.safetensors"))
    assert torch.equal(tensors["inputs"], x)
    assert torch.equal(tensors["adversarial"], ours.adversarial)
    attack = summary["attack"]
    assert "adversarial" not in attack  # the images are files, not JSON (serialize.LAYOUTS)
    assert attack["settings"]["eps"] == 4 / 255 and attack["settings"]["steps"] == 2
    assert torch.equal(torch.tensor(attack["margin"], dtype=torch.float32), ours.margin)
    assert attack["classes"] == ours.classes.tolist()
    assert attack["predicted"] == ours.predicted.tolist()
    assert attack["success"] == ours.success.tolist()
    with torch.no_grad():
        clean_p = net.module(x).softmax(1)
        adv_p = net.module(ours.adversarial).softmax(1)
    std = torch.tensor(net.preprocess.std).view(1, 3, 1, 1)
    assert net.labels is not None
    for i, row in enumerate(summary["images"]):
        assert row["clean"]["class"] == int(clean_p[i].argmax()) == int(ours.classes[i])
        assert row["clean"]["label"] == net.labels[row["clean"]["class"]]
        assert row["clean"]["probability"] == pytest.approx(float(clean_p[i].max()), abs=1e-6)
        assert row["adversarial"]["class"] == int(ours.predicted[i])
        assert row["adversarial"]["probability"] == pytest.approx(float(adv_p[i].max()), abs=1e-6)
        assert row["margin"] == attack["margin"][i]
        delta = (ours.adversarial[i].double() - x[i].double()) * std.double()
        assert row["perturbation_pixels"]["linf"] == pytest.approx(float(ours.norms[i]), abs=1e-7)
        assert row["perturbation_pixels"]["linf"] <= 4 / 255 + 1e-6  # inside the ball
        l2 = float(delta.square().sum().sqrt())  # in float64 from the float32 tensors
        assert row["perturbation_pixels"]["l2"] == pytest.approx(l2, rel=1e-5)
        # the PNG holds the adversarial pixels rounded to 8 bits, and its row says what
        # the model makes of them
        png = np.asarray(Image.open(out / row["png"]["file"]))
        pixels = net.preprocess.invert(ours.adversarial[i : i + 1])[0].permute(1, 2, 0)
        assert np.array_equal(png, torch.round(pixels * 255).to(torch.uint8).numpy())
        # read back at the model's input size: normalised, not cropped or resized again
        reread = dataclasses.replace(net.preprocess, crop_fraction=1.0)(png)
        with torch.no_grad():
            assert row["png"]["class"] == int(net.module(reread).argmax())
    assert "chelsea: tiger cat (0.39) → " in err  # the notes, one line per image
    expected = ours.describe().text("en")
    assert summary["description"]["findings"][0]["text"] == expected


def test_attack_page_in_a_real_browser(photo_attack: tuple[Path, str]) -> None:
    from browser import check_page

    out, _ = photo_attack
    check = check_page(out / "index.html", screenshot="pages-robust-attack.png")
    assert check.console_errors == ()
    assert check.outside() == ()  # only files of its own folder
    assert check.broken_images == ()
    assert check.serious_violations == ()
    assert check.scripts == 0
    assert check.images == 1  # the one figure asked for
    summary = json.loads((out / "attack.json").read_text(encoding="utf-8"))
    row = summary["images"][0]
    assert f"{row['margin']:.3f}" in check.text  # the table's number is the JSON's
    assert summary["description"]["findings"][0]["text"] in check.text


def test_targeted_fgsm_and_true_labels_on_the_tiny_model(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from seethrough.data import load_images
    from seethrough.models import load_model
    from seethrough.robust import fgsm, pgd

    images = [str(assets / "a.png"), str(assets / "b.png")]
    net = load_model(
        f"{TINY_MODULE}:build", weights=assets / "tiny.safetensors", labels=assets / "labels.txt"
    )
    x = net.preprocess(load_images(images))
    out = tmp_path / "fgsm"
    args = ["--attack", "fgsm", "--eps", "0.05", "--eps-space", "input", "--target", "dog,4"]
    result = run_cli(capsys, "robust", "attack", *images, *tiny, *args, "-q", "--out", str(out))
    assert result.code == 0, result.err
    assert result.err == ""  # --quiet: no bars, no notes
    summary = json.loads((out / "attack.json").read_text(encoding="utf-8"))
    ours = fgsm(net, x, eps=0.05, target=["dog", 4])
    assert summary["attack"]["settings"]["targeted"] is True
    assert [r["attacked_class"]["class"] for r in summary["images"]] == [2, 4]
    assert summary["attack"]["success"] == ours.success.tolist()
    assert torch.equal(torch.tensor(summary["attack"]["margin"]), ours.margin)
    assert torch.equal(
        load_file(str(out / "adversarial.safetensors"))["adversarial"], ours.adversarial
    )
    # the true class, in Chinese
    out = tmp_path / "true"
    args = ["--target", "true", "--true-labels", "tiger cat,3", "--steps", "1", "--lang", "zh"]
    result = run_cli(capsys, "robust", "attack", *images, *tiny, *args, "-q", "--out", str(out))
    assert result.code == 0, result.err
    summary = json.loads((out / "attack.json").read_text(encoding="utf-8"))
    ours = pgd(net, x, eps=4 / 255, eps_space="pixels", steps=1, labels=[1, 3])
    assert [r["attacked_class"]["class"] for r in summary["images"]] == [1, 3]
    assert summary["true_labels"] == [
        {"class": 1, "label": "tiger cat"},
        {"class": 3, "label": "bird"},
    ]
    assert torch.equal(torch.tensor(summary["attack"]["margin"]), ours.margin)
    assert summary["description"]["findings"][0]["text"] == ours.describe().text("zh")
    assert "改变了" in (out / "index.html").read_text(encoding="utf-8")


# ---------------------------------------------------------------------- evaluate


def test_evaluate_the_fashion_cnn_equals_the_library(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from seethrough.data.fashion_mnist import load_fashion_mnist
    from seethrough.models import load_model
    from seethrough.reporting.serialize import to_jsonable
    from seethrough.robust import evaluate

    out = tmp_path / "out"
    result = run_cli(
        capsys, "robust", "evaluate", "--limit", "64", "--steps", "2", "--eps", "0.05,1/10",
        "--transfer-from", "fashion-cnn", "--device", "cpu", "--lang", "zh", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert sorted(tree(out)) == ["evaluate.json", "index.html", "robust-accuracy.png"]
    summary = json.loads((out / "evaluate.json").read_text(encoding="utf-8"))
    assert summary["model"] == "fashion-cnn" and summary["data"] == "fashion-mnist:test"
    net = load_model("fashion-cnn")
    test = load_fashion_mnist("test")
    report = evaluate(
        net, (test.inputs(0, 64), test.labels[:64]), eps=[0.05, 0.1], eps_space="pixels",
        steps=2, transfer_from=load_model("fashion-cnn"),
    )  # fmt: skip
    assert summary["report"] == to_jsonable(report)
    assert summary["report"]["masking_suspected"] is False and report.warnings == ()
    assert summary["report"]["n"] == 64 and summary["report"]["eps"] == [0.05, 0.1]
    # the same model as its own transfer source: the same examples, so exactly as accurate
    transfer = [c for c in summary["report"]["checks"] if c["name"] == "transfer"]
    assert [(c["gained"], c["lost"], c["passed"]) for c in transfer] == [(0, 0, True)] * 2
    assert [f["text"] for f in summary["description"]["findings"]] == report.describe().sentences(
        "zh"
    )
    page = (out / "index.html").read_text(encoding="utf-8")
    robust = summary["report"]["robust_accuracy"][1]
    assert f"{robust['estimate']:.3f}" in page and "Checks for gradient masking" in page
    assert "在 PGD" in page  # the sentences, in Chinese
    assert f"ε = 0.1: robust accuracy {report.robust_accuracy[1].format(3)}" in result.err


def test_evaluation_data_matches_the_models_preprocessing(tmp_path: Path, assets: Path) -> None:
    """A Fashion-MNIST split goes to the Fashion-MNIST CNN as it was trained on; a folder of
    class subfolders goes through the model's own preprocessing, cut to the limit."""
    from seethrough.data.fashion_mnist import load_fashion_mnist
    from seethrough.jobs.robust import evaluation_data
    from seethrough.models import load_model

    net = load_model("fashion-cnn")
    data = evaluation_data(net, "fashion-mnist:train", 5)
    train = load_fashion_mnist("train")
    assert torch.equal(data.inputs, train.inputs(0, 5)) and torch.equal(
        data.labels, train.labels[:5]
    )
    folder = tmp_path / "data"
    for name in ("Sandal", "3"):
        (folder / name).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (28, 28), 60 * i).save(folder / name / f"{i}.png")
    data = evaluation_data(net, str(folder), 3)
    assert data.labels.tolist() == [3, 3, 5] and data.inputs.shape == (3, 1, 28, 28)


def test_perturbation_display_maps_no_change_to_grey_and_the_largest_to_the_ends() -> None:
    """Hand-computed: δ = +0.1 at one pixel and −0.05 at another (input units, no
    transform) is amplified ×5: the pixels show 1.0 and 0.25, every other one 0.5."""
    from seethrough.viz import perturbation_display

    x = torch.zeros(1, 1, 2, 2)
    adv = x.clone()
    adv[0, 0, 0, 0], adv[0, 0, 1, 1] = 0.1, -0.05
    pictures, factors = perturbation_display(x, adv)
    assert factors.tolist() == pytest.approx([5.0])
    expected = np.array([[1.0, 0.5], [0.5, 0.25]])[..., None].repeat(3, axis=2)
    np.testing.assert_allclose(pictures[0], expected, atol=1e-6)
    unchanged, factors = perturbation_display(x, x)
    assert factors.tolist() == [0.0] and np.all(unchanged == 0.5)


# ---------------------------------------------------------------------- compare

TWO = "plain=fashion-cnn,copy=fashion-cnn"  # one model under two names (two loads)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--models", "fashion-cnn"], "--models 'fashion-cnn' names one model"),
        (["--models", "fashion-cnn,fashion-cnn"], "--models names 'fashion-cnn' twice"),
        (["--models", "a=fashion-cnn,"], "--models 'a=fashion-cnn,' has an empty item"),
        (["--models", "=fashion-cnn,b=fashion-cnn"], "--models item '=fashion-cnn': give NAME"),
        (["--models", "a=fashion-cnn,nonexistent-net"], "unknown model 'nonexistent-net'"),
        (["--methods", "gradient,gradiant"], "unknown method 'gradiant'; did you mean"),
        (["--methods", "gradient,gradient"], "--methods names 'gradient' twice"),
        (["--fragility-eps", "-1"], "--fragility-eps '-1': '-1' is not a non-negative"),
        (["--fragility-eps", "0.1,0.2"], "--fragility-eps takes one radius, got 2"),
        (["--fragility-method", "gradiant"], "unknown fragility method 'gradiant'"),
        (["--training-eps", "robust=0.1"], "--training-eps names 'robust', not a model"),
        (["--training-eps", "plain"], "--training-eps item 'plain' is not NAME=EPS"),
        (["--training-eps", "plain=-2"], "'-2' is not a non-negative number"),
        (["--judge", "nonexistent-net"], "unknown model 'nonexistent-net'"),
        (["--data", "nowhere"], "--data 'nowhere': not 'fashion-mnist[:test|train]'"),
        (["--limit", "0"], "Invalid value for '--limit'"),
        (["--resamples", "0"], "Invalid value for '--resamples'"),
        (["--lang", "fr"], "Invalid value for '--lang'"),
        # refused by the library inside the job, after the folder was taken: removed again
        (["--models", "fashion-cnn,efficientnet-lite0"], "take differently preprocessed inputs"),
    ],
)
def test_compare_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    args = ["robust", "compare", "--models", TWO, "--device", "cpu", "--limit", "4"]
    result = run_cli(capsys, *args, *extra, "--out", str(out))
    assert result.code == 2, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert "Traceback" not in result.err
    assert not out.exists()


def test_compare_help_imports_no_heavy_module_and_names_match_the_library() -> None:
    import inspect

    code = (
        "from seethrough.cli import main\n"
        "assert main(['robust', 'compare', '--help']) == 0\n"
        "assert main(['robust', 'compare', '--models', 'a']) == 2\n"
    )
    assert _imported_after(code) == []
    from seethrough import robust
    from seethrough.cli import robust as cli_robust

    default = inspect.signature(robust.compare).parameters["methods"].default
    assert tuple(cli_robust.COMPARE_METHODS) == tuple(default)
    assert sorted(cli_robust.FRAGILITY_METHODS) == sorted(robust.FRAGILITY_METHODS)


def test_known_training_eps_of_the_built_in_fashion_cnns(assets: Path) -> None:
    from types import SimpleNamespace
    from typing import Any

    from seethrough.jobs.robust import known_training_eps
    from seethrough.models import load_model
    from seethrough.models.fashion_cnn import packaged_weights

    def fake(name: str, source: str | None = None) -> Any:
        return SimpleNamespace(name=name, source=source or name)

    assert known_training_eps(load_model("fashion-cnn")) == 0.0
    # the architecture with the user's own weights: not the shipped training
    assert known_training_eps(load_model("fashion-cnn", weights=packaged_weights())) is None
    assert [
        known_training_eps(fake(n))
        for n in ("fashion-cnn-robust", "fashion-cnn-pgd-0.05", "fashion-cnn-pgd-0.2")
    ] == [0.1, 0.05, 0.2]
    assert known_training_eps(fake("fashion-cnn-gradreg")) is None
    assert known_training_eps(fake("efficientnet-lite0")) is None


def _without_seconds(comparison: dict[str, object]) -> dict[str, object]:
    settings = dict(comparison["settings"])  # type: ignore[call-overload]
    settings.pop("seconds")
    return {**comparison, "settings": settings}


def test_compare_writes_the_librarys_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cheap parts only (gradient maps, accuracy, alignment, edges, deletion and
    insertion), in Chinese: the JSON is the library's ``to_dict()`` on the same images."""
    from seethrough.data.fashion_mnist import load_fashion_mnist
    from seethrough.models import load_model
    from seethrough.reporting.serialize import to_jsonable
    from seethrough.robust import compare

    out = tmp_path / "out"
    result = run_cli(
        capsys, "robust", "compare", "--models", TWO, "--methods", "gradient", "--limit", "8",
        "--no-sanity", "--no-max-sensitivity", "--no-activation-maximization",
        "--resamples", "200", "--seed", "3", "--training-eps", "copy=0.25",
        "--device", "cpu", "--lang", "zh", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert sorted(tree(out)) == ["alignment.png", "compare.json", "index.html", "maps-gradient.png"]
    summary = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert sorted(summary["files"]) == sorted(tree(out))
    assert summary["models"] == ["plain", "copy"] and summary["sources"] == ["fashion-cnn"] * 2
    assert summary["training_eps"] == {"plain": 0.0, "copy": 0.25}  # given beats known
    assert summary["fragility"] == {} and summary["judge"] is None
    test = load_fashion_mnist("test")
    study = compare(
        [load_model("fashion-cnn"), load_model("fashion-cnn")], test.inputs(0, 8),
        test.labels[:8], methods=["gradient"], names=["plain", "copy"], sanity=False,
        max_sensitivity=False, activation_maximization=False, resamples=200, seed=3,
    )  # fmt: skip
    assert _without_seconds(summary["comparison"]) == _without_seconds(to_jsonable(study.to_dict()))
    assert [f["text"] for f in summary["description"]["findings"]] == study.describe().sentences(
        "zh"
    )
    page = (out / "index.html").read_text(encoding="utf-8")
    alignment = summary["comparison"]["models"][0]["alignment"]
    assert f"{alignment['value']:.3f} [{alignment['low']:.3f}, {alignment['high']:.3f}]" in page
    assert "Sanity curves" not in page and "Explanation fragility" not in page
    assert f"plain: clean accuracy {study.models[0].clean_accuracy.format(3)}" in result.err


@pytest.mark.slow  # ~90 s on 2 busy cores: the whole study twice, with the fragility attack
def test_compare_with_judge_and_fragility_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from browser import check_page
    from seethrough.data.fashion_mnist import load_fashion_mnist
    from seethrough.models import load_model
    from seethrough.reporting.serialize import to_jsonable
    from seethrough.robust import compare, fragility

    out = tmp_path / "out"
    result = run_cli(
        capsys, "robust", "compare", "--models", TWO, "--methods", "gradient,grad_cam",
        "--limit", "16", "--judge", "fashion-cnn", "--fragility-eps", "1/20",
        "--device", "cpu", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert sorted(tree(out)) == [
        "alignment.png",
        "class-images.png",
        "compare.json",
        "fragility.png",
        "fragility.safetensors",
        "index.html",
        "maps-grad_cam.png",
        "maps-gradient.png",
    ]
    summary = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    test = load_fashion_mnist("test")
    x, y = test.inputs(0, 16), test.labels[:16]
    nets = [load_model("fashion-cnn"), load_model("fashion-cnn")]
    study = compare(
        nets, x, y, methods=["gradient", "grad_cam"], names=["plain", "copy"],
        judge=load_model("fashion-cnn"),
    )  # fmt: skip
    assert _without_seconds(summary["comparison"]) == _without_seconds(to_jsonable(study.to_dict()))
    assert summary["comparison"]["models"][0]["recognised"]["n"] == 10  # one image per class
    tensors = load_file(str(out / "fragility.safetensors"))
    for name, net in zip(("plain", "copy"), nets, strict=True):
        ours = fragility(net, x, eps=0.05, eps_space="pixels", labels=y, seed=0)
        row = summary["fragility"][name]
        assert row["top_k_intersection"] == ours.top_k_intersection.tolist()
        assert row["median_intersection"] == ours.median_intersection
        assert row["labels_kept"] == 16 and row["settings"]["eps"] == 0.05
        assert torch.equal(tensors[f"{name}/adversarial"], ours.adversarial)
        assert torch.equal(tensors[f"{name}/maps"], ours.maps)
        said = summary["fragility_description"][name]["findings"]
        assert [f["text"] for f in said] == ours.describe().sentences("en")
    check = check_page(out / "index.html", screenshot="pages-robust-compare.png")
    assert check.console_errors == () and check.outside() == () and check.broken_images == ()
    assert check.serious_violations == () and check.scripts == 0
    assert check.images == 5  # two map figures, alignment, class images, fragility
    plain = summary["fragility"]["plain"]
    assert f"{plain['median_intersection']:.3f}" in check.text
    assert summary["description"]["findings"][0]["text"] in check.text
    assert "Sanity curves" in check.text
