"""The generic invariant suite: every registered method, on a tiny model, must leave the
model, the input and the RNG exactly as they were — after success, after a bad target and
after an exception inside the model's forward — and be batched and deterministic."""

from __future__ import annotations

import pytest
import torch

import seethrough as st
from helpers import METHOD_CASES, Failing, Snapshot, tiny_inputs, tiny_model
from seethrough.attribution.method import METHODS as REGISTRY
from seethrough.errors import ModelStateError, TargetError

METHODS = list(METHOD_CASES)


def test_case_table_covers_every_registered_method() -> None:
    assert set(METHOD_CASES) == set(st.method_names(include_controls=True))


def _prepared_model():  # type: ignore[no-untyped-def]
    """A model with the awkward state users have: a frozen layer, stale .grad, a user hook."""
    model = tiny_model()
    model.conv1.weight.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 0.5)
    calls = []
    model.fc.register_forward_hook(lambda m, i, o: calls.append(1))
    return model, calls


@pytest.mark.parametrize("method", METHODS)
def test_success_leaves_everything_unchanged(method: str) -> None:
    model, calls = _prepared_model()
    x = tiny_inputs().requires_grad_(True)
    before = Snapshot.take(model, x)
    ex = st.explain(model, x, method, **METHOD_CASES[method])
    before.assert_unchanged(model, x)
    assert calls, "the user's own hook must keep firing during our passes"
    assert ex.attributions.device == x.device
    assert ex.attributions.dtype == x.dtype
    assert not ex.attributions.requires_grad


@pytest.mark.parametrize("method", METHODS)
def test_bad_target_leaves_everything_unchanged(method: str) -> None:
    model, _ = _prepared_model()
    x = tiny_inputs()
    before = Snapshot.take(model, x)
    with pytest.raises(TargetError, match="out of range"):
        st.explain(model, x, method, target=7, **METHOD_CASES[method])
    before.assert_unchanged(model, x)


@pytest.mark.parametrize("fail_on", [1, 2, 3])
@pytest.mark.parametrize("method", METHODS)
def test_error_in_forward_leaves_everything_unchanged(method: str, fail_on: int) -> None:
    inner, _ = _prepared_model()
    model = Failing(inner, fail_on).eval()
    x = tiny_inputs()
    before = Snapshot.take(model, x)
    with torch.no_grad():  # the caller's grad mode must come back too
        snap_no_grad = Snapshot.take(model, x)
        try:
            st.explain(model, x, method, batch_size=1, **METHOD_CASES[method])
        except RuntimeError as error:
            assert "boom inside forward" in str(error)  # noqa: PT017
        else:  # the method finished in fewer passes than fail_on
            assert model.calls < fail_on
        snap_no_grad.assert_unchanged(model, x)
    before.assert_unchanged(model, x)


@pytest.mark.parametrize("method", METHODS)
def test_works_inside_no_grad_and_inference_mode(method: str) -> None:
    model, _ = _prepared_model()
    x = tiny_inputs()
    expected = st.explain(model, x, method, **METHOD_CASES[method]).attributions
    with torch.no_grad():
        inside = st.explain(model, x, method, **METHOD_CASES[method]).attributions
    with torch.inference_mode():
        x_inference = x.clone()
        in_inference = st.explain(model, x_inference, method, **METHOD_CASES[method]).attributions
    torch.testing.assert_close(inside, expected, rtol=0, atol=0)
    torch.testing.assert_close(in_inference, expected, rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_no_hook_or_state_growth_over_repeated_calls(method: str) -> None:
    model, _ = _prepared_model()
    x = tiny_inputs()
    m = st.attribution.make_method(method, **METHOD_CASES[method])
    state = dict(vars(m))
    before = Snapshot.take(model, x)
    for _ in range(3):
        st.explain(model, x, m)
    before.assert_unchanged(model, x)
    assert dict(vars(m)) == state, "the method object must not accumulate state"


@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_single_calls(method: str) -> None:
    """Row i of a batch with seed s equals a single call on image i with seed s + i
    (seed s for methods that draw one random set for every row, such as RISE's masks)."""
    model, _ = _prepared_model()
    x = tiny_inputs(n=3)
    batch = st.explain(model, x, method, seed=10, **METHOD_CASES[method])
    shared = getattr(REGISTRY[method], "shares_seed_across_rows", False)
    for i in range(len(x)):
        seed = 10 if shared else 10 + i
        single = st.explain(model, x[i : i + 1], method, seed=seed, **METHOD_CASES[method])
        torch.testing.assert_close(
            single.attributions[0], batch.attributions[i], rtol=1e-10, atol=1e-12
        )
        assert int(single.targets[0]) == int(batch.targets[i])


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_output_bitwise_and_chunking_does_not_matter(method: str) -> None:
    model, _ = _prepared_model()
    x = tiny_inputs(n=3)
    a = st.explain(model, x, method, seed=3, **METHOD_CASES[method]).attributions
    b = st.explain(model, x, method, seed=3, **METHOD_CASES[method]).attributions
    c = st.explain(model, x, method, seed=3, batch_size=2, **METHOD_CASES[method]).attributions
    assert torch.equal(a, b)
    torch.testing.assert_close(c, a, rtol=1e-10, atol=1e-12)


def test_stochastic_method_changes_with_seed() -> None:
    model, _ = _prepared_model()
    x = tiny_inputs(n=1)
    a = st.explain(model, x, "smoothgrad", seed=1, samples=3).attributions
    b = st.explain(model, x, "smoothgrad", seed=2, samples=3).attributions
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("method", METHODS)
def test_training_mode_is_refused_and_left_alone(method: str) -> None:
    model, _ = _prepared_model()
    model.train()
    x = tiny_inputs()
    before = Snapshot.take(model, x)
    with pytest.raises(ModelStateError, match=r"training mode .* call model\.eval\(\) first"):
        st.explain(model, x, method, **METHOD_CASES[method])
    before.assert_unchanged(model, x)
    assert model.training


class _DrawsRandomNumbers(torch.nn.Module):
    """A model whose forward consumes the global RNG (adds zero times a random draw)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_model()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + 0 * torch.rand(1, dtype=x.dtype)


@pytest.mark.parametrize("method", METHODS)
def test_global_rng_restored_even_when_the_model_draws_from_it(method: str) -> None:
    model = _DrawsRandomNumbers().eval()
    x = tiny_inputs()
    before = Snapshot.take(model, x)
    st.explain(model, x, method, **METHOD_CASES[method])
    before.assert_unchanged(model, x)
