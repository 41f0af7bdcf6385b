"""Transforms and parametrizations: exact geometry of the fused warp, per-row randomness
that does not depend on the batch, Lucid's spectrum scaling and colour matrix by hand."""

from __future__ import annotations

import math

import pytest
import torch

from seethrough.errors import InvalidOptionError
from seethrough.inside.param import (
    COLOR_CORRELATION_SVD_SQRT,
    Normalization,
    decorrelate_colors,
    make_param,
    resolve_normalization,
    spectrum_scale,
)
from seethrough.inside.transforms import (
    STANDARD,
    Jitter,
    Pad,
    Pipeline,
    Rotate,
    Scale,
    make_pipeline,
)
from seethrough.models import Preprocess


def image(size: int = 9, channels: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, channels, size, size, generator=g, dtype=torch.float64)


def uniform_for(index: int, count: int) -> float:
    """The uniform that makes a draw among ``count`` options pick ``index``."""
    return (index + 0.5) / count


def test_zero_shift_is_the_identity() -> None:
    x = image()
    out = Pipeline([Jitter(1)])(x, torch.zeros(1, 2, dtype=torch.float64))
    torch.testing.assert_close(out, x, rtol=0, atol=1e-12)


def test_jitter_shifts_by_whole_pixels_with_zero_fill() -> None:
    x = image()
    # Jitter(8) offers offsets -4..3: pick dx = +2 (index 6) and dy = -1 (index 3)
    u = torch.tensor([[uniform_for(6, 8), uniform_for(3, 8)]], dtype=torch.float64)
    out = Pipeline([Jitter(8)])(x, u)
    expected = torch.zeros_like(x)
    expected[:, :, :-1, 2:] = x[:, :, 1:, :-2]  # content moves right by 2 and up by 1
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_rotation_by_90_degrees_is_exact() -> None:
    x = image()
    out = Pipeline([Rotate((90.0,))])(x, torch.zeros(1, 1, dtype=torch.float64))
    torch.testing.assert_close(out, torch.rot90(x, k=-1, dims=(2, 3)), rtol=0, atol=1e-12)


def test_scaling_stretches_a_linear_ramp_about_the_centre() -> None:
    size = 9
    ramp = (torch.arange(size, dtype=torch.float64) - (size - 1) / 2).expand(1, 1, size, size)
    out = Pipeline([Scale((2.0,))])(ramp.clone(), torch.zeros(1, 1, dtype=torch.float64))
    # bilinear sampling reproduces linear functions: the output at x is the input at x / 2
    torch.testing.assert_close(out, ramp / 2, rtol=0, atol=1e-12)


def test_fused_warp_equals_the_chain_of_warps_for_exact_moves() -> None:
    x = image(11)
    u_jitter = torch.tensor([[uniform_for(5, 8), uniform_for(1, 8)]], dtype=torch.float64)
    u_rotate = torch.zeros(1, 1, dtype=torch.float64)
    fused = Pipeline([Jitter(8), Rotate((90.0,))])(x, torch.cat([u_jitter, u_rotate], 1))
    chained = Pipeline([Rotate((90.0,))])(Pipeline([Jitter(8)])(x, u_jitter), u_rotate)
    torch.testing.assert_close(fused, chained, rtol=0, atol=1e-12)


def test_rows_draw_the_same_transforms_alone_or_in_a_batch() -> None:
    pipeline = Pipeline(STANDARD)
    pair = pipeline.draw([torch.Generator().manual_seed(s) for s in (5, 6)], steps=7)
    alone = pipeline.draw([torch.Generator().manual_seed(6)], steps=7)
    assert pair.shape == (2, 7, pipeline.draws) and pipeline.draws == 6
    assert torch.equal(pair[1], alone[0])
    images = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(2))
    batch = pipeline(images, pair[:, 3])
    single = pipeline(images[1:], alone[:, 3])
    assert batch.shape == (2, 3, 34, 34)
    assert torch.equal(batch[1], single[0])


