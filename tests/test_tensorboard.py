"""TensorBoard events: a report's findings (``reporting.tensorboard.write_events``) and the
training-time :class:`~seethrough.tensorboard.ExplanationLogger`.

Events are read back with TensorBoard's own ``EventAccumulator``; the logger's invariants
use ``tests/helpers.Snapshot``, with the model in training mode and batch-norm.
"""

from __future__ import annotations

import copy
import io
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import Failing, Snapshot, TinyCNN, tiny_inputs, tiny_model

pytest.importorskip("tensorboard")

from tensorboard import plugin_util
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seethrough.errors import (
    InvalidInputError,
    InvalidOptionError,
    SeethroughError,
    TargetError,
)
from seethrough.reporting import tensorboard as rtb
from seethrough.reporting.content import Embedding, ReportContent
from seethrough.tensorboard import ExplanationLogger

HOSTILE = "<script>alert('x')</script> \"hot_dog\" 猫 *bold* a|b [x](y)"


def _read(folder: Path) -> EventAccumulator:
    events = EventAccumulator(
        str(folder), size_guidance={"images": 0, "scalars": 0, "histograms": 0, "tensors": 0}
    )
    events.Reload()
    return events


def _text(events: EventAccumulator, tag: str) -> str:
    """The text of ``tag`` (torch's ``add_text`` stores it as ``<tag>/text_summary``)."""
    (event,) = events.Tensors(f"{tag}/text_summary")
    return event.tensor_proto.string_val[0].decode("utf-8")


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _decoded(events: EventAccumulator, tag: str) -> np.ndarray:
    (event,) = events.Images(tag)
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))


# --- a small hand-made report ----------------------------------------------------------

PANEL = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3) * 2
CLEAR = np.zeros((4, 4, 4), dtype=np.uint8)  # RGBA: fully transparent black → white
CLEAR[0, 0] = (10, 20, 30, 255)  # one opaque pixel stays as it is
SANITY = {"gradient": [0.98, 0.61, 0.12], HOSTILE: [1.0, None, 0.85]}  # None: not finite
FRACTIONS = [0.0, 0.1, 0.2, 0.3]
FAITH = {"gradient": [0.9, 0.5, 0.3, 0.1], "random": [0.9, 0.8, 0.7, 0.6]}
INSERTION = {"gradient": [0.1, 0.7, 0.9], "random": [0.1, 0.4, 0.9]}
MAP = np.linspace(-1.5, 2.0, 12).reshape(3, 4)
FEATURES = np.arange(12, dtype=np.float64).reshape(4, 3) / 7
LABELS = ("cat", "dog\twith\ttabs", "", "new\nline")


