"""The CAM family: class activation maps at a layer's resolution.

Every method returns a raw map at the layer's resolution ``(N, 1, h, w)`` — no ReLU, no
min-max (``relu=True`` rectifies it); upsample with :meth:`Explanation.to_input_size`.
The formulas follow pytorch-grad-cam (1.5) before its ``np.maximum`` and
``scale_cam_image``, so that its maps and ours agree up to that normalisation — except
where a class says otherwise (Ablation-CAM with a negative target score; Score-CAM's
``weighting="probability"``; Eigen-CAM's sign).

* :mod:`.gradient` — ``grad_cam``, ``guided_grad_cam``, ``grad_cam_pp``, ``xgrad_cam``,
  ``hires_cam``, ``layer_cam``: one pass, the backward stops at the layer;
* :mod:`.perturbation` — ``score_cam``, ``ablation_cam``: one extra forward pass per
  channel and image, in chunks under the memory budget;
* :mod:`.eigen` — ``eigen_cam``: the first principal component of the activations
  (class-agnostic);
* :mod:`.cam` — ``cam``: the original CAM for global-average-pooling + linear heads;
* :mod:`.multilayer` — maps of several layers fused into one.
"""

# isort: skip_file
# Import order is registration order, which is the order `method_names()` lists.

from .gradient import GradCam, GradCamPlusPlus, GuidedGradCam, HiResCam, LayerCam, XGradCam
from .perturbation import AblationCam, PerturbationCamExplanation, ScoreCam
from .eigen import EigenCam
from .cam import Cam
from .multilayer import MultiLayerCamExplanation, fuse_layers

__all__ = [
    "AblationCam",
    "Cam",
    "EigenCam",
    "GradCam",
    "GradCamPlusPlus",
    "GuidedGradCam",
    "HiResCam",
    "LayerCam",
    "MultiLayerCamExplanation",
    "PerturbationCamExplanation",
    "ScoreCam",
    "XGradCam",
    "fuse_layers",
]
