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
}