def _content() -> ReportContent:
    data = {
        "schema": "seethrough.report/1",
        "title": "report",
        "lang": "en",
        "provenance": {"model": HOSTILE, "seed": 0, "versions": {"torch": "2.x"}},
        "preprocessing": {},
        "settings": {"methods": ["gradient"], "quick": True},
        "summary": [{"id": "s0", "key": "k", "claim": "hedged", "text": f"Look at {HOSTILE}."}],
        "images": [
            {
                "id": "img-0",
                "name": HOSTILE + ".png",
                "source": "x",
                "predictions": [
                    {"index": 3, "label": HOSTILE, "probability": 0.75},
                    {"index": 1, "label": "1. - list?", "probability": 0.25},
                ],
                "target": {"index": 3, "label": HOSTILE},
                "findings": [{"text": "Focus: centre (62%)."}],
                "panels": [{"method": "gradient", "figure": "panel-0", "range": [0, 1]}],
            }
        ],
        "agreement": {"metric": "spearman", "methods": ["gradient"], "matrix": [[1.0]], "n": 1},
        "sanity": {
            "mode": "cascading",
            "metric": "spearman_abs",
            "threshold": 0.5,
            "n": 2,
            "steps": ["fc2", "fc1", "conv1"],
            "methods": [
                {"method": m, "verdict": "passed", "mean": c[-1], "ci": [0.0, 0.2], "curve": c}
                for m, c in SANITY.items()
            ],
        },
        "faithfulness": {
            "metric": "deletion",
            "fractions": FRACTIONS,
            "methods": [{"method": "gradient", "curve": FAITH["gradient"], "auc": 0.4}],
            "random": {"curve": FAITH["random"], "auc": 0.7},
        },
        "insertion": {
            "metric": "insertion",
            "fractions": [0.0, 0.5, 1.0],
            "methods": [{"method": "gradient", "curve": INSERTION["gradient"], "auc": 0.6}],
            "random": {"curve": INSERTION["random"], "auc": 0.45},
        },
        "completeness": [{"image": "img-0", "sum": 1.5, "difference": 1.5, "relative_error": 0.0}],
        "data": None,
    }
    embedding = Embedding(
        layer="features.3",
        features=FEATURES,
        labels=LABELS,
        thumbnails=np.full((4, 3, 6, 6), 0.5),
    )
    return ReportContent(
        data=data,
        figures={"panel-0": _png(PANEL), "agreement": _png(CLEAR)},
        maps={("img-0", "gradient"): MAP},
        embedding=embedding,
    )


@pytest.fixture(scope="module")
def report_events(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EventAccumulator]:
    folder = tmp_path_factory.mktemp("tb") / "runs" / "explain"
    assert rtb.write_events(_content(), folder) == folder
    return folder, _read(folder)


def test_report_events_hold_the_expected_tags(report_events: tuple[Path, EventAccumulator]):
    _, events = report_events
    tags = events.Tags()
    assert sorted(tags["images"]) == ["figures/agreement", "overlay/img-0/gradient"]
    assert tags["histograms"] == ["attribution/img-0/gradient"]
    assert sorted(tags["scalars"]) == sorted(
        [f"sanity/{m}" for m in SANITY]
        + [f"faithfulness/{m}/{c}" for m in ("deletion", "insertion") for c in FAITH]
    )
    assert sorted(tags["tensors"]) == sorted(
        f"{tag}/text_summary"
        for tag in [
            "summary",
            "provenance",
            "settings",
            "images/img-0",
            "agreement",
            "completeness",
            "sanity/verdicts",
            "faithfulness/deletion/auc",
            "faithfulness/insertion/auc",
        ]
    )


def test_report_curves_are_scalars_per_step(report_events: tuple[Path, EventAccumulator]):
    """Scalars are stored as float32: each equals the JSON value rounded to float32; a
    ``null`` (non-finite) point is left out."""
    _, events = report_events
    for method, curve in SANITY.items():
        read = events.Scalars(f"sanity/{method}")
        kept = [(k, v) for k, v in enumerate(curve, start=1) if v is not None]  # k steps done
        assert [(e.step, e.value) for e in read] == [(i, float(np.float32(v))) for i, v in kept]
    assert len(events.Scalars(f"sanity/{HOSTILE}")) == 2
    for metric, curves, steps in (
        ("deletion", FAITH, [0, 10, 20, 30]),  # whole percentages removed
        ("insertion", INSERTION, [0, 50, 100]),
    ):
        for name, curve in curves.items():
            read = events.Scalars(f"faithfulness/{metric}/{name}")
            assert [e.step for e in read] == steps
            assert [e.value for e in read] == [float(np.float32(v)) for v in curve]


def test_curve_steps_fall_back_to_the_index() -> None:
    steps, unit = rtb._curve_steps([0.0, 0.005, 0.01])  # 0.5 % is not a whole percentage
    assert steps == [0, 1, 2]
    assert "index" in unit and "0.005" in unit
    assert rtb._curve_steps([0.0, 0.25, 1.0])[0] == [0, 25, 100]