def test_standard_transforms_are_lucents_and_frame_pads_only() -> None:
    pad, jitter8, scale, rotate, jitter4 = STANDARD
    assert pad == Pad(12, 0.5) and jitter8 == Jitter(8) and jitter4 == Jitter(4)
    assert scale.factors == tuple(1 + (i - 5) / 50.0 for i in range(11))
    assert rotate.degrees == tuple(float(d) for d in range(-10, 11)) + (0.0,) * 5
    x = image(4, 3)
    framed = Pipeline(STANDARD).frame(x)
    assert framed.shape == (1, 3, 28, 28)
    assert torch.equal(framed[:, :, 12:16, 12:16], x)
    assert bool((framed[:, :, :12] == 0.5).all())


def test_pipeline_options_are_checked() -> None:
    assert make_pipeline(None).transforms == ()
    assert make_pipeline("standard").transforms == STANDARD
    with pytest.raises(InvalidOptionError, match="unknown transforms 'fancy'"):
        make_pipeline("fancy")
    with pytest.raises(InvalidOptionError, match="not a transform"):
        make_pipeline([Jitter(2), "rotate"])
    with pytest.raises(InvalidOptionError, match="positive integer"):
        Jitter(0)
    with pytest.raises(InvalidOptionError, match="positive numbers"):
        Scale((1.0, -1.0))


def test_spectrum_scale_by_hand() -> None:
    scale = spectrum_scale(4, 4)
    assert scale.shape == (4, 3)
    # frequency 0 is clipped to 1/max(H, W) = 1/4
    assert scale[0, 0] == pytest.approx(4.0)
    assert scale[1, 1] == pytest.approx(1 / math.hypot(0.25, 0.25))
    assert scale[2, 2] == pytest.approx(1 / math.hypot(0.5, 0.5))
    assert scale[3, 1] == pytest.approx(1 / math.hypot(0.25, 0.25))  # fy = -1/4


def test_colour_decorrelation_matrix_by_hand() -> None:
    m = torch.tensor(COLOR_CORRELATION_SVD_SQRT, dtype=torch.float64)
    column_norms = m.norm(dim=0)
    normalised = m / column_norms.max()
    x = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64).reshape(1, 3, 1, 1)
    expected = normalised @ x.flatten()
    torch.testing.assert_close(decorrelate_colors(x).flatten(), expected)


@pytest.mark.parametrize("kind", ["fourier", "pixel"])
def test_parametrizations_start_the_same_alone_or_in_a_batch(kind: str) -> None:
    def make(seeds: list[int]) -> torch.Tensor:
        param = make_param(
            kind,
            [torch.Generator().manual_seed(s) for s in seeds],
            channels=3,
            size=(10, 12),
            dtype=torch.float64,
            device=torch.device("cpu"),
        )
        return param()

    pair, alone = make([3, 4]), make([4])
    assert pair.shape == (2, 3, 10, 12)
    assert torch.equal(pair[1], alone[0])
    assert bool(((pair > 0) & (pair < 1)).all())
    with pytest.raises(InvalidOptionError, match="unknown parametrization"):
        make_param("cppn", [], channels=3, size=(4, 4), dtype=torch.float32, device="cpu")  # type: ignore[arg-type]


def test_normalization_round_trip_and_sources() -> None:
    pre = Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    norm = resolve_normalization(None, pre)
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(norm.invert(norm(x)), x)
    torch.testing.assert_close(norm(x)[:, 2], (x[:, 2] - 0.3) / 0.5)
    assert resolve_normalization((0.5, 0.25), None) == Normalization((0.5,), (0.25,))
    assert not resolve_normalization(None, None).known
    assert not resolve_normalization(False, pre).known
    with pytest.raises(InvalidOptionError, match="positive stds"):
        resolve_normalization(((0.5, 0.5), (1.0, 0.0)), None)
    with pytest.raises(InvalidOptionError, match="cannot be inverted"):
        resolve_normalization(lambda t: t * 2, None).invert(x)
