"""SmoothGrad's memory (noisy rows made per chunk, merged on the fly) and targets that
are range-checked once per call, not on every chunk (a host sync on an accelerator)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

import seethrough as st
from helpers import tiny_inputs, tiny_model
from seethrough.attribution.run import PassContext
from seethrough.attribution.smoothgrad import NoisyRows, SampleMoments
from seethrough.core.targets import Target
from seethrough.errors import RuleNotAppliedError, TargetError

IMAGES, SAMPLES, NOISE, SEED = 4, 5, 0.2, 7
TARGETS = [0, 2, 1, 4]
VARIANTS = ("smoothgrad", "smoothgrad_sq", "vargrad")
# float64 throughout: chunked vs whole, merged means vs a plain mean differ by rounding only
TOL = {"rtol": 1e-9, "atol": 1e-12}


class Recorder(nn.Module):
    """Wraps a model; records the batch size of every forward call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        self.batches.append(len(x))
        return self.inner(x)


class OutOfMemoryOnce(nn.Module):
    """Raises a CPU out-of-memory error on gradient pass number ``fail_on`` (1-based)."""

    def __init__(self, inner: nn.Module, fail_on: int) -> None:
        super().__init__()
        self.inner = inner
        self.fail_on = fail_on
        self.gradient_passes = 0
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            self.gradient_passes += 1
            if self.gradient_passes == self.fail_on:
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        return self.inner(x)


class ImageShapedTensors(TorchDispatchMode):
    """Records the most rows of any tensor an op makes with the inputs' per-row shape."""

    def __init__(self, row_shape: torch.Size) -> None:
        super().__init__()
        self.row_shape = row_shape
        self.most = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, Tensor) and t.dim() == 4 and t.shape[1:] == self.row_shape:
                self.most = max(self.most, t.shape[0])
        return out


def noisy_copies(x: Tensor, seed: int = SEED, samples: int = SAMPLES) -> list[Tensor]:
    """The documented noise: image ``i``'s samples are successive ``(C, H, W)`` draws from
    ``torch.Generator().manual_seed(seed + i)``, scaled by σᵢ = noise × (max − min)."""
    copies = []
    for i in range(len(x)):
        g = torch.Generator().manual_seed(seed + i)
        sigma = NOISE * (x[i].max() - x[i].min())
        copies.append(
            torch.stack(
                [
                    x[i] + sigma * torch.randn(x.shape[1:], generator=g, dtype=x.dtype)
                    for _ in range(samples)
                ]
            )
        )
    return copies


def by_hand(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """SmoothGrad of the plain gradient with torch.autograd, image by image."""
    grads = []
    for i, copies in enumerate(noisy_copies(x)):
        noisy = copies.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(noisy)[:, TARGETS[i]].sum(), noisy)
        grads.append(g)
    stacked = torch.stack(grads)  # (N, S, C, H, W)
    return {
        "smoothgrad": stacked.mean(1),
        "smoothgrad_sq": (stacked**2).mean(1),
        "vargrad": stacked.var(1, unbiased=False),
    }


def smooth(model: nn.Module, x: Tensor, variant: str, batch_size: int, **options: Any) -> Tensor:
    return st.explain(
        model,
        x,
        "smoothgrad",
        target=TARGETS,
        samples=SAMPLES,
        noise=NOISE,
        variant=variant,
        seed=SEED,
        batch_size=batch_size,
        **options,
    ).attributions


# ---------------------------------------------------------------------------------------
# (a) chunking changes neither the noise nor the result
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_small_and_large_chunks_equal_the_hand_computed_smoothgrad(variant: str) -> None:
    model, x = tiny_model(), tiny_inputs(n=IMAGES)
    expected = by_hand(model, x)[variant]
    small = smooth(model, x, variant, batch_size=3)  # 3 ∤ 5: chunks straddle images
    large = smooth(model, x, variant, batch_size=64)  # all 20 noisy rows in one pass
    torch.testing.assert_close(small, expected, **TOL)
    torch.testing.assert_close(large, expected, **TOL)
    torch.testing.assert_close(small, large, **TOL)


