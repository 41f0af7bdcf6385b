"""Templates of the robustness findings: attacks and robust evaluation
(:mod:`seethrough.robust.attacks`, :mod:`seethrough.robust.evaluate`)."""

from __future__ import annotations

EN: dict[str, str] = {
    "robust.norm.linf": "L∞",
    "robust.norm.l2": "L²",
    "robust.space.input": "input units",
    "robust.space.pixels": "pixel units",
    # one attack
    "robust.attack.fgsm.untargeted": (
        "{method} ({norm}, ε = {eps:.4g} in {space}) changed the prediction of {rate:.1%} of "
        "the {n} images; the median margin on the adversarial images (the attacked class's "
        "score minus the best other class's) is {margin:.3g}."
    ),
    "robust.attack.fgsm.targeted": (
        "{method} ({norm}, ε = {eps:.4g} in {space}) moved {rate:.1%} of the {n} images to "
        "their target class; the median margin of the target class on the adversarial "
        "images is {margin:.3g}."
    ),
    "robust.attack.pgd.untargeted": (
        "{method} ({norm}, ε = {eps:.4g} in {space}, {steps} steps, random starts: {restarts}) "
        "changed the prediction of {rate:.1%} of the {n} images; the median margin on the "
        "adversarial images (the attacked class's score minus the best other class's) is "
        "{margin:.3g}."
    ),
    "robust.attack.pgd.targeted": (
        "{method} ({norm}, ε = {eps:.4g} in {space}, {steps} steps, random starts: {restarts}) "
        "moved {rate:.1%} of the {n} images to their target class; the median margin of "
        "the target class on the adversarial images is {margin:.3g}."
    ),
    # robust evaluation
    "robust.eval.clean": (
        "Without attack the model classifies {accuracy:.1%} [{low:.1%}, {high:.1%}] of the "
        "{n} images correctly ({level:%} bootstrap interval)."
    ),
    "robust.eval.eps": (
        "Under PGD ({norm}, ε = {eps:.4g} in {space}, {steps} steps, random starts: {restarts}), "
        "{accuracy:.1%} [{low:.1%}, {high:.1%}] of the images stay correctly classified."
    ),
    "robust.eval.worst": (
        "Counting an image only if it survives every attack run at ε = {eps:.4g} (including "
        "the checks below), {accuracy:.1%} [{low:.1%}, {high:.1%}] do."
    ),
    # checks for gradient masking
    "robust.check.more_steps.passed": (
        "Continuing the attack to {steps} steps raised robust accuracy at no ε beyond "
        "sampling noise (exact one-sided McNemar tests, Holm-corrected, level {alpha:g})."
    ),
    "robust.check.more_steps.failed": (
        "Warning: at ε = {eps:.4g}, continuing the attack to {steps} steps leaves more images "
        "correct ({accuracy:.1%}) than stopping half-way ({bound:.1%}; {gained} images gained "
        "against {lost} lost, exact one-sided McNemar test, Holm-corrected p = {p:.2g}). More "
        "steps cannot make a model more robust: a sign of gradient masking, so this robust "
        "accuracy is not trustworthy."
    ),
    "robust.check.larger_eps.passed": (
        "Robust accuracy does not rise with ε beyond sampling noise (exact one-sided "
        "McNemar tests, Holm-corrected, level {alpha:g})."
    ),
    "robust.check.larger_eps.failed": (
        "Warning: more images stay correct at ε = {eps:.4g} ({accuracy:.1%}) than at the "
        "smaller ε = {smaller:.4g} ({bound:.1%}; {gained} images gained against {lost} lost, "
        "exact one-sided McNemar test, Holm-corrected p = {p:.2g}). A larger ball cannot make "
        "a model more robust: a sign of gradient masking."
    ),
    "robust.check.transfer.passed": (
        "An attack made on {source} and transferred fools no more images than the white-box "
        "attack, at any ε, beyond sampling noise (exact one-sided McNemar tests, "
        "Holm-corrected, level {alpha:g})."
    ),
    "robust.check.transfer.failed": (
        "Warning: at ε = {eps:.4g}, an attack made on {source} and transferred leaves only "
        "{bound:.1%} of the images correct, fewer than the white-box attack on the model "
        "itself ({accuracy:.1%}; {gained} against {lost} images, exact one-sided McNemar "
        "test, Holm-corrected p = {p:.2g}): the model's own gradients mislead the attack, a "
        "sign of gradient masking."
    ),
    "robust.check.large_eps.passed": (
        "At a large ε = {eps:.4g}, which reaches every valid input, the attack leaves "
        "{accuracy:.1%} of the images correct (at most {bound:.1%} allowed): it finds "
        "adversarial examples when they must exist."
    ),
    "robust.check.large_eps.failed": (
        "Warning: even at ε = {eps:.4g}, which reaches every valid input, the attack leaves "
        "{accuracy:.1%} of the images correct (more than {bound:.1%}): it misses adversarial "
        "examples that must exist, a sign of gradient masking or of too few steps."
    ),
    "robust.check.large_eps.skipped": (
        "The check at a large ε did not run (no bounded valid range to derive it from, or "
        "large_eps=None)."
    ),
    # explanation fragility (robust.fragility) — helper B's block
    "robust.fragility.attack": (
        "The top-{k} attack on {method} maps (L∞, ε = {eps:.4g} in {space}, {steps} sign "
        "steps) kept the prediction of each of the {n} images; a median {kept:.1%} of each "
        "clean map's {k} most important pixels are still among the {k} most important of "
        "the attacked map (median Spearman correlation of the two maps: {rho:.2f})."
    ),
    "robust.fragility.random.more": (
        "Random sign noise of the same ε leaves a median {random:.1%} of them in place "
        "(Spearman {rho:.2f}): the attack moves the explanation further than noise "
        "({kept:.1%} against {random:.1%}, paired sign-flip test p = {p:.2g}). The noise "
        "changed the prediction of {changed} images."
    ),
    "robust.fragility.random.not_more": (
        "Random sign noise of the same ε leaves a median {random:.1%} of them in place "
        "(Spearman {rho:.2f}); these images do not show the attack moving the explanation "
        "further than noise ({kept:.1%} against {random:.1%}, paired sign-flip test "
        "p = {p:.2g}). The noise changed the prediction of {changed} images."
    ),
    # comparison study (robust.compare) — helper A's block
    "robust.compare.model": (
        "{model} classifies {accuracy:.1%} [{accuracy_low:.1%}, {accuracy_high:.1%}] of the "
        "{n} images correctly; the median alignment of an image with the gradient of its "
        "class margin (Etmann et al.'s measure, in {space}: zero when orthogonal, one when "
        "parallel) is {alignment:.3f} [{alignment_low:.3f}, {alignment_high:.3f}] ({level:%} "
        "bootstrap intervals)."
    ),
    "robust.compare.alignment.separated": (
        "Alignment is highest for {first}, {first_value:.3f} [{first_low:.3f}, "
        "{first_high:.3f}], then {second}, {second_value:.3f} [{second_low:.3f}, "
        "{second_high:.3f}]; the intervals do not overlap."
    ),
    "robust.compare.alignment.overlap": (
        "Alignment is highest for {first}, {first_value:.3f} [{first_low:.3f}, "
        "{first_high:.3f}], then {second}, {second_value:.3f} [{second_low:.3f}, "
        "{second_high:.3f}]; the intervals overlap, so these images do not separate the two."
    ),
    "robust.compare.rank.separated": (
        "{method}, {metric}: {first} has the {order} value, {first_value:.3g} "
        "[{first_low:.3g}, {first_high:.3g}], then {second}, {second_value:.3g} "
        "[{second_low:.3g}, {second_high:.3g}]; the intervals do not overlap."
    ),
    "robust.compare.rank.overlap": (
        "{method}, {metric}: {first} has the {order} value, {first_value:.3g} "
        "[{first_low:.3g}, {first_high:.3g}], then {second}, {second_value:.3g} "
        "[{second_low:.3g}, {second_high:.3g}]; the intervals overlap, so these images do "
        "not separate the two."
    ),
    "robust.compare.single": (
        "{method} on {model}, {metric}: {value:.3g} [{low:.3g}, {high:.3g}]."
    ),
    "robust.compare.recognised": (
        "{judge} assigns {k} of the {n} class-maximising images of {model} to their class "
        "({value:.0%}, exact {level:%} interval [{low:.0%}, {high:.0%}])."
    ),
    "robust.compare.edges": (
        "Similarity to the image's edges is reported, not ranked as better or worse: an "
        "edge detector, which ignores the model, already resembles many saliency maps "
        "(Adebayo et al.)."
    ),
    "robust.compare.intervals": (
        "The intervals are per model: intervals that do not overlap are a conservative sign "
        "of a difference, overlapping ones do not rule one out; a paired test over the same "
        "images is the sharper check."
    ),
    "robust.compare.order.highest": "highest",
    "robust.compare.order.lowest": "lowest",
    "robust.compare.metric.edge_ssim": "SSIM with the image's Sobel edges",
    "robust.compare.metric.edge_spearman": "rank correlation with the image's Sobel edges",
    "robust.compare.metric.deletion": "deletion AUC (lower is more faithful)",
    "robust.compare.metric.insertion": "insertion AUC (higher is more faithful)",
    "robust.compare.metric.max_sensitivity": "max-sensitivity (lower is more stable)",
    "robust.compare.metric.sanity_final": (
        "rank correlation with the original map after the whole randomization cascade "
        "(lower means the map depends more on the weights)"
    ),
}

