"""Templates for explanations (``Explanation.describe()``) and the names of the methods."""

from __future__ import annotations

EN: dict[str, str] = {
    # which class a row explains, and the model's score for it
    "explanation.target": (
        "{method} explains the class “{label}” (index {index}); the model's score for it "
        "is {score:.3g}."
    ),
    "explanation.target.unnamed": (
        "{method} explains class {index}; the model's score for it is {score:.3g}."
    ),
    "explanation.target.custom": (
        "{method} explains a custom target; the model's score for it is {score:.3g}."
    ),
    "explanation.target.image": (
        "Image {image}: {method} explains the class “{label}” (index {index}); the model's "
        "score for it is {score:.3g}."
    ),
    "explanation.target.unnamed.image": (
        "Image {image}: {method} explains class {index}; the model's score for it is {score:.3g}."
    ),
    "explanation.target.custom.image": (
        "Image {image}: {method} explains a custom target; the model's score for it is {score:.3g}."
    ),
    "explanation.predicted": "The model's own top class is “{label}” (index {index}).",
    "explanation.predicted.unnamed": "The model's own top class is class {index}.",
    # where the map lies; {hedge} says how far the method can be trusted here
    "explanation.focus": (
        "{hedge}the map is {degree}: the top {top_fraction:%} of pixels hold "
        "{concentration:%} of its magnitude (an even map: {top_fraction:%}); the {region} "
        "holds the largest share, {region_share:%} of the magnitude on {region_area:%} of "
        "the image."
    ),
    "explanation.hedge.passed": "The method passed its sanity check on this model, and ",
    "explanation.hedge.unchecked": (
        "Not sanity-checked on this model, so read this as a hypothesis: "
    ),
    "explanation.hedge.inconclusive": (
        "The method's sanity check on this model was inconclusive, so read this as a hypothesis: "
    ),
    "explanation.degree.concentrated": "concentrated",
    "explanation.degree.moderate": "moderately concentrated",
    "explanation.degree.spread": "spread over the image",
    "explanation.unreliable": (
        "{method} is not reliable for this model: it failed its sanity check (its maps do "
        "not depend enough on what the model learned), so its map says nothing about this "
        "image."
    ),
    "explanation.focus.zero": "The map of {method} is zero everywhere: it points nowhere.",
    "explanation.focus.nonfinite": (
        "The map of {method} is not finite (NaN or infinite), so it points nowhere."
    ),
    # completeness (Sundararajan et al.): attributions add up to the score change
    "explanation.completeness.ok": (
        "Completeness check: the attributions sum to {sum:.4g} and the score changed by "
        "{difference:.4g} from the baseline, a relative error of {relative_error:.1%}, "
        "within the tolerance the method's authors recommend."
    ),
    "explanation.completeness.off": (
        "Completeness check: the attributions sum to {sum:.4g} but the score changed by "
        "{difference:.4g} from the baseline, a relative error of {relative_error:.1%}, more "
        "than the method's authors recommend: the map is not accurate; use more steps."
    ),
    # method names
    "method.gradient": "Gradient",
    "method.gradient_x_input": "Gradient × input",
    "method.integrated_gradients": "Integrated gradients",
    "method.expected_gradients": "Expected gradients",
    "method.guided_integrated_gradients": "Guided integrated gradients",
    "method.guided_backprop": "Guided backpropagation",
    "method.deconvnet": "Deconvnet",
    "method.smoothgrad": "SmoothGrad",
    "method.occlusion": "Occlusion",
    "method.rise": "RISE",
    "method.grad_cam": "Grad-CAM",
    "method.guided_grad_cam": "Guided Grad-CAM",
    "method.grad_cam_pp": "Grad-CAM++",
    "method.xgrad_cam": "XGrad-CAM",
    "method.hires_cam": "HiResCAM",
    "method.layer_cam": "LayerCAM",
    "method.score_cam": "Score-CAM",
    "method.ablation_cam": "Ablation-CAM",
    "method.eigen_cam": "Eigen-CAM",
    "method.cam": "CAM",
    "method.lime": "LIME",
    "method.kernel_shap": "Kernel SHAP",
    "method.edge_detector": "Edge detector (control)",
    "method.random_noise": "Random noise (control)",
}