def test_noisy_rows_are_the_documented_draws_however_they_are_asked_for() -> None:
    model, x = tiny_model(), tiny_inputs(n=IMAGES)
    expected = torch.cat(noisy_copies(x))
    sigma = NOISE * (x.flatten(1).max(1).values - x.flatten(1).min(1).values)
    ctx = PassContext(model, x.device, SEED, None, None)
    rows = NoisyRows(ctx, x, sigma, SAMPLES)
    # in order, in chunks of 3; then a retry of a chunk (as after out-of-memory), a smaller
    # chunk from the same start, and a jump back
    for start, stop in [(0, 3), (3, 6), (6, 9), (6, 8), (6, 7), (7, 13), (2, 4), (13, 20)]:
        assert torch.equal(rows(start, stop), expected[start:stop]), (start, stop)


@pytest.mark.parametrize("variant", VARIANTS)
def test_out_of_memory_retry_redraws_the_same_noise(variant: str) -> None:
    """The budget halves the chunk and retries after out-of-memory; the retried rows must
    carry the same noise (the generators had already moved on in the failed attempt)."""
    model, x = tiny_model(), tiny_inputs(n=IMAGES)
    flaky = OutOfMemoryOnce(model, fail_on=2)  # the second chunk, rows 3:6, fails
    result = smooth(flaky, x, variant, batch_size=3)
    assert flaky.gradient_passes > 1 + (IMAGES * SAMPLES) // 3
    torch.testing.assert_close(result, by_hand(model, x)[variant], **TOL)


