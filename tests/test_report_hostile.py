"""Hostile and careless use of the report job, its TensorBoard events and the training
logger: each case a one-line ``SeethroughError`` naming the problem and the fix (exit code
2 on the command line), before any work where it can be, nothing half-written, the user's
model untouched. Found by the attack harness (wave 2 of issue 14); every test here failed
before its fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import seethrough as st
from helpers import Snapshot
from seethrough.cli import main
from seethrough.jobs.anatomy import LabelledData
from seethrough.jobs.report import run_report
from seethrough.reporting.build import REPORT_HTML, REPORT_JSON
from seethrough.reporting.content import ReportContent

pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font")


class Narrow(nn.Module):
    """Six channels over a 16×16 map: a module output (6, 16, 16) has fewer channels
    than rows, which the report once read as channels (16); no class names, so the
    logits are known only by their width."""

    def __init__(self, channels_in: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels_in, 6, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture
def narrow() -> nn.Module:
    torch.manual_seed(0)
    return Narrow().eval()


def _x(n: int = 2, channels: int = 3) -> torch.Tensor:
    return torch.rand(n, channels, 32, 32, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------- the data part


def test_top_examples_take_the_channels_of_the_module_not_its_rows(
    tmp_path: Path, narrow: nn.Module
) -> None:
    x = _x(12)
    data = LabelledData(x, torch.arange(12) % 3, "tensor")
    before = Snapshot.take(narrow)
    done = run_report(narrow, x[:2], tmp_path / "r", data=data, methods=["gradient"], quick=True)
    before.assert_unchanged(narrow)
    report = json.loads((done.out / REPORT_JSON).read_text(encoding="utf-8"))
    top = report["data"]["top_examples"]
    # the last module before the logits (fc): its 6 channels, all of them (at most 8)
    assert top["layer"] == "features.0" and top["layer_channels"] == 6
    assert [c["channel"] for c in top["channels"]] == list(range(6))


def test_a_data_folder_larger_than_the_limit_keeps_every_class(
    tmp_path: Path, narrow: nn.Module
) -> None:
    """A folder's images come class by class: the report's share of them (here 6 of 12,
    4 per class) must hold every class in its share, not the first classes only."""
    import dataclasses

    from PIL import Image

    from seethrough.jobs.report import _labelled, _plan

    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "data" / str(c)).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / str(c) / f"{i}.png")
    net = st.load_model(narrow)
    x = net.preprocess(st.load_images([str(tmp_path / "data" / "0" / "0.png")]))
    plan = dataclasses.replace(_plan(True), data_limit=6)
    found = _labelled(net, tmp_path / "data", plan, x)
    assert len(found.labels) == 6
    assert torch.bincount(found.labels, minlength=3).tolist() == [2, 2, 2]


# ---------------------------------------------------------------------- st.report inputs


def test_one_method_may_be_named_by_a_string(tmp_path: Path, narrow: nn.Module) -> None:
    done = st.report(narrow, _x(), out=tmp_path / "r", methods="gradient", quick=True)
    assert json.loads((done.out / REPORT_JSON).read_text())["settings"]["methods"] == ["gradient"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: (_x() * 255).to(torch.uint8), "dtype"),
        (lambda: _x()[:, :0], "empty"),
        (lambda: torch.full_like(_x(), float("nan")), "NaN"),
        (lambda: _x(channels=1), r"the images have 1 channel\(s\), but the model's preprocessing"),
    ],
    ids=["uint8", "empty", "nan", "channels"],
)
def test_tensors_the_model_cannot_take_are_refused_clearly(
    make: Any, message: str, tmp_path: Path, narrow: nn.Module
) -> None:
    before = Snapshot.take(narrow)
    with pytest.raises(st.SeethroughError, match=message) as raised:
        st.report(narrow, make(), out=tmp_path / "r", quick=True)
    assert "\n" not in str(raised.value)
    before.assert_unchanged(narrow)
    assert not (tmp_path / "r").exists()


def test_a_grayscale_model_given_rgb_images_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import save_file

    (tmp_path / "graynet_w2.py").write_text(
        "from test_report_hostile import Narrow\n\ndef build():\n    return Narrow(1)\n"
    )
    save_file(Narrow(1).state_dict(), str(tmp_path / "gray.safetensors"))
    monkeypatch.chdir(tmp_path)
    code = main(
        ["report", "sample:chelsea", "--factory", "graynet_w2:build", "--weights",
         "gray.safetensors", "--device", "cpu", "--quick", "-q", "--out", "r"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "takes 1-channel input, but the images have 3" in err
    assert not (tmp_path / "r").exists()


def test_a_grayscale_module_needs_its_preprocessing_to_be_shown(tmp_path: Path) -> None:
    """A plain 1-channel module gets RGB preprocessing by default, which cannot show its
    images: refused before any work with the fix, which then works."""
    gray = Narrow(1).eval()
    x = _x(channels=1)
    with pytest.raises(st.SeethroughError, match=r"st\.Preprocess\(channels=1"):
        st.report(gray, x, out=tmp_path / "a", quick=True)
    assert not (tmp_path / "a").exists()
    net = st.load_model(gray, preprocess=st.Preprocess(channels=1, mean=(0.5,), std=(0.5,)))
    done = st.report(net, x, out=tmp_path / "b", methods=["gradient"], quick=True)
    assert (done.out / REPORT_HTML).is_file()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": 123}, "data is a int"),
        ({"data": ""}, r"labelled data \(--data\) is empty"),
        ({"data": "  "}, r"labelled data \(--data\) is empty"),
    ],
)
def test_bad_data_is_refused_before_any_work(
    kwargs: dict[str, Any], message: str, tmp_path: Path, narrow: nn.Module
) -> None:
    with pytest.raises(st.SeethroughError, match=message):
        st.report(narrow, _x(), out=tmp_path / "r", quick=True, **kwargs)
    assert not (tmp_path / "r").exists()


def test_a_model_that_is_no_module_is_refused(tmp_path: Path) -> None:
    with pytest.raises(st.SeethroughError, match=r"give a torch nn\.Module"):
        st.report(object(), _x(), out=tmp_path / "r")  # type: ignore[arg-type]


def test_empty_data_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["report", "sample:chelsea", "--model", "fashion-cnn", "--data", "", "--quick",
         "--out", str(tmp_path / "r")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--data ''" in err, err


def test_notes_on_the_terminal_escape_control_characters_in_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file name with a line break and a terminal escape sequence (OSC: set the
    window title) is shown escaped, one note per line, and nothing reaches the terminal."""
    from PIL import Image

    name = "evil\x1b]0;owned\x07\nline"
    Image.new("RGB", (32, 32), (200, 50, 50)).save(tmp_path / f"{name}.png")
    code = main(
        ["report", str(tmp_path / f"{name}.png"), "--model", "fashion-cnn", "--quick",
         "--methods", "gradient", "--out", str(tmp_path / "r")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "\x1b" not in err and "\x07" not in err
    notes = [line for line in err.splitlines() if line.startswith("evil")]
    assert notes and all(line.startswith("evil\\x1b]0;owned\\x07\\nline: ") for line in notes)
    assert not [line for line in err.splitlines() if line.startswith("line")]


# ---------------------------------------------------------------------- TensorBoard folder


@pytest.fixture
def needs_tensorboard() -> None:
    pytest.importorskip("tensorboard")


@pytest.mark.parametrize("where", ["same", "around"])
def test_a_tensorboard_folder_at_or_around_the_report_is_refused_before_any_work(
    where: str, tmp_path: Path, narrow: nn.Module, needs_tensorboard: None
) -> None:
    out = tmp_path / "r" if where == "same" else tmp_path / "tb" / "r"
    logdir = tmp_path / ("r" if where == "same" else "tb")
    with pytest.raises(st.SeethroughError, match="report's folder"):
        st.report(narrow, _x(), out=out, quick=True, tensorboard=logdir)
    assert not out.exists() and not logdir.exists()


def test_an_empty_tensorboard_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, needs_tensorboard: None
) -> None:
    from seethrough.reporting.tensorboard import check_logdir

    monkeypatch.chdir(tmp_path)  # an empty folder: '' is not '.'
    with pytest.raises(st.SeethroughError, match=r"\(--tensorboard\) is empty"):
        check_logdir("")


def test_checking_a_tensorboard_folder_creates_nothing(
    tmp_path: Path, needs_tensorboard: None
) -> None:
    from seethrough.reporting.tensorboard import check_logdir

    check_logdir(tmp_path / "runs" / "a" / "b")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_unwritable_tensorboard_folder_is_refused_at_the_check(needs_tensorboard: None) -> None:
    from seethrough.reporting.tensorboard import check_logdir

    with pytest.raises(st.SeethroughError, match="cannot create the TensorBoard folder"):
        check_logdir("/proc/seethrough-tb")


def test_events_that_fail_leave_no_report_and_no_folders(
    tmp_path: Path, narrow: nn.Module, monkeypatch: pytest.MonkeyPatch, needs_tensorboard: None
) -> None:
    import seethrough.reporting.tensorboard as tb

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(tb, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        st.report(narrow, _x(), out=tmp_path / "r", quick=True, tensorboard=tmp_path / "runs" / "x")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- write_events


@pytest.mark.parametrize(
    ("data", "figures", "message"),
    [
        (None, {}, "schema 'NoneType'"),
        ({"schema": "seethrough.report/1", "images": [{"name": "x"}]}, {}, "not a valid"),
        ({"schema": "seethrough.report/1", "summary": [{"key": "k"}]}, {}, "not a valid"),
        ({"schema": "seethrough.report/1"}, {"f": b"not a png"}, "not a readable PNG"),
    ],
    ids=["none", "image-without-id", "finding-without-text", "bad-png"],
)
def test_malformed_report_data_is_refused_and_leaves_nothing(
    data: Any, figures: dict[str, bytes], message: str, tmp_path: Path, needs_tensorboard: None
) -> None:
    from seethrough.reporting.tensorboard import write_events

    with pytest.raises(st.SeethroughError, match=message):
        write_events(ReportContent(data, figures, {}, None), tmp_path / "new" / "tb")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- the training logger


def test_the_logger_refuses_a_file_as_its_folder(
    tmp_path: Path, narrow: nn.Module, needs_tensorboard: None
) -> None:
    from seethrough.tensorboard import ExplanationLogger

    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(st.SeethroughError, match="cannot write TensorBoard events"):
        ExplanationLogger(narrow, _x(), "gradient", afile)
    assert afile.read_text() == "mine"


def test_report_files_exist_after_a_good_run(tmp_path: Path, narrow: nn.Module) -> None:
    """The control for the refusals above: the same model and inputs make a report."""
    done = st.report(narrow, _x(), out=tmp_path / "r", quick=True)
    assert (done.out / REPORT_HTML).is_file() and (done.out / REPORT_JSON).is_file()


@pytest.mark.parametrize("target", [99, [0, 3], "top4"])
def test_the_logger_checks_class_indices_at_construction_without_labels(
    target: Any, tmp_path: Path, needs_tensorboard: None
) -> None:
    """No class names: the model's width (3 classes) is read off one forward pass, in
    prediction mode, and the model — here in training mode — comes back as it was."""
    from seethrough.tensorboard import ExplanationLogger

    torch.manual_seed(0)
    model = Narrow().train()
    before = Snapshot.take(model)
    rng = torch.get_rng_state()
    with pytest.raises(st.SeethroughError, match=r"out of range|more classes"):
        ExplanationLogger(model, _x(), "gradient", tmp_path / "tb", target=target)
    before.assert_unchanged(model)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not (tmp_path / "tb").exists()
