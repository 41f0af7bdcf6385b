"""Templates of the anatomy findings: module cards, ablation, probes, TCAV
(:mod:`seethrough.anatomy.describe`)."""

from __future__ import annotations

EN: dict[str, str] = {
    # the whole run
    "anatomy.baseline": (
        "Without any ablation the network classifies {accuracy:.1%} of the {n} images correctly."
    ),
    "anatomy.pixels": (
        "A linear probe on the raw pixels reaches {accuracy:.1%} held-out accuracy (chance: "
        "{chance:.1%}); a layer's probe is worth reading against these."
    ),
    "anatomy.most": (
        "Of the modules examined, mean-ablating {name} lowers accuracy the most, to "
        "{accuracy:.1%}: the network relies on it."
    ),
    "anatomy.none": (
        "No module examined is indispensable on its own: mean-ablating the most harmful "
        "one, {name}, still leaves {accuracy:.1%} accuracy."
    ),
    # one module's card
    "anatomy.card.relies": (
        "Mean-ablating {name} lowers accuracy to {accuracy:.1%}: {drop:.1%} of the images "
        "fewer are classified correctly, so the network relies on it."
    ),
    "anatomy.card.barely": (
        "Mean-ablating {name} barely changes accuracy ({accuracy:.1%}; {drop:.1%} of the "
        "images fewer classified correctly)."
    ),
    "anatomy.card.not_lower": ("Mean-ablating {name} does not lower accuracy ({accuracy:.1%})."),
    "anatomy.card.class": (
        "Of the classes, {cls} loses the most when {name} is ablated: {drop:.1%} of its "
        "{count} images fewer are classified correctly (its accuracy falls to "
        "{accuracy:.1%}; the largest of the per-class drops, not a tested difference)."
    ),
    "anatomy.card.channel": (
        "The single most important channel of {name} is channel {channel}: zero-ablating "
        "it alone costs {drop:.1%} of the images."
    ),
    "anatomy.card.probe_gain": (
        "A linear probe on the output of {name} reaches {accuracy:.1%} held-out accuracy, "
        "against {random:.1%} on the same layer of a randomly initialised network (paired "
        "test over the held-out images, p = {p:.2g}): training made the classes more "
        "linearly readable here."
    ),
    "anatomy.card.probe_no_gain": (
        "A linear probe on the output of {name} reaches {accuracy:.1%} held-out accuracy, "
        "not clearly above {random:.1%} on the same layer of a randomly initialised "
        "network (paired test over the held-out images, p = {p:.2g}): this accuracy need "
        "not come from training."
    ),
    "anatomy.card.probe_gain_holm": (
        "A linear probe on the output of {name} reaches {accuracy:.1%} held-out accuracy, "
        "against {random:.1%} on the same layer of a randomly initialised network (paired "
        "test over the held-out images, Holm-corrected over {family} modules: p = {p:.2g}): "
        "training made the classes more linearly readable here."
    ),
    "anatomy.card.probe_no_gain_holm": (
        "A linear probe on the output of {name} reaches {accuracy:.1%} held-out accuracy, "
        "not clearly above {random:.1%} on the same layer of a randomly initialised "
        "network (paired test over the held-out images, Holm-corrected over {family} "
        "modules: p = {p:.2g}): this accuracy need not come from training."
    ),
    "anatomy.card.probe": (
        "A linear probe on the output of {name} reaches {accuracy:.1%} held-out accuracy "
        "(no random-network baseline to compare with)."
    ),
    # ablation results
    "ablation.baseline": "With nothing ablated, accuracy is {accuracy:.1%}.",
    "ablation.drop": (
        "Ablating {name}: accuracy {accuracy:.1%}, {drop:.1%} of the images fewer "
        "classified correctly."
    ),
    "ablation.not_lower": "Ablating {name}: accuracy {accuracy:.1%}, not lower than without.",
    # probe tables
    "probes.pixels": (
        "A linear probe on the raw pixels reaches {accuracy:.1%} held-out accuracy (chance: "
        "{chance:.1%})."
    ),
    "probes.gain": (
        "At {layer} a linear probe reaches {accuracy:.1%} held-out accuracy, against "
        "{random:.1%} on a randomly initialised network (paired test over the held-out "
        "images, Holm-corrected over {family} layers: p = {p:.2g}): training made the "
        "classes more linearly readable here."
    ),
    "probes.no_gain": (
        "At {layer} a linear probe reaches {accuracy:.1%} held-out accuracy, not clearly "
        "above {random:.1%} on a randomly initialised network (paired test over the "
        "held-out images, Holm-corrected over {family} layers: p = {p:.2g})."
    ),
    "probes.plain": "At {layer} a linear probe reaches {accuracy:.1%} held-out accuracy.",
    # TCAV (Kim et al., 2018)
    "tcav.raises": (
        "At {layer}, moving towards the concept {concept} raises the score of the class "
        "{cls} for more inputs than random directions do: TCAV score {mean:.2f} against "
        "{null_mean:.2f} ± {null_std:.2f} for random sets of {examples} examples "
        "(p = {p:.2g} < α = {alpha:.2g}; the concept's direction is learnable, p = {cav_p:.2g})."
    ),
    "tcav.lowers": (
        "At {layer}, moving towards the concept {concept} raises the score of the class "
        "{cls} for fewer inputs than random directions do: TCAV score {mean:.2f} against "
        "{null_mean:.2f} ± {null_std:.2f} for random sets of {examples} examples "
        "(p = {p:.2g} < α = {alpha:.2g}; the concept's direction is learnable, p = {cav_p:.2g})."
    ),
    "tcav.not_significant": (
        "No evidence that the model uses the concept {concept} for the class {cls} at "
        "{layer}: TCAV score {mean:.2f} against {null_mean:.2f} ± {null_std:.2f} for random "
        "sets of {examples} examples (p = {p:.2g}, not below α = {alpha:.2g})."
    ),
    "tcav.not_learnable": (
        "The concept {concept} cannot be told from random inputs at {layer} better than "
        "random sets can (p = {cav_p:.2g}, not below α = {alpha:.2g}): it has no direction "
        "there, so the test says nothing about the class {cls}."
    ),
}

