"""On a CUDA device (run with ``-m gpu`` through the device tool; CI has no GPU): every
registered method gives the CPU's numbers, on the input's device, and leaves the model, the
CPU and CUDA random states as they were."""

from __future__ import annotations

import pytest
import torch

import seethrough as st
from helpers import METHOD_CASES, Snapshot, tiny_inputs, tiny_model

pytestmark = pytest.mark.gpu

# Methods whose draws come from a generator on the input's device: CUDA's stream differs
# from the CPU's, so only determinism (not equality with the CPU) is checked for them.
RANDOM = {
    "smoothgrad",
    "rise",
    "lime",
    "kernel_shap",
    "random_noise",
    "expected_gradients",
}


def _cuda() -> torch.device:
    assert torch.cuda.is_available(), "gpu tests run only where CUDA is (select with -m gpu)"
    return torch.device("cuda")


@pytest.mark.parametrize("method", sorted(METHOD_CASES))
def test_cuda_matches_cpu_and_leaves_state(method: str) -> None:
    device = _cuda()
    model = tiny_model().double()
    x = tiny_inputs().double()
    cpu = st.explain(model, x, method, target=1, **METHOD_CASES[method]).attributions
    model_cuda, x_cuda = model.to(device), x.to(device)
    before = Snapshot.take(model_cuda, x_cuda)
    cuda_rng = torch.cuda.get_rng_state(device)
    first = st.explain(model_cuda, x_cuda, method, target=1, **METHOD_CASES[method])
    again = st.explain(model_cuda, x_cuda, method, target=1, **METHOD_CASES[method])
    before.assert_unchanged(model_cuda, x_cuda)
    assert torch.equal(torch.cuda.get_rng_state(device), cuda_rng), "CUDA RNG state changed"
    assert first.attributions.device.type == "cuda"
    torch.testing.assert_close(first.attributions, again.attributions, rtol=1e-10, atol=1e-12)
    if method not in RANDOM:
        torch.testing.assert_close(first.attributions.cpu(), cpu, rtol=1e-7, atol=1e-9)


def test_efficientnet_on_cuda_matches_cpu_gradient() -> None:
    device = _cuda()
    net = st.load_model("efficientnet-lite0")
    x = net.preprocess(st.load_images(["sample:chelsea"]))
    cpu = st.explain(net, x, "gradient").attributions
    on_gpu = st.load_model("efficientnet-lite0", device=device)
    gpu = st.explain(on_gpu, x.to(device), "gradient").attributions.cpu()
    # float32 on two devices: different kernels, so a relative L2 bound, not bitwise
    assert float((gpu - cpu).norm() / cpu.norm()) < 1e-3