def test_report_figures_come_back_pixel_for_pixel(report_events: tuple[Path, EventAccumulator]):
    _, events = report_events
    np.testing.assert_array_equal(_decoded(events, "overlay/img-0/gradient"), PANEL)
    clear = _decoded(events, "figures/agreement")  # transparency over white, by hand
    expected = np.full((4, 4, 3), 255, dtype=np.uint8)
    expected[0, 0] = (10, 20, 30)
    np.testing.assert_array_equal(clear, expected)


def test_report_histogram_holds_the_raw_map(report_events: tuple[Path, EventAccumulator]):
    _, events = report_events
    (event,) = events.Histograms("attribution/img-0/gradient")
    h = event.histogram_value
    assert (h.min, h.max, h.num) == (-1.5, 2.0, 12)
    assert h.sum == pytest.approx(MAP.sum(), rel=1e-12, abs=1e-12)
    assert h.sum_squares == pytest.approx((MAP**2).sum(), rel=1e-12)
    assert sum(h.bucket) == 12


def test_report_text_is_escaped_and_renders_literally(
    report_events: tuple[Path, EventAccumulator],
):
    """Names and labels with ``<script>``, quotes and unicode: TensorBoard's own markdown
    renderer makes no element of them and shows them as written."""
    _, events = report_events
    for tag in ("summary", "provenance", "images/img-0", "sanity/verdicts"):
        page = plugin_util.markdown_to_safe_html(_text(events, tag))
        assert "<script" not in page and "<em>" not in page and "<strong>b" not in page
        assert "&lt;script&gt;alert('x')&lt;/script&gt;" in page.replace("&#39;", "'")
        assert "hot_dog" in page and "猫" in page and "*bold*" in page
        assert "a|b [x](y)" in page and "<a " not in page
    images = plugin_util.markdown_to_safe_html(_text(events, "images/img-0"))
    assert images.count("<li>") == 1  # the one finding; no label starts a list
    rows = [r for r in images.split("<tr>") if "<td>" in r]
    assert [r.count("<td>") for r in rows] == [3, 3, 3]  # target; two predictions
    assert "<td>1. - list?</td>" in images and "<td>0.75</td>" in images
    sanity = _text(events, "sanity/verdicts")
    assert "threshold 0.5" in sanity and "| 3 | conv1 |" in sanity


def test_report_embedding_goes_to_the_projector(report_events: tuple[Path, EventAccumulator]):
    """The projector's config (parsed as the projector does) names files that exist
    under the run folder, after the move from the staging folder."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    folder, _ = report_events
    text = (folder / "projector_config.pbtxt").read_text()
    config = text_format.Parse(text, projector_config_pb2.ProjectorConfig())
    (embedding,) = config.embeddings
    assert embedding.tensor_name.startswith("features.3")
    assert list(embedding.sprite.single_image_dim) == [6, 6]
    tensors = folder / embedding.tensor_path
    lines = tensors.read_text().split("\n")[:-1]
    read = np.array([[float(v) for v in line.split("\t")] for line in lines])
    np.testing.assert_array_equal(read, FEATURES)  # written with repr: exact
    metadata = (folder / embedding.metadata_path).read_text().split("\n")[:-1]
    assert metadata == ["cat", "dog with tabs", "?", "new line"]
    with Image.open(folder / embedding.sprite.image_path) as sprite:
        assert sprite.size == (12, 12)  # 2 × 2 thumbnails of 6 × 6


def test_the_report_job_writes_the_same_findings_as_events(tmp_path: Path) -> None:
    """``run_report(..., tensorboard=DIR)`` on the Fashion-MNIST CNN (quick): one overlay
    and histogram per image and method, the sanity and faithfulness curves of every
    method in report.json, each value equal to the JSON's (as float32)."""
    import seethrough as st
    from seethrough.jobs.report import run_report

    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    done = run_report(
        st.load_model("fashion-cnn"), x, tmp_path / "r", quick=True, tensorboard=tmp_path / "tb"
    )
    data = done.content.data
    events = _read(tmp_path / "tb")
    tags = events.Tags()
    pairs = [(i["id"], p["method"]) for i in data["images"] for p in i["panels"]]
    assert pairs and {f"overlay/{i}/{m}" for i, m in pairs} <= set(tags["images"])
    assert {f"attribution/{i}/{m}" for i, m in pairs} == set(tags["histograms"])
    for entry in data["sanity"]["methods"]:
        read = events.Scalars(f"sanity/{entry['method']}")
        assert [e.value for e in read] == [float(np.float32(v)) for v in entry["curve"]]
    deletion = data["faithfulness"]
    for entry in [*deletion["methods"], {**deletion["random"], "method": "random"}]:
        read = events.Scalars(f"faithfulness/deletion/{entry['method']}")
        assert [e.value for e in read] == [float(np.float32(v)) for v in entry["curve"]]
    summary = _text(events, "summary")
    assert summary.count("\n- ") + 1 == len(data["summary"])