ZH: dict[str, str] = {
    "anatomy.baseline": "不做任何消融时，网络能正确分类 {n} 张图像中的 {accuracy:.1%}。",
    "anatomy.pixels": (
        "原始像素上的线性探针在留出数据上的准确率为 {accuracy:.1%}（随机水平："
        "{chance:.1%}）；各层的探针结果应与此对照来读。"
    ),
    "anatomy.most": (
        "在所考察的模块中，对 {name} 做均值消融使准确率下降最多，降至 {accuracy:.1%}：网络依赖它。"
    ),
    "anatomy.none": (
        "所考察的模块中没有哪个单独不可或缺：对影响最大的 {name} 做均值消融后，准确率"
        "仍有 {accuracy:.1%}。"
    ),
    "anatomy.card.relies": (
        "对 {name} 做均值消融后，准确率降至 {accuracy:.1%}：正确分类的图像少了 "
        "{drop:.1%}，因此网络依赖它。"
    ),
    "anatomy.card.barely": (
        "对 {name} 做均值消融几乎不改变准确率（{accuracy:.1%}；正确分类的图像少了 {drop:.1%}）。"
    ),
    "anatomy.card.not_lower": "对 {name} 做均值消融不会降低准确率（{accuracy:.1%}）。",
    "anatomy.card.class": (
        "消融 {name} 时，各类别中 {cls} 损失最大：该类 {count} 张图像中正确分类的少了 "
        "{drop:.1%}（其准确率降至 {accuracy:.1%}；这是各类别下降中的最大值，并非经检验的差异）。"
    ),
    "anatomy.card.channel": (
        "{name} 最重要的单个通道是通道 {channel}：单独将其置零会损失 {drop:.1%} 的图像。"
    ),
    "anatomy.card.probe_gain": (
        "{name} 输出上的线性探针在留出数据上的准确率为 {accuracy:.1%}，而随机初始化网络"
        "同一层上为 {random:.1%}（在留出图像上的配对检验，p = {p:.2g}）：训练使这里的"
        "类别更容易被线性读出。"
    ),
    "anatomy.card.probe_no_gain": (
        "{name} 输出上的线性探针在留出数据上的准确率为 {accuracy:.1%}，并未明显高于随机"
        "初始化网络同一层上的 {random:.1%}（在留出图像上的配对检验，p = {p:.2g}）："
        "这一准确率未必来自训练。"
    ),
    "anatomy.card.probe_gain_holm": (
        "{name} 输出上的线性探针在留出数据上的准确率为 {accuracy:.1%}，而随机初始化网络"
        "同一层上为 {random:.1%}（在留出图像上的配对检验，对 {family} 个模块做 Holm 校正后 "
        "p = {p:.2g}）：训练使这里的类别更容易被线性读出。"
    ),
    "anatomy.card.probe_no_gain_holm": (
        "{name} 输出上的线性探针在留出数据上的准确率为 {accuracy:.1%}，并未明显高于随机"
        "初始化网络同一层上的 {random:.1%}（在留出图像上的配对检验，对 {family} 个模块做 "
        "Holm 校正后 p = {p:.2g}）：这一准确率未必来自训练。"
    ),
    "anatomy.card.probe": (
        "{name} 输出上的线性探针在留出数据上的准确率为 {accuracy:.1%}（没有随机网络基线可供比较）。"
    ),
    "ablation.baseline": "不做消融时，准确率为 {accuracy:.1%}。",
    "ablation.drop": "消融 {name}：准确率 {accuracy:.1%}，正确分类的图像少了 {drop:.1%}。",
    "ablation.not_lower": "消融 {name}：准确率 {accuracy:.1%}，不低于不消融时。",
    "probes.pixels": (
        "原始像素上的线性探针在留出数据上的准确率为 {accuracy:.1%}（随机水平：{chance:.1%}）。"
    ),
    "probes.gain": (
        "在 {layer}，线性探针在留出数据上的准确率为 {accuracy:.1%}，而随机初始化网络上为 "
        "{random:.1%}（在留出图像上的配对检验，对 {family} 个层做 Holm 校正后 p = {p:.2g}）："
        "训练使这里的类别更容易被线性读出。"
    ),
    "probes.no_gain": (
        "在 {layer}，线性探针在留出数据上的准确率为 {accuracy:.1%}，并未明显高于随机初始化"
        "网络上的 {random:.1%}（在留出图像上的配对检验，对 {family} 个层做 Holm 校正后 "
        "p = {p:.2g}）。"
    ),
    "probes.plain": "在 {layer}，线性探针在留出数据上的准确率为 {accuracy:.1%}。",
    "tcav.raises": (
        "在 {layer}，朝概念 {concept} 方向移动时，类别 {cls} 得分上升的输入比随机方向更多："
        "TCAV 得分为 {mean:.2f}，"
        "而由 {examples} 个样本组成的随机集合为 {null_mean:.2f} ± {null_std:.2f}"
        "（p = {p:.2g} < α = {alpha:.2g}；该概念的方向可学习，p = {cav_p:.2g}）。"
    ),
    "tcav.lowers": (
        "在 {layer}，朝概念 {concept} 方向移动时，类别 {cls} 得分上升的输入比随机方向更少："
        "TCAV 得分为 {mean:.2f}，"
        "而由 {examples} 个样本组成的随机集合为 {null_mean:.2f} ± {null_std:.2f}"
        "（p = {p:.2g} < α = {alpha:.2g}；该概念的方向可学习，p = {cav_p:.2g}）。"
    ),
    "tcav.not_significant": (
        "没有证据表明模型在 {layer} 对类别 {cls} 使用了概念 {concept}：TCAV 得分为 "
        "{mean:.2f}，而由 {examples} 个样本组成的随机集合为 {null_mean:.2f} ± "
        "{null_std:.2f}（p = {p:.2g}，不低于 α = {alpha:.2g}）。"
    ),
    "tcav.not_learnable": (
        "在 {layer}，概念 {concept} 与随机输入的区分程度并不比随机集合更好"
        "（p = {cav_p:.2g}，不低于 α = {alpha:.2g}）：它在那里没有方向，因此该检验对类别 "
        "{cls} 说明不了什么。"
    ),
}