ZH: dict[str, str] = {
    "robust.norm.linf": "L∞",
    "robust.norm.l2": "L²",
    "robust.space.input": "模型输入单位",
    "robust.space.pixels": "像素单位",
    "robust.attack.fgsm.untargeted": (
        "{method}（{norm}，ε = {eps:.4g}，{space}）改变了 {n} 张图像中 {rate:.1%} 的预测；"
        "对抗图像上的中位边际（被攻击类别的得分减去其他类别的最高得分）为 {margin:.3g}。"
    ),
    "robust.attack.fgsm.targeted": (
        "{method}（{norm}，ε = {eps:.4g}，{space}）使 {n} 张图像中 {rate:.1%} 被判为目标类别；"
        "对抗图像上目标类别的中位边际为 {margin:.3g}。"
    ),
    "robust.attack.pgd.untargeted": (
        "{method}（{norm}，ε = {eps:.4g}，{space}，{steps} 步，随机起点 {restarts} 个）改变了 "
        "{n} 张图像中 {rate:.1%} 的预测；对抗图像上的中位边际（被攻击类别的得分减去其他类别"
        "的最高得分）为 {margin:.3g}。"
    ),
    "robust.attack.pgd.targeted": (
        "{method}（{norm}，ε = {eps:.4g}，{space}，{steps} 步，随机起点 {restarts} 个）使 {n} "
        "张图像中 {rate:.1%} 被判为目标类别；对抗图像上目标类别的中位边际为 {margin:.3g}。"
    ),
    "robust.eval.clean": (
        "不加攻击时，模型正确分类 {n} 张图像中的 {accuracy:.1%} [{low:.1%}, {high:.1%}]"
        "（{level:%} 自助法区间）。"
    ),
    "robust.eval.eps": (
        "在 PGD（{norm}，ε = {eps:.4g}，{space}，{steps} 步，随机起点 {restarts} 个）攻击下，"
        "仍有 {accuracy:.1%} [{low:.1%}, {high:.1%}] 的图像被正确分类。"
    ),
    "robust.eval.worst": (
        "若只计入在 ε = {eps:.4g} 下经受住所有攻击（包括下面的检查）的图像，"
        "比例为 {accuracy:.1%} [{low:.1%}, {high:.1%}]。"
    ),
    "robust.check.more_steps.passed": (
        "把攻击延续到 {steps} 步，在任何 ε 下都没有使鲁棒准确率超出抽样噪声地升高"
        "（精确单侧 McNemar 检验，Holm 校正，水平 {alpha:g}）。"
    ),
    "robust.check.more_steps.failed": (
        "警告：在 ε = {eps:.4g} 下，把攻击延续到 {steps} 步后仍正确的图像（{accuracy:.1%}）"
        "反而多于半途停止时（{bound:.1%}；多出 {gained} 张、减少 {lost} 张，精确单侧 McNemar "
        "检验，Holm 校正后 p = {p:.2g}）。更多步数不可能让模型更鲁棒：这是梯度掩蔽的迹象，"
        "此鲁棒准确率不可信。"
    ),
    "robust.check.larger_eps.passed": (
        "鲁棒准确率没有随 ε 增大而超出抽样噪声地升高（精确单侧 McNemar 检验，Holm 校正，"
        "水平 {alpha:g}）。"
    ),
    "robust.check.larger_eps.failed": (
        "警告：在 ε = {eps:.4g} 下仍正确的图像（{accuracy:.1%}）多于较小的 ε = {smaller:.4g} "
        "下（{bound:.1%}；多出 {gained} 张、减少 {lost} 张，精确单侧 McNemar 检验，Holm 校正后 "
        "p = {p:.2g}）。更大的扰动范围不可能让模型更鲁棒：这是梯度掩蔽的迹象。"
    ),
    "robust.check.transfer.passed": (
        "在 {source} 上生成并迁移过来的攻击，在任何 ε 下骗过的图像都没有超出抽样噪声地多于"
        "白盒攻击（精确单侧 McNemar 检验，Holm 校正，水平 {alpha:g}）。"
    ),
    "robust.check.transfer.failed": (
        "警告：在 ε = {eps:.4g} 下，在 {source} 上生成并迁移过来的攻击只留下 {bound:.1%} "
        "的图像被正确分类，少于对模型本身的白盒攻击（{accuracy:.1%}；{gained} 对 {lost} 张，"
        "精确单侧 McNemar 检验，Holm 校正后 p = {p:.2g}）：模型自身的梯度误导了攻击，"
        "这是梯度掩蔽的迹象。"
    ),
    "robust.check.large_eps.passed": (
        "在足以到达任何合法输入的大 ε = {eps:.4g} 下，攻击只留下 {accuracy:.1%} 的图像被正确"
        "分类（允许至多 {bound:.1%}）：在对抗样本必然存在时，攻击能找到它们。"
    ),
    "robust.check.large_eps.failed": (
        "警告：即使在足以到达任何合法输入的 ε = {eps:.4g} 下，攻击仍留下 {accuracy:.1%} 的"
        "图像被正确分类（超过 {bound:.1%}）：它没有找到必然存在的对抗样本，这是梯度掩蔽或"
        "步数太少的迹象。"
    ),
    "robust.check.large_eps.skipped": (
        "大 ε 检查没有运行（没有可用来推出它的有界合法输入范围，或 large_eps=None）。"
    ),
    # explanation fragility (robust.fragility) — helper B's block
    "robust.fragility.attack": (
        "对 {method} 显著图的 top-{k} 攻击（L∞，ε = {eps:.4g}，{space}，{steps} 个符号步）"
        "保持了全部 {n} 张图像的预测不变；原显著图最重要的 {k} 个像素中，中位数 {kept:.1%} "
        "仍在攻击后显著图最重要的 {k} 个像素之中（两张图的中位 Spearman 相关为 {rho:.2f}）。"
    ),
    "robust.fragility.random.more": (
        "相同 ε 的随机符号噪声使中位数 {random:.1%} 的像素留在原位（Spearman {rho:.2f}）："
        "攻击比噪声更能移动解释（{kept:.1%} 对 {random:.1%}，配对符号翻转检验 p = {p:.2g}）。"
        "噪声改变了 {changed} 张图像的预测。"
    ),
    "robust.fragility.random.not_more": (
        "相同 ε 的随机符号噪声使中位数 {random:.1%} 的像素留在原位（Spearman {rho:.2f}）；"
        "这些图像没有显示攻击比噪声更能移动解释（{kept:.1%} 对 {random:.1%}，配对符号翻转"
        "检验 p = {p:.2g}）。噪声改变了 {changed} 张图像的预测。"
    ),
    # comparison study (robust.compare) — helper A's block
    "robust.compare.model": (
        "{model} 正确分类 {n} 张图像中的 {accuracy:.1%} [{accuracy_low:.1%}, "
        "{accuracy_high:.1%}]；图像与其类别边际梯度的对齐度（Etmann 等人的度量，{space}："
        "正交时为零，平行时为一）的中位数为 {alignment:.3f} [{alignment_low:.3f}, "
        "{alignment_high:.3f}]（{level:%} 自助法区间）。"
    ),
    "robust.compare.alignment.separated": (
        "对齐度最高的是 {first}，{first_value:.3f} [{first_low:.3f}, {first_high:.3f}]，"
        "其次是 {second}，{second_value:.3f} [{second_low:.3f}, {second_high:.3f}]；"
        "两个区间不重叠。"
    ),
    "robust.compare.alignment.overlap": (
        "对齐度最高的是 {first}，{first_value:.3f} [{first_low:.3f}, {first_high:.3f}]，"
        "其次是 {second}，{second_value:.3f} [{second_low:.3f}, {second_high:.3f}]；"
        "两个区间重叠，因此这些图像无法区分二者。"
    ),
    "robust.compare.rank.separated": (
        "{method}，{metric}：{first} 的值{order}，{first_value:.3g} [{first_low:.3g}, "
        "{first_high:.3g}]，其次是 {second}，{second_value:.3g} [{second_low:.3g}, "
        "{second_high:.3g}]；两个区间不重叠。"
    ),
    "robust.compare.rank.overlap": (
        "{method}，{metric}：{first} 的值{order}，{first_value:.3g} [{first_low:.3g}, "
        "{first_high:.3g}]，其次是 {second}，{second_value:.3g} [{second_low:.3g}, "
        "{second_high:.3g}]；两个区间重叠，因此这些图像无法区分二者。"
    ),
    "robust.compare.single": (
        "{method} 在 {model} 上，{metric}：{value:.3g} [{low:.3g}, {high:.3g}]。"
    ),
    "robust.compare.recognised": (
        "{judge} 把 {model} 的 {n} 张类别最大化图像中的 {k} 张判为其对应类别"
        "（{value:.0%}，精确 {level:%} 区间 [{low:.0%}, {high:.0%}]）。"
    ),
    "robust.compare.edges": (
        "与图像边缘的相似度只作报告，不作优劣排序：完全不看模型的边缘检测器，本身就已经"
        "与许多显著图相似（Adebayo 等人）。"
    ),
    "robust.compare.intervals": (
        "这些区间是逐模型给出的：区间不重叠是存在差异的保守迹象，区间重叠并不排除差异；"
        "在同一批图像上做配对检验才是更敏锐的检查。"
    ),
    "robust.compare.order.highest": "最高",
    "robust.compare.order.lowest": "最低",
    "robust.compare.metric.edge_ssim": "与图像 Sobel 边缘的 SSIM",
    "robust.compare.metric.edge_spearman": "与图像 Sobel 边缘的秩相关",
    "robust.compare.metric.deletion": "删除 AUC（越低越忠实）",
    "robust.compare.metric.insertion": "插入 AUC（越高越忠实）",
    "robust.compare.metric.max_sensitivity": "最大敏感度（越低越稳定）",
    "robust.compare.metric.sanity_final": (
        "整个随机化级联之后与原始显著图的秩相关（越低说明显著图越依赖权重）"
    ),
}