def test_write_events_refuses_a_folder_with_events(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    rtb.write_events(_content(), folder)
    with pytest.raises(InvalidOptionError, match=r"not empty.*new folder"):
        rtb.write_events(_content(), folder)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidOptionError, match="is a file"):
        rtb.check_logdir(tmp_path / "file")


def test_write_events_refuses_another_schema(tmp_path: Path) -> None:
    content = ReportContent(data={"schema": "something/9"})
    with pytest.raises(InvalidInputError, match=r"seethrough\.report/1"):
        rtb.write_events(content, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["images"][0]["panels"][0].update(figure="gone"), "names figure 'gone'"),
        (lambda d: d["faithfulness"]["random"].update(curve=[0.5]), "1 points for 4 fractions"),
    ],
)
def test_malformed_content_is_refused_and_leaves_nothing(
    change: object, message: str, tmp_path: Path
) -> None:
    content = _content()
    data = copy.deepcopy(dict(content.data))
    change(data)  # type: ignore[operator]
    bad = ReportContent(data, content.figures, content.maps, content.embedding)
    with pytest.raises(InvalidInputError, match=message):
        rtb.write_events(bad, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_no_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = rtb._write

    def interrupted(writer: object, content: ReportContent) -> None:
        real(writer, content)
        raise KeyboardInterrupt

    monkeypatch.setattr(rtb, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rtb.write_events(_content(), tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def no_tensorboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the ``tensorboard`` package were not installed: importing
    ``torch.utils.tensorboard`` fails inside torch, as it does then."""
    for name in [n for n in sys.modules if n.startswith("torch.utils.tensorboard")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)


def test_missing_tensorboard_says_how_to_install(no_tensorboard: None, tmp_path: Path) -> None:
    fix = 'pip install "seethrough\\[tensorboard\\]"'
    with pytest.raises(SeethroughError, match=fix):
        rtb.write_events(_content(), tmp_path / "run")
    with pytest.raises(SeethroughError, match=fix):
        rtb.check_logdir(tmp_path / "run")  # the report job's check before any work
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SeethroughError, match=fix):
        ExplanationLogger(tiny_model(), tiny_inputs(1), "gradient", tmp_path / "run2")


# --- the training-time logger ----------------------------------------------------------


class DropNet(nn.Module):
    """Conv–BN–ReLU–Dropout, pooled, linear: training changes BN statistics and draws
    dropout masks from the global RNG. Float64."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(4, 3)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.relu(self.bn(self.conv(x))))
        return self.fc(h.mean(dim=(2, 3)))


def _train(model: nn.Module, steps: int, logger: ExplanationLogger | None) -> list[float]:
    """A small training loop; the logger is called between backward and the optimizer
    step, where ``.grad`` is live."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(5)
    losses = []
    for step in range(steps):
        x = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (4,), generator=g)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if logger is not None:
            logger(step)
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_training_with_the_logger_is_bitwise_training_without(tmp_path: Path) -> None:
    """Same seed, same loop: the losses and final weights and BN statistics are equal
    bit for bit with and without the logger (which draws nothing from the global RNG
    and touches neither ``.grad`` nor the running averages)."""
    torch.manual_seed(0)
    plain = DropNet().train()
    logged = copy.deepcopy(plain)
    fixed = tiny_inputs(2, size=8)
    torch.manual_seed(1)
    expected = _train(plain, 5, None)
    torch.manual_seed(1)
    methods = ["gradient", "smoothgrad", "grad_cam"]
    with ExplanationLogger(logged, fixed, methods, tmp_path, every=2, samples=3) as logger:
        got = _train(logged, 5, logger)
    assert got == expected
    for (name, a), b in zip(plain.state_dict().items(), logged.state_dict().values()):
        assert torch.equal(a, b), name
    events = _read(tmp_path)
    assert [e.step for e in events.Scalars("explanations/score/0")] == [0, 2, 4]
    assert len(events.Tags()["images"]) == len(methods) * 2


def test_the_logger_leaves_the_model_and_rng_as_they_were(tmp_path: Path) -> None:
    """In training mode with batch-norm, mixed flags (one module in eval), live ``.grad``:
    everything of the Snapshot, plus NumPy's and Python's random state."""
    model = tiny_model().train()
    model.bn2.eval()  # flags are restored per module, not with one model.train()
    x = tiny_inputs(3)
    model(x).sum().backward()
    np.random.seed(3)
    random.seed(3)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    before = Snapshot.take(model, x)
    logger = ExplanationLogger(model, x, ["gradient", "grad_cam"], tmp_path, every=1)
    logger.log(0)
    logger.close()
    before.assert_unchanged(model, x)
    assert random.getstate() == python_state
    _assert_same_numpy_state(np.random.get_state(), numpy_state)


def _assert_same_numpy_state(after: tuple, before: tuple) -> None:
    assert after[0] == before[0] and np.array_equal(after[1], before[1])
    assert after[2:] == before[2:]  # the position in the key: one draw moves it


def test_the_logger_puts_everything_back_when_explaining_raises(tmp_path: Path) -> None:
    model = Failing(tiny_model().train(), fail_on=1)
    model.inner.bn1.eval()
    x = tiny_inputs(2)
    numpy_state = np.random.get_state()
    before = Snapshot.take(model, x)
    logger = ExplanationLogger(model, x, "gradient", tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        logger(0)
    before.assert_unchanged(model, x)
    _assert_same_numpy_state(np.random.get_state(), numpy_state)
    assert model.training and not model.inner.bn1.training and model.inner.bn2.training


def test_logged_values_match_an_independent_gradient(tmp_path: Path) -> None:
    """Oracle: autograd on a copy of the model in eval mode. The score scalar is the
    predicted class's logit (stored as float32: rel 1e-6); the histogram is of
    Σ_c |∂score/∂x| per pixel (computed in float32 for display: rel 1e-5)."""
    model = tiny_model().train()
    x = tiny_inputs(2)
    reference = copy.deepcopy(model).eval()
    xr = x.clone().requires_grad_(True)
    logits = reference(xr)
    scores = logits.max(dim=1).values
    scores.sum().backward()
    magnitude = xr.grad.abs().sum(dim=1)

    with ExplanationLogger(model, x, "gradient", tmp_path / "run", every=3) as logger:
        assert logger(1) is None and logger(2) is None
        (ex,) = logger(3)
    events = _read(tmp_path / "run")
    for i in range(2):
        (score,) = events.Scalars(f"explanations/score/{i}")
        assert score.step == 3
        assert score.value == pytest.approx(scores[i].item(), rel=1e-6)
        (hist,) = events.Histograms(f"explanations/attribution/gradient/{i}")
        h = hist.histogram_value
        assert h.num == 12 * 12
        assert h.sum == pytest.approx(magnitude[i].sum().item(), rel=1e-5)
        assert h.max == pytest.approx(magnitude[i].max().item(), rel=1e-5)
        (scale,) = events.Scalars(f"explanations/scale/gradient/{i}")
        expected = torch.quantile(magnitude[i].float().flatten(), 0.995).item()
        assert scale.value == pytest.approx(expected, rel=1e-5)
        (image,) = events.Images(f"explanations/overlay/gradient/{i}")
        assert (image.height, image.width) == (12, 12)
    torch.testing.assert_close(ex.attributions.abs().sum(dim=1), magnitude, rtol=1e-12, atol=0)


def test_a_writer_given_stays_open_and_owned_by_the_caller(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path))
    with ExplanationLogger(tiny_model(), tiny_inputs(1), "gradient", writer, every=1) as logger:
        logger(0)
    writer.add_scalar("after", 1.0, 0)  # still open
    writer.close()
    assert "after" in _read(tmp_path).Tags()["scalars"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": "no_such_method"}, "unknown method"),
        ({"methods": "gradient", "steps": 5}, "has no option 'steps'"),
        ({"methods": ["gradient", "smoothgrad"], "stepz": 5}, "no chosen method has"),
        ({"methods": [], "every": 1}, "no method given"),
        ({"methods": "gradient", "every": 0}, "every"),
        ({"methods": "gradient", "writer": object()}, "has no add_image"),
        ({"methods": "gradient", "tag": "/"}, "tag is empty"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict, message: str, tmp_path: Path) -> None:
    settings = {"writer": tmp_path, **kwargs}
    with pytest.raises(InvalidOptionError, match=message):
        ExplanationLogger(tiny_model(), tiny_inputs(1), **settings)


def test_a_bad_target_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="3 targets for 2 images"):
        ExplanationLogger(tiny_model(), tiny_inputs(2), "gradient", tmp_path, target=[0, 1, 2])


def test_images_the_model_cannot_take_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="convert them"):
        ExplanationLogger(TinyCNN(), tiny_inputs(1).float(), "gradient", tmp_path)


def test_the_logger_explains_in_full_precision_inside_autocast(tmp_path: Path) -> None:
    """Called inside ``torch.autocast`` (bfloat16 on the CPU), the maps are those of a
    call outside it, exactly: the logger turns autocast off for the explanation."""
    model = tiny_model(dtype=torch.float32).train()
    x = tiny_inputs(2).float()
    with ExplanationLogger(model, x, ["gradient", "grad_cam"], tmp_path / "a") as logger:
        plain = logger.log(0)
    logger = ExplanationLogger(model, x, ["gradient", "grad_cam"], tmp_path / "b")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = logger.log(0)
        assert torch.is_autocast_enabled("cpu")  # the caller's autocast is back
    logger.close()
    for a, b in zip(plain, inside):
        assert b.attributions.dtype == torch.float32
        assert torch.equal(a.attributions, b.attributions), a.method


@pytest.mark.gpu
def test_the_logger_on_cuda_leaves_model_and_cuda_rng_as_they_were(tmp_path: Path) -> None:
    """On the GPU: images kept on the CPU follow the model; the CUDA RNG (dropout's
    source there) and the Snapshot are unchanged; the events are written."""
    assert torch.cuda.is_available(), "gpu tests run only where CUDA is (select with -m gpu)"
    torch.manual_seed(0)
    model = DropNet().float().cuda().train()
    x = tiny_inputs(2, size=8).float()
    model(x.cuda()).sum().backward()
    cuda_rng = torch.cuda.get_rng_state()
    before = Snapshot.take(model)
    with ExplanationLogger(model, x, ["gradient", "smoothgrad"], tmp_path, samples=3) as logger:
        (gradient, _) = logger.log(0)
    before.assert_unchanged(model)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng)
    assert gradient.attributions.device.type == "cpu"  # returned on the CPU
    assert len(_read(tmp_path).Tags()["images"]) == 4
