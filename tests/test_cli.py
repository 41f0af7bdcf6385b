"""The ``seethrough`` command line: bad input, happy paths, interruption, output folders.

Most runs use a tiny classifier built by ``--factory`` from a module written into a
temporary folder; the real EfficientNet-Lite0 is used where its predictions matter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
import sys
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import seethrough
import seethrough.jobs.explain as explain_job
from seethrough.attribution.method import METHODS
from seethrough.cli import main
from seethrough.cli._shared import resolve_device
from seethrough.data import DEFAULT_SAMPLES

TINY_MODULE = "seethrough_cli_test_tinynet"
TINY_LABELS = ["tabby cat", "tiger cat", "dog", "bird", "<b>fish</b>"]
TINY_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU(),
                nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(6, 5)

        def forward(self, x):
            return self.fc(self.pool(self.features(x)).flatten(1))


    class Flaky(TinyNet):
        '''Raises in its third forward call: with --batch-size 1, the second image.'''

        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls >= 3:
                raise RuntimeError("boom in the model's forward")
            return super().forward(x)


    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(3, 2)


    def build():
        return TinyNet()


    def build_flaky():
        return Flaky()


    def build_raises():
        raise RuntimeError("no config for this net")


    class Broken(TinyNet):
        # Its logits are NaN for every image after the first (a diverged model).
        def forward(self, x):
            out = super().forward(x)
            bad = torch.arange(len(x), device=x.device) >= 1
            return torch.where(bad[:, None], torch.full_like(out, float("nan")), out)


    def build_broken():
        return Broken()
    """
)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's module, weights, labels, and a few image files."""
    folder = tmp_path_factory.mktemp("assets")
    (folder / f"{TINY_MODULE}.py").write_text(TINY_SOURCE)
    namespace: dict[str, object] = {}
    exec(TINY_SOURCE, namespace)
    torch.manual_seed(0)
    tiny = namespace["TinyNet"]()  # type: ignore[operator]
    save_file(tiny.state_dict(), str(folder / "tiny.safetensors"))
    save_file(namespace["Other"]().state_dict(), str(folder / "other.safetensors"))  # type: ignore[operator]
    (folder / "labels.txt").write_text("\n".join(TINY_LABELS) + "\n")
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        pixels = rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{name}.png")
    return folder


