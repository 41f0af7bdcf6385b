"""Does keeping batch-norm running statistics freeze Grad-CAM under cascading randomization?

    PYTHONPATH=src python scripts/sanity_bn_reset.py

EfficientNet-Lite0 on five bundled photos, block steps, Grad-CAM at ``_conv_head`` and the
gradient: mean Spearman (absolute maps) with the trained map after each step, once with the
running statistics kept (the paper's choice, our default) and once reset. About 3 minutes on
2 CPU cores.
"""

from __future__ import annotations

import seethrough as st
from seethrough.trust import model_randomization

PHOTOS = ["chelsea", "coffee", "rocket", "astronaut", "motorcycle_left"]


def main() -> None:
    net = st.load_model("efficientnet-lite0")
    x = net.preprocess(st.load_images([f"sample:{p}" for p in PHOTOS]))
    for reset in (False, True):
        result = model_randomization(
            net,
            x,
            ["grad_cam", "gradient"],
            layer="_conv_head",
            metrics=("spearman_abs",),
            reset_running_stats=reset,
        )
        print(f"\nreset_running_stats={reset}")
        print("| method | " + " | ".join(s.name for s in result.steps) + " |")
        print("|---" * (len(result.steps) + 1) + "|")
        for m in result.methods:
            means = result.similarity(m).mean("spearman_abs")
            print(f"| {m} | " + " | ".join(f"{float(v):.3f}" for v in means) + " |")


if __name__ == "__main__":
    main()