def test_out_of_memory_while_merging_merges_nothing_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of memory in the middle of merging a chunk (after one image's part was merged
    in a non-transactional design): the retried chunk must not count that part twice."""
    calls = 0
    original = SampleMoments._merged

    def flaky(self: SampleMoments, image: int, part: Tensor) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:  # rows 3:6 = image 0's samples 3–4, then image 1's sample 0
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        return original(self, image, part)

    monkeypatch.setattr(SampleMoments, "_merged", flaky)
    model, x = tiny_model(), tiny_inputs(n=IMAGES)
    result = smooth(model, x, "vargrad", batch_size=3)
    assert calls > 3
    torch.testing.assert_close(result, by_hand(model, x)["vargrad"], **TOL)


@pytest.mark.parametrize(
    ("base", "options"),
    [
        ("gradient_x_input", {}),
        ("guided_backprop", {}),
        ("deconvnet", {}),
        ("grad_cam", {}),
        ("integrated_gradients", {"steps": 4, "rule": "gausslegendre"}),
    ],
)
@pytest.mark.parametrize("variant", ["smoothgrad", "vargrad"])
def test_every_base_is_chunked_without_changing_the_result(
    base: str, options: dict[str, Any], variant: str
) -> None:
    model, x = tiny_model(), tiny_inputs(n=IMAGES)
    per_image = [
        st.explain(model, noisy, base, target=TARGETS[i], **options).attributions
        for i, noisy in enumerate(noisy_copies(x))
    ]
    stacked = torch.stack(per_image)
    expected = stacked.mean(1) if variant == "smoothgrad" else stacked.var(1, unbiased=False)
    opts = {"base": base, "base_options": options}
    # chunks of 2 noisy rows for integrated gradients (6 passes a row), 3 for the others
    small = 12 if base == "integrated_gradients" else 3
    torch.testing.assert_close(smooth(model, x, variant, small, **opts), expected, **TOL)
    torch.testing.assert_close(smooth(model, x, variant, 64, **opts), expected, **TOL)


# ---------------------------------------------------------------------------------------
# (b) at most batch_size noisy rows exist at once
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "options"),
    [
        ("gradient", {}),
        ("guided_backprop", {}),
        ("grad_cam", {}),
        ("integrated_gradients", {"steps": 4, "rule": "gausslegendre"}),
    ],
)
def test_noisy_rows_alive_at_once_are_bounded_by_the_batch_size(
    base: str, options: dict[str, Any]
) -> None:
    """12 noisy rows of 2 images, 3 rows per pass: no forward sees more than 3 rows, and no
    tensor shaped like the inputs ever holds more than 3 rows (before, all 12 noisy rows
    were stacked at once, and their gradients beside them)."""
    batch, images, samples = 3, 2, 6
    model, x = Recorder(tiny_model()), tiny_inputs(n=images)
    watch = ImageShapedTensors(x.shape[1:])
    with watch:
        st.explain(
            model,
            x,
            "smoothgrad",
            base=base,
            base_options=options,
            samples=samples,
            batch_size=batch,
        )
    assert max(model.batches) <= batch
    assert sum(model.batches) >= images * samples  # every noisy row went through the model
    assert 0 < watch.most <= batch


def test_a_base_without_rectifiers_is_refused_on_the_first_chunk() -> None:
    model = Recorder(nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 5)).double().eval())
    x = tiny_inputs(n=IMAGES)
    with pytest.raises(RuleNotAppliedError):
        st.explain(model, x, "smoothgrad", base="guided_backprop", samples=SAMPLES, batch_size=3)
    assert len(model.batches) == 2 + 1  # the clean pass (4 rows), then one noisy chunk


# ---------------------------------------------------------------------------------------
# (c) targets are range-checked once per call, not on every chunk
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "integrated_gradients", "grad_cam"])
def test_out_of_range_target_raises_on_the_first_forward(method: str) -> None:
    model, x = Recorder(tiny_model()), tiny_inputs(n=3)
    message = r"target 9 is out of range: the model has 5 classes \(valid targets are 0 to 4\)"
    options = {"layer": "inner.bn2"} if method == "grad_cam" else {}  # no tracing pass
    with pytest.raises(TargetError, match=message):
        st.explain(model, x, method, target=[0, 1, 9], batch_size=1, **options)
    assert len(model.batches) == 1


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("gradient", [0, 1, 2, 3]),
        ("gradient", None),
        ("gradient", "top2"),
        ("smoothgrad", [0, 1, 2, 3]),
        ("guided_backprop", 4),
        ("grad_cam", [0, 1, 2, 3]),
    ],
)
def test_targets_are_range_checked_once_per_call(
    monkeypatch: pytest.MonkeyPatch, method: str, target: Any
) -> None:
    checks: list[int] = []
    original = Target.check_range

    def counted(self: Target, classes: int) -> None:
        checks.append(classes)
        original(self, classes)

    monkeypatch.setattr(Target, "check_range", counted)
    model, x = Recorder(tiny_model()), tiny_inputs(n=4)
    options = {"samples": 3} if method == "smoothgrad" else {}
    st.explain(model, x, method, target=target, batch_size=1, **options)
    assert len(model.batches) >= 4  # one row per pass: many chunks …
    assert len(checks) <= 1  # … but one range check (none for predicted classes)
    assert len(checks) == (0 if target is None else 1)


def test_resolved_targets_skip_the_check_and_keep_their_device_copy() -> None:
    user = Target("fixed", indices=torch.tensor([1, 3]))
    assert not user.in_range
    logits = torch.arange(10.0).view(2, 5)
    scores, indices = user.select(logits, slice(0, 2))
    assert scores.tolist() == [1.0, 8.0] and indices.tolist() == [1, 3]
    resolved = user.fixed(indices)
    assert resolved.in_range and resolved.kind == "fixed"
    # a resolved target is never range-checked again: a (deliberately) wrong one is not caught
    wrong = user.fixed(torch.tensor([1, 7]))
    assert wrong.select(torch.zeros(1, 9), slice(0, 1))[1].tolist() == [1]
    with pytest.raises(TargetError, match="target 7 is out of range"):
        Target("fixed", indices=torch.tensor([1, 7])).select(logits, slice(0, 1))
