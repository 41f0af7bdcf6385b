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
    # where the map lies, region first (what a reader asks); {hedge} says how far the
    # method can be trusted here. "Total": the sum of the map's absolute values.
    "explanation.focus": (
        "{hedge}the map is strongest in the {region} ({region_share:%} of the map's total on "
        "{region_area:%} of the image) and {degree}: the top {top_fraction:%} of pixels hold "
        "{concentration:%} of the total ({top_fraction:%} if it were even)."
    ),
    "explanation.hedge.passed": "Sanity check passed: ",
    "explanation.hedge.unchecked": "Hypothesis (not sanity-checked on this model): ",
    "explanation.hedge.inconclusive": "Hypothesis (sanity check inconclusive on this model): ",
    "explanation.degree.concentrated": "concentrated",
    "explanation.degree.moderate": "moderately concentrated",
    "explanation.degree.spread": "spread over the image",
    "explanation.unreliable": (
        "{method} is not reliable for this model: it failed its sanity check (its maps barely "
        "depend on what the model learned), so its map says nothing about this image."
    ),
    "explanation.focus.zero": "The map of {method} is zero everywhere: it points nowhere.",
    "explanation.focus.nonfinite": (
        "The map of {method} is not finite (NaN or infinite), so it points nowhere."
    ),
    # completeness (Sundararajan et al.): attributions add up to the score change
    # completeness: the attributions of a path method add up to the score change
    "explanation.completeness.ok": (
        "The attributions add up: they sum to {sum:.4g}, and the score changed by "
        "{difference:.4g} from the baseline image (a relative error of {relative_error:.1%}, "
        "within what the method's authors advise)."
    ),
    "explanation.completeness.off": (
        "The attributions do not add up: they sum to {sum:.4g}, but the score changed by "
        "{difference:.4g} from the baseline image (a relative error of {relative_error:.1%}, "
        "more than the method's authors advise), so the map is inaccurate: use more steps."
    ),
    # method names
    "method.gradient": "Gradient",
    "method.gradient_x_input": "Gradient × input",
    "method.integrated_gradients": "Integrated gradients",
    "method.expected_gradients": "Expected gradients",
    "method.guided_integrated_gradients": "Guided integrated gradients",
    "method.guided_backprop": "Guided backpropagation",
    "method.deconvnet": "Deconvnet",
    "method.lrp": "Layer-wise relevance propagation (LRP)",
    "method.deeplift": "DeepLIFT",
    "method.deepshap": "DeepSHAP",
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
        "{method} 解释的是类别“{label}”（索引 {index}），模型对该类别的得分为 {score:.3g}。"
    ),
    "explanation.target.unnamed": (
        "{method} 解释的是类别 {index}，模型对该类别的得分为 {score:.3g}。"
    ),
    "explanation.target.custom": "{method} 解释的是自定义目标，模型对该目标的得分为 {score:.3g}。",
    "explanation.target.image": (
        "图像 {image}：{method} 解释的是类别“{label}”（索引 {index}），模型对该类别的得分为 "
        "{score:.3g}。"
    ),
    "explanation.target.unnamed.image": (
        "图像 {image}：{method} 解释的是类别 {index}，模型对该类别的得分为 {score:.3g}。"
    ),
    "explanation.target.custom.image": (
        "图像 {image}：{method} 解释的是自定义目标，模型对该目标的得分为 {score:.3g}。"
    ),
    "explanation.predicted": "模型自己判断最可能的类别是“{label}”（索引 {index}）。",
    "explanation.predicted.unnamed": "模型自己判断最可能的类别是类别 {index}。",
    # 先说位置（读者最关心的），再说集中程度；“总量”指解释图绝对值之和
    "explanation.focus": (
        "{hedge}解释图在{region}最强（以图像 {region_area:%} 的面积占总量的 "
        "{region_share:%}），{degree}：前 {top_fraction:%} 的像素占总量的 {concentration:%}"
        "（若均匀分布则为 {top_fraction:%}）。"
    ),
    "explanation.hedge.passed": "已通过合理性检验：",
    "explanation.hedge.unchecked": "假设（未在此模型上做合理性检验）：",
    "explanation.hedge.inconclusive": "假设（在此模型上的合理性检验无定论）：",
    "explanation.degree.concentrated": "分布集中",
    "explanation.degree.moderate": "分布较为集中",
    "explanation.degree.spread": "分散在整幅图像上",
    "explanation.unreliable": (
        "{method} 对此模型不可靠：它没有通过合理性检验（其解释图几乎不依赖模型学到的内容），"
        "因此它的解释图不能说明这幅图像的任何情况。"
    ),
    "explanation.focus.zero": "{method} 的解释图处处为零：它没有指向任何区域。",
    "explanation.focus.nonfinite": (
        "{method} 的解释图含有非有限值（NaN 或无穷大），因此没有指向任何区域。"
    ),
    "explanation.completeness.ok": (
        "归因之和与得分变化相符：归因之和为 {sum:.4g}，得分相对基线图像变化了 {difference:.4g}"
        "（相对误差 {relative_error:.1%}，在方法作者建议的范围之内）。"
    ),
    "explanation.completeness.off": (
        "归因之和与得分变化不符：归因之和为 {sum:.4g}，但得分相对基线图像变化了 "
        "{difference:.4g}（相对误差 {relative_error:.1%}，超出方法作者建议的范围），"
        "因此解释图不准确：请增加步数。"
    ),
    "method.gradient": "梯度",
    "method.gradient_x_input": "梯度 × 输入",
    "method.integrated_gradients": "积分梯度",
    "method.expected_gradients": "期望梯度",
    "method.guided_integrated_gradients": "引导积分梯度",
    "method.guided_backprop": "引导反向传播",
    "method.deconvnet": "反卷积网络（Deconvnet）",
    "method.lrp": "逐层相关性传播（LRP）",
    "method.deeplift": "DeepLIFT",
    "method.deepshap": "DeepSHAP",
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