ZH: dict[str, str] = {
    "explanation.target": (
        "{method} 解释的是类别“{label}”（索引 {index}），模型对它的得分为 {score:.3g}。"
    ),
    "explanation.target.unnamed": "{method} 解释的是类别 {index}，模型对它的得分为 {score:.3g}。",
    "explanation.target.custom": "{method} 解释的是自定义目标，模型对它的得分为 {score:.3g}。",
    "explanation.target.image": (
        "图像 {image}：{method} 解释的是类别“{label}”（索引 {index}），模型对它的得分为 "
        "{score:.3g}。"
    ),
    "explanation.target.unnamed.image": (
        "图像 {image}：{method} 解释的是类别 {index}，模型对它的得分为 {score:.3g}。"
    ),
    "explanation.target.custom.image": (
        "图像 {image}：{method} 解释的是自定义目标，模型对它的得分为 {score:.3g}。"
    ),
    "explanation.predicted": "模型自己给出的最高类别是“{label}”（索引 {index}）。",
    "explanation.predicted.unnamed": "模型自己给出的最高类别是类别 {index}。",
    "explanation.focus": (
        "{hedge}该图{degree}：前 {top_fraction:%} 的像素占其强度的 {concentration:%}"
        "（均匀分布的图为 {top_fraction:%}）；占比最大的区域是{region}，"
        "以图像 {region_area:%} 的面积占强度的 {region_share:%}。"
    ),
    "explanation.hedge.passed": "该方法在此模型上通过了合理性检验，",
    "explanation.hedge.unchecked": "该方法未在此模型上做合理性检验，以下仅为假设：",
    "explanation.hedge.inconclusive": "该方法在此模型上的合理性检验没有定论，以下仅为假设：",
    "explanation.degree.concentrated": "分布集中",
    "explanation.degree.moderate": "分布较为集中",
    "explanation.degree.spread": "分散在整幅图像上",
    "explanation.unreliable": (
        "{method} 对此模型不可靠：它没有通过合理性检验（其解释图对模型学到的内容依赖不足），"
        "因此它的解释图不能说明这幅图像的任何情况。"
    ),
    "explanation.focus.zero": "{method} 的解释图处处为零：它没有指向任何区域。",
    "explanation.focus.nonfinite": (
        "{method} 的解释图含有非有限值（NaN 或无穷大），因此没有指向任何区域。"
    ),
    "explanation.completeness.ok": (
        "完整性检验：归因之和为 {sum:.4g}，得分相对基线变化了 {difference:.4g}，相对误差为 "
        "{relative_error:.1%}，在方法作者建议的容差之内。"
    ),
    "explanation.completeness.off": (
        "完整性检验：归因之和为 {sum:.4g}，但得分相对基线变化了 {difference:.4g}，相对误差为 "
        "{relative_error:.1%}，超出了方法作者建议的容差：解释图不准确，请增加步数。"
    ),
    "method.gradient": "梯度",
    "method.gradient_x_input": "梯度 × 输入",
    "method.integrated_gradients": "积分梯度",
    "method.expected_gradients": "期望梯度",
    "method.guided_integrated_gradients": "引导积分梯度",
    "method.guided_backprop": "引导反向传播",
    "method.deconvnet": "反卷积网络（Deconvnet）",
    "method.smoothgrad": "SmoothGrad",
    "method.occlusion": "遮挡法",
    "method.rise": "RISE",
    "method.grad_cam": "Grad-CAM",
    "method.guided_grad_cam": "引导 Grad-CAM",
    "method.grad_cam_pp": "Grad-CAM++",
    "method.xgrad_cam": "XGrad-CAM",
    "method.hires_cam": "HiResCAM",
    "method.layer_cam": "LayerCAM",
    "method.score_cam": "Score-CAM",
    "method.ablation_cam": "Ablation-CAM",
    "method.eigen_cam": "Eigen-CAM",
    "method.cam": "CAM",
    "method.lime": "LIME",
    "method.kernel_shap": "Kernel SHAP",
    "method.edge_detector": "边缘检测器（对照）",
    "method.random_noise": "随机噪声（对照）",
}