@pytest.fixture
def tiny(assets: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Model options for the tiny classifier (its module importable for this test)."""
    monkeypatch.syspath_prepend(str(assets))
    return [
        "--factory",
        f"{TINY_MODULE}:build",
        "--weights",
        str(assets / "tiny.safetensors"),
        "--labels",
        str(assets / "labels.txt"),
        "--device",
        "cpu",
    ]


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    code = main(list(args))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# ---------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit code 2, no traceback, nothing written.


@dataclass
class Env:
    tmp: Path
    assets: Path
    tiny: list[str]
    out: Path

    @property
    def image(self) -> str:
        return str(self.assets / "a.png")

    def file(self, name: str, data: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(data)
        return str(path)


@pytest.fixture
def env(tmp_path: Path, assets: Path, tiny: list[str]) -> Env:
    return Env(tmp=tmp_path, assets=assets, tiny=tiny, out=tmp_path / "out")


Case = Callable[[Env], tuple[list[str], str]]


def _truncated_png(env: Env) -> tuple[list[str], str]:
    data = (env.assets / "a.png").read_bytes()
    return [env.file("cut.png", data[: len(data) // 2]), *env.tiny], "is truncated or corrupt"


def _no_images(env: Env) -> tuple[list[str], str]:
    folder = env.tmp / "texts"
    folder.mkdir()
    (folder / "notes.txt").write_text("no pictures here")
    return [str(folder), *env.tiny], "contains no image files"


def _pickle(env: Env) -> tuple[list[str], str]:
    import seethrough_cli_test_tinynet as tinynet  # type: ignore[import-not-found]

    path = env.tmp / "whole_model.pt"
    torch.save(tinynet.TinyNet(), path)
    return [env.image, "--model", str(path), "--device", "cpu"], "--allow-pickle"


def _pickle_protocol_4(env: Env) -> tuple[list[str], str]:
    """torch warns about protocol 4 before refusing: that warning was a second line."""
    import seethrough_cli_test_tinynet as tinynet  # type: ignore[import-not-found]

    path = env.tmp / "protocol4.pt"
    torch.save(tinynet.TinyNet(), path, pickle_protocol=4)
    return [env.image, "--model", str(path), "--device", "cpu"], "--allow-pickle"


def _factory_raises(env: Env) -> tuple[list[str], str]:
    raising = [*env.tiny[:1], f"{TINY_MODULE}:build_raises", *env.tiny[2:]]
    return [env.image, *raising], (
        f"factory '{TINY_MODULE}:build_raises' raised RuntimeError: no config for this net"
    )


def _factory_syntax_error(env: Env) -> tuple[list[str], str]:
    (env.assets / "seethrough_cli_test_broken.py").write_text("def build(:\n    pass\n")
    broken = [*env.tiny[:1], "seethrough_cli_test_broken:build", *env.tiny[2:]]
    return [env.image, *broken], "cannot import module 'seethrough_cli_test_broken'"


def _existing_folder(env: Env) -> tuple[list[str], str]:
    env.out.mkdir()
    (env.out / "keep.txt").write_text("mine")
    return [env.image, *env.tiny], "pass --force"


def _existing_file(env: Env) -> tuple[list[str], str]:
    env.out.write_text("a file, not a folder")
    return [env.image, *env.tiny], "is a file; choose a folder for --out"


def _parent_is_file(env: Env) -> tuple[list[str], str]:
    (env.tmp / "plain").write_text("x")
    args = [env.image, *env.tiny, "--out", str(env.tmp / "plain" / "out")]
    return args, "is a file, not a folder"


def _wrong_label_count(env: Env) -> tuple[list[str], str]:
    labels = env.file("three.txt", b"x\ny\nz\n")
    args = [env.image, *env.tiny[:4], "--labels", labels, "--device", "cpu"]
    return args, "got 3 labels but"


def _latin1_labels(env: Env) -> tuple[list[str], str]:
    labels = env.file("latin1.txt", "\n".join([*TINY_LABELS[:4], "café"]).encode("latin-1"))
    args = [env.image, *env.tiny[:4], "--labels", labels, "--device", "cpu"]
    return args, f"labels file {labels!r} is not UTF-8 text (unexpected end of data at byte 32)"


BAD_INPUTS: dict[str, Case] = {
    "missing image file": lambda e: ([str(e.tmp / "nope.png"), *e.tiny], "no such file"),
    "corrupt image": lambda e: (
        [e.file("junk.png", b"these bytes are not an image at all"), *e.tiny],
        "is not an image PIL can read",
    ),
    "empty image file": lambda e: ([e.file("empty.jpg", b""), *e.tiny], "is empty (0 bytes)"),
    "truncated png": _truncated_png,
    "folder without images": _no_images,
    "unknown sample": lambda e: (["sample:chelsae", *e.tiny], "did you mean 'chelsea'"),
    "unknown method": lambda e: (
        [e.image, *e.tiny, "--methods", "gradient,gradcam"],
        "did you mean 'grad_cam'",
    ),
    "empty methods": lambda e: ([e.image, *e.tiny, "--methods", " , "], "--methods is empty"),
    "method twice": lambda e: (
        [e.image, *e.tiny, "--methods", "gradient,gradient"],
        "'gradient' twice",
    ),
    "unknown --set option": lambda e: (
        [e.image, *e.tiny, "--methods", "integrated_gradients", "--set", "stpes=8"],
        "option 'stpes'; did you mean 'steps'?",
    ),
    "--set without =": lambda e: (
        [e.image, *e.tiny, "--set", "steps"],
        "expected KEY=VALUE or METHOD.KEY=VALUE",
    ),
    "--set bad value": lambda e: (
        [e.image, *e.tiny, "--methods", "integrated_gradients", "--set", "steps=[8,"],
        "steps must be a positive integer, got '[8,'",
    ),
    "--set a number as text": lambda e: (
        [e.image, *e.tiny, "--methods", "smoothgrad", "--set", "noise=abc"],
        "smoothgrad: noise must be non-negative (a finite number), got 'abc' (str)",
    ),
    "--set a huge count": lambda e: (  # the tester's case: an OverflowError traceback
        [e.image, *e.tiny, "--methods", "smoothgrad", "--set", f"samples={10**30}"],
        "smoothgrad: samples must be a positive integer",
    ),
    "a huge target": lambda e: (
        [e.image, *e.tiny, "--target", str(10**23)],
        "is out of range: no model has that many classes",
    ),
    "an unknown class name": lambda e: (
        [e.image, *e.tiny, "--target", "1.5"],
        "unknown class name '1.5'; give a class index 0–4 or one of the 5 names",
    ),
    "an empty --out": lambda e: (
        [e.image, *e.tiny, "--out", ""],
        "the output folder (--out) is empty; name a folder",
    ),
    "--set nan": lambda e: (
        [e.image, *e.tiny, "--methods", "smoothgrad", "--set", "noise=nan"],
        "smoothgrad: noise must be non-negative (a finite number), got 'nan'",
    ),
    "--set infinity": lambda e: (
        [e.image, *e.tiny, "--methods", "smoothgrad", "--set", "smoothgrad.noise=1e999"],
        "smoothgrad: noise must be non-negative (a finite number), got inf",
    ),
    "--set tolerance as text": lambda e: (
        [e.image, *e.tiny, "--methods", "integrated_gradients", "--set", "tolerance=abc"],
        "integrated_gradients: tolerance must be in (0, 1) (a finite number), got 'abc'",
    ),
    "--set for a method not chosen": lambda e: (
        [e.image, *e.tiny, "--methods", "gradient", "--set", "grad_cam.relu=true"],
        "method 'grad_cam' is not among --methods",
    ),
    "unknown layer": lambda e: (
        [e.image, *e.tiny, "--methods", "grad_cam", "--layer", "featurs.2"],
        "no layer 'featurs.2' in TinyNet; did you mean 'features.2'",
    ),
    "--layer without a CAM method": lambda e: (
        [e.image, *e.tiny, "--methods", "gradient", "--layer", "features.2"],
        "--layer is only used by CAM methods",
    ),
    "unknown layer among several": lambda e: (
        [e.image, *e.tiny, "--methods", "layer_cam", "--layer", "features.1,featurs.2"],
        "no layer 'featurs.2' in TinyNet; did you mean 'features.2'",
    ),
    "several layers for guided grad-cam": lambda e: (
        [e.image, *e.tiny, "--methods", "guided_grad_cam", "--layer", "features.1,features.3"],
        "guided_grad_cam takes one layer, got 2",
    ),
    "target out of range": lambda e: (
        [e.image, *e.tiny, "--target", "7"],
        "valid targets are 0 to 4",
    ),
    "negative target": lambda e: ([e.image, *e.tiny, "--target", "-1"], "target -1 is negative"),
    "unknown class name": lambda e: (
        [e.image, *e.tiny, "--target", "tigre cat"],
        "did you mean 'tiger cat'",
    ),
    "targets for the wrong number of images": lambda e: (
        [e.image, *e.tiny, "--target", "1,2"],
        "got 2 targets for 1 images",
    ),
    "top0": lambda e: ([e.image, *e.tiny, "--target", "top0"], "top-k needs k ≥ 1"),
    "cuda without cuda": lambda e: (
        [e.image, *e.tiny[:-2], "--device", "cuda"],
        "no CUDA device is available here",
    ),
    "unknown device": lambda e: ([e.image, "--device", "gpu"], "--device 'gpu' is not a device"),
    "device index not a number": lambda e: (
        [e.image, "--device", "cuda:x"],
        "--device 'cuda:x' is not a device; use auto, cpu, cuda or cuda:N",
    ),
    "cuda:1 without cuda": lambda e: (
        [e.image, *e.tiny[:-2], "--device", "cuda:1"],
        "--device cuda:1: no CUDA device is available here",
    ),
    "out is a non-empty folder": _existing_folder,
    "out is a file": _existing_file,
    "out below a file": _parent_is_file,
    "plain pickle without --allow-pickle": _pickle,
    "protocol-4 pickle without --allow-pickle": _pickle_protocol_4,
    "a factory that raises": _factory_raises,  # the tester's: a 56-line traceback
    "a factory module with a syntax error": _factory_syntax_error,
    "missing model file": lambda e: (
        [e.image, "--model", str(e.tmp / "missing.pt")],
        "no such model file",
    ),
    "unknown model name": lambda e: (
        [e.image, "--model", "efficientnet-lite1"],
        "did you mean 'efficientnet-lite0'",
    ),
    "--factory without weights": lambda e: (
        [e.image, "--factory", f"{TINY_MODULE}:build"],
        "pass --weights FILE",
    ),
    "--factory malformed": lambda e: (
        [e.image, "--factory", "tiny net", "--weights", str(e.assets / "tiny.safetensors")],
        "--factory 'tiny net' is not an import path",
    ),
    "--factory misspelt": lambda e: (
        [
            e.image,
            "--factory",
            f"{TINY_MODULE}:buld",
            "--weights",
            str(e.assets / "tiny.safetensors"),
        ],
        "has no attribute 'buld'; did you mean 'build'",
    ),
    "weights of another model": lambda e: (
        [
            e.image,
            "--factory",
            f"{TINY_MODULE}:build",
            "--weights",
            str(e.assets / "other.safetensors"),
        ],
        "the weights do not fit",
    ),
    "missing labels file": lambda e: (
        [e.image, *e.tiny[:4], "--labels", str(e.tmp / "none.txt")],
        "no such labels file",
    ),
    "labels for another model": _wrong_label_count,
    "labels file not UTF-8": _latin1_labels,
    "state dict without --factory": lambda e: (
        [e.image, "--model", str(e.assets / "tiny.safetensors"), "--device", "cpu"],
        "holds only weights (a state dict); pass --factory 'package.module:callable'",
    ),
    "batch size 0": lambda e: (
        [e.image, *e.tiny, "--batch-size", "0"],
        "'--batch-size': 0 is not in the range x>=1",
    ),
    "seed not an integer": lambda e: (
        [e.image, *e.tiny, "--seed", "one"],
        "'--seed': 'one' is not a valid integer",
    ),
    "unknown option": lambda e: ([e.image, "--metods", "gradient"], "No such option '--metods'"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: str,
    env: Env,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args, fragment = BAD_INPUTS[case](env)
    if "--out" not in args:
        args = [*args, "--out", str(env.out)]
    before = tree(env.tmp) if env.tmp.exists() else {}
    out_before = env.out.exists()

    result = run_cli(capsys, "explain", *args)

    assert result.code == 2
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("seethrough: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.err
    assert env.out.exists() == out_before
    assert tree(env.tmp) == before  # nothing written, nothing left, nothing changed


def test_error_messages_name_the_fix(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out", str(tmp_path / "out")]
    unknown = run_cli(capsys, "explain", "--methods", "gradint", *out)
    assert "(valid: gradient, gradient_x_input, integrated_gradients," in unknown.err
    assert "see 'seethrough methods'" in unknown.err
    option = run_cli(capsys, "explain", "--methods", "grad_cam", "--set", "relux=1", *out)
    assert option.err.rstrip().endswith("(options: layer, relu)")
    usage = run_cli(capsys, "explain", "--bogus")
    assert usage.err.rstrip().endswith("see 'seethrough explain --help'")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# The real model on one bundled photo.


@dataclass
class RealRun:
    code: int
    stdout: str
    stderr: str
    out: Path


@pytest.fixture(scope="module")
def chelsea(tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    out = tmp_path_factory.mktemp("chelsea") / "report"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(
            ["explain", "sample:chelsea", "--methods", "gradient,grad_cam", "--out", str(out), "-q"]
        )
    return RealRun(code, stdout.getvalue(), stderr.getvalue(), out)


def test_explain_writes_exactly_the_report_files(chelsea: RealRun) -> None:
    assert chelsea.code == 0
    assert chelsea.stderr == ""  # -q: no progress bars, no notes
    assert chelsea.stdout == f"wrote 4 files to {chelsea.out} (open {chelsea.out / 'index.html'})\n"
    assert sorted(p.name for p in chelsea.out.iterdir()) == [
        "attributions.safetensors",
        "chelsea.png",
        "index.html",
        "summary.json",
    ]  # no staging folder left either (iterdir lists hidden entries)


def test_figure_is_a_legible_png(chelsea: RealRun) -> None:
    with Image.open(chelsea.out / "chelsea.png") as image:
        assert image.format == "PNG"
        # 3 panels (input, gradient, grad_cam) of 2.6 in, one line of 2.95 in + 0.3 in, 110 dpi
        assert image.size == (858, 357)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 5000  # a photo and heatmaps, not a blank canvas
    reds = (pixels[:, 0] > 150) & (pixels[:, 1] < 80) & (pixels[:, 2] < 80)
    assert reds.sum() > 1000  # grad_cam's positive evidence, in the diverging map's red


def test_saved_attributions_equal_a_direct_explain_call(chelsea: RealRun) -> None:
    saved = load_file(str(chelsea.out / "attributions.safetensors"))
    assert set(saved) == {
        "inputs",
        *(
            f"{m}.{k}"
            for m in ("gradient", "grad_cam")
            for k in ("attributions", "targets", "image_index")
        ),
    }
    net = seethrough.load_model("efficientnet-lite0")
    x = net.preprocess(seethrough.load_images(["sample:chelsea"]))
    assert torch.equal(saved["inputs"], x)
    direct = seethrough.explain(net, x, ["gradient", "grad_cam"])
    for ex in direct:
        # Same model, input and batch in the same CPU process: the same operations, so the
        # numbers are bitwise equal (tolerance zero), not merely close.
        torch.testing.assert_close(
            saved[f"{ex.method}.attributions"], ex.attributions, rtol=0, atol=0
        )
        assert saved[f"{ex.method}.targets"].tolist() == [282]
        assert saved[f"{ex.method}.image_index"].tolist() == [0]
    assert saved["grad_cam.attributions"].shape == (1, 1, 7, 7)


def test_summary_records_the_prediction(chelsea: RealRun) -> None:
    summary = json.loads((chelsea.out / "summary.json").read_text(encoding="utf-8"))
    assert summary["model"] == "efficientnet-lite0"
    assert summary["seed"] == 0
    image = summary["images"][0]
    assert (image["name"], image["source"]) == ("chelsea", "sample:chelsea")
    best = image["predictions"][0]
    assert (best["index"], best["class"]) == (282, "tiger cat")
    assert len(image["predictions"]) == 5
    assert [m["method"] for m in summary["methods"]] == ["gradient", "grad_cam"]
    for method in summary["methods"]:
        (row,) = method["rows"]
        assert (row["image"], row["target"], row["target_name"]) == (
            "chelsea",
            282,
            "tiger cat (282)",
        )
    assert summary["methods"][1]["layer"] == "_act_head"
    assert summary["files"] == sorted(p.name for p in chelsea.out.iterdir())


def test_index_html_shows_the_run(chelsea: RealRun) -> None:
    page = (chelsea.out / "index.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert '<img src="chelsea.png" alt="chelsea explanations">' in page
    assert "<td>tiger cat (282)</td>" in page
    assert "<p>Explained: tiger cat (282)</p>" in page


# ---------------------------------------------------------------------------------------------
# The tiny model: escaping, defaults, all methods, progress, --force, failures, Ctrl-C.


def test_layers_of_a_factory_model(tiny: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "layers", *tiny)
    assert result.code == 0
    assert [line.split() for line in result.out.splitlines()[1:]] == [
        ["features.0", "Conv2d", "1×4×56×56"],
        ["features.1", "ReLU", "1×4×56×56"],
        ["features.2", "Conv2d", "1×6×28×28"],
        ["features.3", "ReLU", "1×6×28×28"],
        ["features", "Sequential", "1×6×28×28"],
        ["pool", "AdaptiveAvgPool2d", "1×6×1×1"],
        ["fc", "Linear", "1×5"],
    ]


def test_methods_lists_every_method_with_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "methods")
    assert result.code == 0
    names = [line.split()[0] for line in result.out.splitlines() if not line.startswith(" ")]
    assert names == list(seethrough.method_names())
    ig = seethrough.IntegratedGradients()
    assert f"options: steps={ig.steps}, rule={ig.rule!r}, tolerance={ig.tolerance}," in result.out
    assert "options: base='gradient', base_options={}, samples=" in result.out
    assert "options: layer=None, relu=False\n" in result.out  # grad_cam
    lines = result.out.splitlines()
    assert lines[0].split()[0] == "gradient"
    assert lines[1].split()[0] == "gradient_x_input"  # a method without options: no options line
    # one options line per method that has options
    with_options = [n for n in seethrough.method_names() if dataclasses.fields(METHODS[n])]
    assert result.out.count("options:") == len(with_options) >= 4


def test_help_version_and_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    bare = run_cli(capsys)
    assert bare.code == 0
    assert "Commands:" in bare.out
    assert "explain" in bare.out
    help_ = run_cli(capsys, "explain", "--help")
    assert help_.code == 0
    assert "--device DEVICE" in help_.out
    assert "cuda or cuda:N" in help_.out
    version = run_cli(capsys, "--version")
    assert (version.code, version.out) == (0, f"seethrough, version {seethrough.__version__}\n")


def test_html_escapes_image_names_sources_and_labels(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "<script>alert(1)<"
    folder.mkdir()
    image = folder / "script><img src=x onerror=alert(1)>.png"
    shutil.copy(assets / "a.png", image)
    out = tmp_path / "out"

    result = run_cli(
        capsys, "explain", str(image), *tiny, "--methods", "gradient", "-q", "--out", str(out)
    )

    assert result.code == 0, result.err
    page = (out / "index.html").read_text(encoding="utf-8")
    for raw in ("<script>", "<img src=x", "<b>fish</b>"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;.png" in page
    assert "<h2>script&gt;&lt;img src=x onerror=alert(1)&gt; " in page
    assert "&lt;b&gt;fish&lt;/b&gt; (4)" in page  # a label among the top predictions
    figure = "script_img_src_x_onerror_alert_1.png"
    assert f'<img src="{figure}"' in page
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["attributions.safetensors", figure, "index.html", "summary.json"]
    )
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["images"][0]["name"] == "script><img src=x onerror=alert(1)>"


def test_no_images_explains_the_bundled_photos(
    tmp_path: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    result = run_cli(capsys, "explain", *tiny, "--methods", "gradient", "-q", "--out", str(out))
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{name}.png" for name in DEFAULT_SAMPLES]
        + ["attributions.safetensors", "index.html", "summary.json"]
    )
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [im["source"] for im in summary["images"]] == [f"sample:{s}" for s in DEFAULT_SAMPLES]


def test_all_methods_with_per_method_settings(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    result = run_cli(
        capsys,
        "explain",
        str(assets / "a.png"),
        *tiny,
        "--methods",
        "all",
        "-q",
        "--set",
        "integrated_gradients.rule=gausslegendre",
        "--set",
        "steps=4",
        "--set",
        "smoothgrad.samples=2",
        "--target",
        "tiger cat",
        "--out",
        str(out),
    )
    assert result.code == 0, result.err
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    methods = {m["method"]: m for m in summary["methods"]}
    assert list(methods) == list(seethrough.method_names())
    assert methods["integrated_gradients"]["settings"]["steps"] == 4
    assert methods["integrated_gradients"]["settings"]["rule"] == "gausslegendre"
    assert methods["smoothgrad"]["settings"]["samples"] == 2
    assert {m["rows"][0]["target_name"] for m in methods.values()} == {"tiger cat (1)"}
    saved = load_file(str(out / "attributions.safetensors"))
    for name in seethrough.method_names():
        layer_map = METHODS[name].resolution == "layer"  # CAMs: the layer's 28×28 map
        expected = (1, 1, 28, 28) if layer_map else (1, 3, 224, 224)
        assert saved[f"{name}.attributions"].shape == expected, name


def test_progress_bars_on_stderr_unless_quiet(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["explain", str(assets / "a.png"), *tiny, "--methods", "gradient,grad_cam"]
    loud = run_cli(capsys, *args, "--out", str(tmp_path / "loud"))
    assert loud.code == 0
    # Not a terminal: click prints each bar's label once; the two methods share one pass.
    assert [line.split()[0] for line in loud.err.splitlines()] == [
        "gradient,",
        "figures",
        "grad_cam:",
    ]
    assert loud.err.startswith("gradient, grad_cam")
    assert "grad_cam: layer features" in loud.err
    quiet = run_cli(capsys, *args, "--out", str(tmp_path / "quiet"), "-q")
    assert (quiet.code, quiet.err) == (0, "")


def test_force_replaces_the_previous_results_only_after_success(
    tmp_path: Path,
    assets: Path,
    tiny: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    args = [*tiny, "--methods", "gradient", "-q", "--out", str(out)]
    first = run_cli(capsys, "explain", str(assets / "a.png"), str(assets / "b.png"), *args)
    assert first.code == 0
    (out / "my-notes.txt").write_text("the user's own file")
    before = tree(out)

    def fail(*_: object, **__: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(explain_job, "save_figure", fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(["explain", str(assets / "c.png"), *args, "--force"])
    assert tree(out) == before  # a failed --force run changes nothing
    monkeypatch.undo()
    monkeypatch.syspath_prepend(str(assets))

    again = run_cli(capsys, "explain", str(assets / "c.png"), *args, "--force")
    assert again.code == 0, again.err
    # a.png and b.png were the previous run's: replaced; the user's file is kept.
    assert sorted(p.name for p in out.iterdir()) == [
        "attributions.safetensors",
        "c.png",
        "index.html",
        "my-notes.txt",
        "summary.json",
    ]
    assert (out / "my-notes.txt").read_text() == "the user's own file"
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [im["name"] for im in summary["images"]] == ["c"]


def test_failure_inside_the_model_leaves_no_output(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new" / "out"
    flaky = [*tiny[:1], f"{TINY_MODULE}:build_flaky", *tiny[2:]]
    with pytest.raises(RuntimeError, match="boom in the model's forward"):
        main(
            [
                "explain",
                str(assets / "a.png"),
                str(assets / "b.png"),
                *flaky,
                "--methods",
                "gradient",
                "--batch-size",
                "1",
                "-q",
                "--out",
                str(out),
            ]
        )
    assert not (tmp_path / "new").exists()
    assert capsys.readouterr().out == ""


def _strict_json(text: str) -> Any:
    """``json.loads`` that refuses ``NaN``/``Infinity``, as strict parsers do."""

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_a_model_with_nan_outputs_is_an_error_naming_the_rows(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18 #3: it used to succeed with blank maps, "score nan" and a bare NaN in
    summary.json."""
    out = tmp_path / "new" / "out"
    broken = [*tiny[:1], f"{TINY_MODULE}:build_broken", *tiny[2:]]
    images = [str(assets / "a.png"), str(assets / "b.png")]
    args = ["--methods", "gradient", "-q", "--out", str(out)]
    result = run_cli(capsys, "explain", *images, *broken, *args)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err
    assert lines[0].startswith("seethrough: error: gradient: the model's target score is not")
    assert "rows [1]" in lines[0] and "--nonfinite warn" in lines[0]
    assert not (tmp_path / "new").exists()


def test_a_model_with_nan_outputs_can_be_marked_and_the_json_stays_valid(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    broken = [*tiny[:1], f"{TINY_MODULE}:build_broken", *tiny[2:]]
    images = [str(assets / "a.png"), str(assets / "b.png")]
    args = ["--methods", "gradient,grad_cam", "--nonfinite", "warn", "-q", "--out", str(out)]
    result = run_cli(capsys, "explain", *images, *broken, *args)
    assert result.code == 0, result.err
    warned = result.err.strip().splitlines()
    assert len(warned) == 2  # one warning line per method, naming the rows
    assert all(w.startswith("seethrough: warning: ") and "rows [1]" in w for w in warned)
    summary = _strict_json((out / "summary.json").read_text(encoding="utf-8"))
    for entry in summary["methods"]:
        assert entry["nonfinite_rows"] == [1]
        good, bad = entry["rows"]
        assert isinstance(good["score"], float) and "nonfinite" not in good
        assert bad["score"] is None and bad["nonfinite"] == ["score"]
    assert "not finite" in (out / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("error", [RuntimeError("bug"), OSError(28, "No space left on device")])
def test_failure_while_writing_removes_every_created_folder(
    error: Exception,
    env: Env,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = explain_job.save_figure
    calls = []

    def second_fails(figure: object, path: Path) -> Path:
        calls.append(path)
        if len(calls) == 2:
            assert path.parent.name.startswith(".partial-")  # written in a staging folder
            raise error
        return real(figure, path)  # type: ignore[arg-type]

    monkeypatch.setattr(explain_job, "save_figure", second_fails)
    out = env.tmp / "new" / "deeper" / "out"
    args = [
        "explain",
        str(env.assets / "a.png"),
        str(env.assets / "b.png"),
        *env.tiny,
        "--methods",
        "gradient",
        "-q",
        "--out",
        str(out),
    ]
    if isinstance(error, OSError):
        result = run_cli(capsys, *args)
        assert result.code == 2
        assert result.err == (
            f"seethrough: error: cannot write to output folder {out}: No space left on device\n"
        )
    else:
        with pytest.raises(RuntimeError, match="bug"):
            main(args)
    assert len(calls) == 2
    assert not (env.tmp / "new").exists()


@pytest.mark.parametrize("where", ["computing", "writing"])
def test_ctrl_c_exits_130_and_leaves_nothing(
    where: str,
    env: Env,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupt(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    target = explain_job.save_figure if where == "writing" else explain_job._top_predictions
    monkeypatch.setattr(explain_job, target.__name__, interrupt)
    existing = env.tmp / "existing"
    existing.mkdir()
    (existing / "old.txt").write_text("kept")
    for out in (env.tmp / "fresh", existing):
        result = run_cli(
            capsys,
            "explain",
            str(env.assets / "a.png"),
            *env.tiny,
            "--methods",
            "gradient",
            "-q",
            "--force",
            "--out",
            str(out),
        )
        assert result.code == 130
        assert result.err.splitlines()[-1] == (
            "seethrough: error: interrupted; the output folder keeps the report of the "
            "steps finished so far, if any"
        )
        assert "Traceback" not in result.err
    assert not (env.tmp / "fresh").exists()
    assert tree(existing) == {"old.txt": b"kept"}


def test_device_beyond_the_machines_gpus_is_one_line(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    args = [env.image, *env.tiny[:-2], "--device", "cuda:1", "--out", str(env.out)]
    result = run_cli(capsys, "explain", *args)
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        "seethrough: error: --device cuda:1: no such CUDA device; this machine has 1 (cuda:0)\n"
    )
    assert not env.out.exists()


def test_device_names_a_gpu_by_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [resolve_device(d) for d in ("cuda:1", "cuda", "auto", "cpu")] == [
        "cuda:1",
        "cuda",
        "cuda",
        "cpu",
    ]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"


def test_factory_module_in_the_current_folder_is_found(
    tmp_path: Path,
    assets: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = "seethrough_cli_test_cwd_factory"
    (tmp_path / f"{name}.py").write_text(TINY_SOURCE)
    monkeypatch.chdir(tmp_path)  # not on sys.path: the console script does not add it
    path = list(sys.path)
    try:
        weights = str(assets / "tiny.safetensors")
        result = run_cli(capsys, "layers", "--factory", f"{name}:build", "--weights", weights)
    finally:
        sys.modules.pop(name, None)
    assert result.code == 0, result.err
    assert result.out.splitlines()[1].split() == ["features.0", "Conv2d", "1×4×56×56"]
    assert sys.path == path  # the current folder was on the import path only while loading


def test_progress_bar_is_full_when_a_method_stops_early(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = click.progressbar
    bars: list[tuple[Any, list[int]]] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        bar = real(*args, **kwargs)
        positions: list[int] = []
        update = bar.update

        def tracked(steps: int, *rest: Any) -> None:
            update(steps, *rest)
            positions.append(bar.pos)

        bar.update = tracked  # type: ignore[method-assign]
        bars.append((bar, positions))
        return bar

    monkeypatch.setattr(click, "progressbar", recording)
    args = [env.image, *env.tiny, "--methods", "integrated_gradients", "--out", str(env.out)]
    result = run_cli(capsys, "explain", *args)
    assert result.code == 0, result.err
    (ig, reported), (figures, _) = bars
    assert ig.label.strip() == "integrated_gradients"
    # The adaptive rule stops before its planned rows; the bar still ends full (the run
    # finished), not at the 52 % that its rows alone would reach.
    assert reported[-1] == ig.pos == ig.length
    assert figures.pos == figures.length == 1


def test_device_auto_runs_on_the_cpu_without_cuda(
    tmp_path: Path,
    assets: Path,
    tiny: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    auto = [*tiny[:-2], "--device", "auto"]
    result = run_cli(
        capsys,
        "explain",
        str(assets / "a.png"),
        *auto,
        "--methods",
        "gradient",
        "-q",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.code == 0, result.err
    assert (tmp_path / "out" / "a.png").is_file()


def test_warnings_and_verbose_logs_are_single_lines(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = explain_job._top_predictions

    def warn_first(*args: Any, **kwargs: Any) -> Any:
        warnings.warn("a library warning\nspread over two lines", UserWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(explain_job, "_top_predictions", warn_first)
    args = [env.image, *env.tiny, "-q", "--methods", "grad_cam", "--out", str(env.out)]
    result = run_cli(capsys, "-v", "explain", *args)
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    # Python's format would add the file, line and source; the CLI prints the message only.
    assert "seethrough: warning: a library warning spread over two lines" in lines
    assert any(line.startswith("seethrough: using layer 'features'") for line in lines)  # -v
    assert all(line.startswith("seethrough: ") for line in lines)  # -q: no bars, no notes
    quiet = run_cli(capsys, "explain", *args[:-1], str(env.tmp / "again"))
    assert quiet.err == "seethrough: warning: a library warning spread over two lines\n"


def test_several_layers_are_fused_into_one_map(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    layers = "features.1,features.3"
    args = [str(assets / "a.png"), *tiny, "--methods", "grad_cam", "--layer", layers]
    result = run_cli(capsys, "explain", *args, "-q", "--out", str(out))
    assert result.code == 0, result.err
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["methods"][0]["layer"] == "features.1, features.3"
    saved = load_file(str(out / "attributions.safetensors"))["grad_cam.attributions"]
    assert saved.shape == (1, 1, 224, 224)  # fused at the input's resolution
    # The default rule: each layer's map scaled to max |value| 1, then averaged.
    assert 0 < float(saved.abs().max()) <= 1 + 1e-6 and float(saved.std()) > 0
