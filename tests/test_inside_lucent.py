"""Lucent (torch-lucent, a dev-only oracle) on identical tensors: our Fourier and pixel
parametrizations, colour decorrelation and objectives give Lucent's numbers — and where we
differ on purpose (non-square neuron centres, hooks left behind), the tests show it."""

from __future__ import annotations

import copy

import pytest
import torch
from lucent.optvis import objectives as lucent_objectives
from lucent.optvis.param import color as lucent_color
from lucent.optvis.param import spatial as lucent_spatial

from helpers import Snapshot, tiny_model
from seethrough.inside import maximize
from seethrough.inside.objectives import Captured, channel, direction, diversity, neuron
from seethrough.inside.param import FourierImage, PixelImage

FLOAT32_EPS = torch.finfo(torch.float32).eps  # 2**-23 ≈ 1.19e-7, one ulp at 1.0


def assert_float32_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Equal up to float32 rounding of two implementations of the same formula.

    Not bitwise: Lucent computes on ``cuda:0`` when CUDA is available (cuFFT, cuBLAS) and the
    colour matrix is applied by ``einsum`` here and ``matmul`` there, so summation order and
    FMA use differ by build (one-ulp failures seen on the README's install). Derivation: each
    side's float32 result, compared with the same formula in float64, is off by at most
    1.25 ulps of the largest value (measured here for the three Fourier sizes below — the
    inverse FFT dominates; the pixel image: 0.53); two sides: 2.5; allowed: 4 ulps of the
    largest value, absolute (an inverse FFT's error is set by the magnitude of the whole
    signal, not of each output value, so the tolerance is not relative per element).
    """
    scale = float(theirs.abs().max())
    torch.testing.assert_close(ours, theirs, rtol=0.0, atol=4 * FLOAT32_EPS * scale)


@pytest.mark.parametrize(("height", "width"), [(16, 16), (15, 17), (32, 24)])
def test_fourier_image_equals_lucent_for_the_same_spectrum(height: int, width: int) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        params, image_f = lucent_spatial.fft_image((2, 3, height, width), sd=0.5)
    theirs = lucent_color.to_valid_rgb(image_f, decorrelate=True)
    spectrum = params[0].detach().cpu()
    # Lucid keeps one extra, unused frequency column for odd widths; ours does not.
    ours = FourierImage(spectrum[..., : width // 2 + 1, :], height, width)
    assert_float32_close(ours().detach(), theirs().detach().cpu())
    assert_float32_close(ours.raw().detach(), image_f().detach().cpu())
    weights = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    (ours() * weights).sum().backward()
    (theirs() * weights.to(params[0].device)).sum().backward()
    expected = params[0].grad.cpu()[..., : width // 2 + 1, :]
    torch.testing.assert_close(ours.spectrum.grad, expected, rtol=1e-5, atol=1e-7)


def test_pixel_image_equals_lucent() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        params, image_f = lucent_spatial.pixel_image((2, 3, 8, 8), sd=0.7)
    theirs = lucent_color.to_valid_rgb(image_f, decorrelate=True)().detach().cpu()
    ours = PixelImage(params[0].detach().cpu())()
    assert_float32_close(ours.detach(), theirs)


def activations() -> Captured:
    g = torch.Generator().manual_seed(3)
    acts = torch.randn(3, 5, 4, 4, generator=g)
    return Captured({"l": acts}, None, torch.zeros(3, 3, 4, 4))


def test_objectives_equal_lucents_on_the_same_activations() -> None:
    """Lucent returns a loss to minimise, averaged over the batch; ours are per-image
    scores to maximise: ``mean(ours) == -lucent`` (diversity: ``sum(ours) == lucent``'s
    negated loss convention, see ``DiversityTerm``)."""
    c = activations()
    hook = lambda name: c.layers["l"]  # noqa: E731 - Lucent's hook interface
    v = torch.tensor([0.3, -1.0, 0.5, 2.0, 0.0])
    pairs = [
        (channel("l", 2), lucent_objectives.channel("l", 2)),
        (neuron("l", 4), lucent_objectives.neuron("l", 4)),
        (direction("l", v), lucent_objectives.direction("l", v)),
    ]
    for ours, theirs in pairs:
        torch.testing.assert_close(ours(c).mean(), -theirs(hook), rtol=1e-6, atol=1e-7)
    # Lucent's diversity value is minus the summed similarity (a loss to be *added*);
    # our per-image scores sum to the same number.
    torch.testing.assert_close(
        diversity("l")(c).sum(), lucent_objectives.diversity("l")(hook), rtol=1e-6, atol=1e-7
    )


def test_neuron_centre_on_non_square_maps_differs_from_lucent_on_purpose() -> None:
    """Lucent reads x from the height and y from the width (``_extract_act_pos``), so on a
    3×5 map its "centre" is row 2, column 1; ours is row 1, column 2 (H // 2, W // 2)."""
    acts = torch.randn(2, 3, 3, 5, generator=torch.Generator().manual_seed(0))
    c = Captured({"l": acts}, None, torch.zeros(2, 3, 3, 5))
    torch.testing.assert_close(neuron("l", 1)(c), acts[:, 1, 1, 2])
    theirs = lucent_objectives.neuron("l", 1)(lambda name: acts)
    torch.testing.assert_close(theirs, -acts[:, 1, 2, 1].mean())


def test_lucent_leaves_hooks_on_the_model_and_we_do_not() -> None:
    from lucent.optvis import param, render

    device = lucent_spatial.device
    model = tiny_model(dtype=torch.float32).to(device)
    theirs = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        render.render_vis(
            theirs,
            lucent_objectives.channel("conv2", 0),
            param_f=lambda: param.image(8),
            transforms=[],
            thresholds=(1,),
            preprocess=False,
            progress=False,
            show_image=False,
            fixed_image_size=8,
        )
    assert sum(len(m._forward_hooks) for m in theirs.modules()) > 0
    snapshot = Snapshot.take(model)
    maximize(model, channel("conv2", 0), size=8, steps=1, transforms=None)
    snapshot.assert_unchanged(model)
