"""Templates of the trust findings: sanity verdicts, faithfulness against a random ranking,
sMPRT / eMPRT and ROAR (:mod:`seethrough.trust.describe`)."""

from __future__ import annotations

EN: dict[str, str] = {
    # similarity measures
    "sanity.metric.spearman_abs": "Spearman's ρ of the absolute maps",
    "sanity.metric.spearman": "Spearman's ρ of the signed maps",
    "sanity.metric.ssim": "SSIM",
    "sanity.metric.hog": "correlation of HOG descriptors",
    "sanity.scope.cascading": "the network from the logits down to",
    "sanity.scope.independent": "only",
    # cascading model-parameter randomization, judged over the cascade (Adebayo et al.,
    # 2018; the mean over steps: seethrough.trust.verdict)
    "sanity.cascade.passed": (
        "{method} passed the model randomization check: while the network was randomized "
        "step by step from the logits down to {step}, its maps kept a mean similarity of "
        "only {mean:.2f} [{low:.2f}, {high:.2f}] to the trained model's ({metric}, averaged "
        "over the {steps} steps; {level:%} interval over {n} images), below the threshold "
        "{threshold:g}: they depend on what the model learned."
    ),
    "sanity.cascade.failed": (
        "{method} is not reliable for this model: while the network was randomized step by "
        "step from the logits down to {step}, its maps kept a mean similarity of "
        "{mean:.2f} [{low:.2f}, {high:.2f}] to the trained model's ({metric}, averaged over "
        "the {steps} steps; {level:%} interval over {n} images), above the threshold "
        "{threshold:g}: they change little when what the model learned is destroyed."
    ),
    "sanity.cascade.straddles": (
        "The model randomization check of {method} is inconclusive: while the network was "
        "randomized step by step from the logits down to {step}, its maps kept a mean "
        "similarity of {mean:.2f} [{low:.2f}, {high:.2f}] to the trained model's ({metric}, "
        "averaged over the {steps} steps; {level:%} interval over {n} images), which does "
        "not clear the threshold {threshold:g}; more images would decide."
    ),
    # model-parameter randomization after one step (Adebayo et al., 2018)
    "sanity.model.passed": (
        "{method} passed the model randomization check: after randomizing {scope} "
        "{step}, its maps keep a mean similarity of only {mean:.2f} [{low:.2f}, {high:.2f}] "
        "to the trained model's ({metric}; {level:%} interval over {n} images), below the "
        "threshold {threshold:g}."
    ),
    "sanity.model.failed": (
        "{method} is not reliable for this model: after randomizing {scope} "
        "{step}, its maps still have a mean similarity of {mean:.2f} [{low:.2f}, {high:.2f}] "
        "to the trained model's ({metric}; {level:%} interval over {n} images), above the "
        "threshold {threshold:g}: they change little when what the model learned is destroyed."
    ),
    "sanity.model.straddles": (
        "The model randomization check of {method} is inconclusive: after randomizing "
        "{scope} {step}, the mean similarity {mean:.2f} [{low:.2f}, {high:.2f}] "
        "({metric}; {level:%} interval over {n} images) does not clear the threshold "
        "{threshold:g}; more images would decide."
    ),
    "sanity.model.noise_floor": (
        "The model randomization check cannot judge {method}: two of its runs on the "
        "unchanged model agree only by {self_check:.2f} ({metric}), not above the threshold "
        "{threshold:g}, so a low similarity after randomization says nothing."
    ),
    "sanity.model.too_few": (
        "The model randomization check of {method} is inconclusive: {n} image(s) with a "
        "value are too few for an interval."
    ),
    # data randomization (random-label model)
    "sanity.data.passed": (
        "{method} passed the data randomization check: its maps for a model trained on "
        "random labels have a mean similarity of only {mean:.2f} [{low:.2f}, {high:.2f}] to "
        "the trained model's ({metric}; {level:%} interval over {n} images), below the "
        "threshold {threshold:g}."
    ),
    "sanity.data.failed": (
        "{method} is not reliable for this model: its maps for a model trained on random "
        "labels keep a mean similarity of {mean:.2f} [{low:.2f}, {high:.2f}] to the trained "
        "model's ({metric}; {level:%} interval over {n} images), above the threshold "
        "{threshold:g}: they change little when the labels carry no information."
    ),
    "sanity.data.straddles": (
        "The data randomization check of {method} is inconclusive: the mean similarity of "
        "its maps for a model trained on random labels to the trained model's, {mean:.2f} "
        "[{low:.2f}, {high:.2f}] ({metric}; {level:%} interval over {n} images), does not "
        "clear the threshold {threshold:g}; more images would decide."
    ),
    "sanity.data.too_few": (
        "The data randomization check of {method} is inconclusive: {n} image(s) with a "
        "value are too few for an interval."
    ),
    # similarity to the input's edges (a warning sign, not a test)
    "sanity.edge.above": (
        "The maps of {method} resemble the input's edges: mean similarity {mean:.2f} "
        "[{low:.2f}, {high:.2f}] to the Sobel edge map ({metric}; {level:%} interval over "
        "{n} images), above {threshold:g}; a map like this may not need the model at all."
    ),
    "sanity.edge.below": (
        "The maps of {method} do not resemble the input's edges: mean similarity {mean:.2f} "
        "[{low:.2f}, {high:.2f}] to the Sobel edge map ({metric}; {level:%} interval over "
        "{n} images), below {threshold:g}."
    ),
    "sanity.edge.straddles": (
        "Whether the maps of {method} resemble the input's edges is undecided: mean similarity "
        "{mean:.2f} [{low:.2f}, {high:.2f}] to the Sobel edge map ({metric}; {level:%} "
        "interval over {n} images) does not clear {threshold:g}."
    ),
    "sanity.edge.too_few": (
        "{n} image(s) with a value are too few to say whether the maps of {method} resemble "
        "the input's edges."
    ),
    # faithfulness metrics
    "faithfulness.metric.deletion": "deletion AUC",
    "faithfulness.metric.insertion": "insertion AUC",
    "faithfulness.metric.aopc": "AOPC",
    "faithfulness.metric.road": "ROAD (LeRF − MoRF)",
    "faithfulness.metric.infidelity": "infidelity",
    "faithfulness.metric.max_sensitivity": "max-sensitivity",
    "faithfulness.metric.sparseness": "sparseness (Gini index)",
    "faithfulness.metric.input_invariance": "input invariance (largest relative change)",
    "faithfulness.metric.pointing_game": "pointing game",
    "faithfulness.metric.energy_pointing_game": "energy-based pointing game",
    "faithfulness.metric.relevance_mass_accuracy": "relevance mass accuracy",
    "faithfulness.metric.relevance_rank_accuracy": "relevance rank accuracy",
    "faithfulness.direction.higher": "higher is better",
    "faithfulness.direction.lower": "lower is better",
    "faithfulness.score": (
        "{method}: mean {metric} {mean:.3g} ({direction}); without a random ranking to "
        "compare with, this number alone does not say whether the map is faithful."
    ),
    "faithfulness.better": (
        "By {metric}, {method} ranks pixels better than a random ranking on these images: "
        "{mean:.3g} against {control_mean:.3g} for {control} ({direction}; mean difference "
        "{difference:.3g}, {level:%} interval [{low:.3g}, {high:.3g}] over {n} images; "
        "paired t-test, Holm-corrected over {family} comparison(s): p = {p:.2g})."
    ),
    "faithfulness.worse": (
        "{method} is not reliable for this model by {metric}: it scores {mean:.3g} against "
        "{control_mean:.3g} for a random ranking ({control}), worse than random "
        "({direction}; mean difference {difference:.3g}, {level:%} interval "
        "[{low:.3g}, {high:.3g}] over {n} images; paired t-test, Holm-corrected over "
        "{family} comparison(s): p = {p:.2g})."
    ),
    "faithfulness.indistinguishable": (
        "{method} is not distinguishable from a random ranking by {metric} on {n} images: "
        "{mean:.3g} against {control_mean:.3g} for {control} ({direction}; mean difference "
        "{difference:.3g}, {level:%} interval [{low:.3g}, {high:.3g}]; paired t-test, "
        "Holm-corrected over {family} comparison(s): p = {p:.2g}, not below α = {alpha:g})."
    ),
    "faithfulness.too_few": (
        "{n} image(s) with scores of both {method} and {control} are too few to compare "
        "them by {metric}."
    ),
    # sMPRT / eMPRT (Hedström et al., 2023)
    "mprt.smooth": (
        "sMPRT of {method}: after the last randomization step ({step}) its denoised maps "
        "keep a mean Spearman's ρ of {mean:.2f} to the trained model's (lower is better; two "
        "noise draws on the unchanged model agree by {ceiling:.2f})."
    ),
    "mprt.efficient": (
        "eMPRT of {method}: randomizing the whole network changes the complexity of its maps "
        "by {mean:.2f} on average (relative rise of the entropy; higher is better; the "
        "model's own output rises by {model_rise:.2f})."
    ),
    # ROAR (Hooker et al., 2019)
    "roar.better": (
        "ROAR, {method}, {fraction:%} of the pixels removed: retrained on what is left, the "
        "model's accuracy is {difference:+.1%} against removing as many random pixels "
        "({level:%} interval [{low:+.1%}, {high:+.1%}], Holm-corrected p = {p:.2g}): "
        "the pixels {method} ranks first carry more of what a retrained model needs than "
        "random ones."
    ),
    "roar.worse": (
        "ROAR, {method}, {fraction:%} of the pixels removed: retrained on what is left, the "
        "model's accuracy is {difference:+.1%} against removing as many random pixels "
        "({level:%} interval [{low:+.1%}, {high:+.1%}], Holm-corrected p = {p:.2g}): worse "
        "than random, so {method} is not reliable for this model."
    ),
    "roar.indistinguishable": (
        "ROAR, {method}, {fraction:%} of the pixels removed: retrained on what is left, the "
        "model's accuracy is {difference:+.1%} against removing as many random pixels "
        "({level:%} interval [{low:+.1%}, {high:+.1%}], Holm-corrected p = {p:.2g}): not "
        "distinguishable from random."
    ),
}

ZH: dict[str, str] = {
    "sanity.metric.spearman_abs": "绝对值图的 Spearman 秩相关 ρ",
    "sanity.metric.spearman": "带符号图的 Spearman 秩相关 ρ",
    "sanity.metric.ssim": "SSIM",
    "sanity.metric.hog": "HOG 描述子的相关系数",
    "sanity.scope.cascading": "将网络从输出层起随机化至",
    "sanity.scope.independent": "仅随机化",
    "sanity.cascade.passed": (
        "{method} 通过了模型随机化检验：从输出层起逐步将网络随机化至 {step} 的过程中，其解释图"
        "与训练模型解释图的平均相似度仅为 {mean:.2f} [{low:.2f}, {high:.2f}]（{metric}，"
        "对 {steps} 个步骤取平均；{n} 张图像上的 {level:%} 区间），低于阈值 {threshold:g}："
        "解释图依赖于模型学到的内容。"
    ),
    "sanity.cascade.failed": (
        "{method} 对该模型不可靠：从输出层起逐步将网络随机化至 {step} 的过程中，其解释图"
        "与训练模型解释图的平均相似度仍为 {mean:.2f} [{low:.2f}, {high:.2f}]（{metric}，"
        "对 {steps} 个步骤取平均；{n} 张图像上的 {level:%} 区间），高于阈值 {threshold:g}："
        "破坏模型学到的内容后，解释图变化很小。"
    ),
    "sanity.cascade.straddles": (
        "{method} 的模型随机化检验没有定论：从输出层起逐步将网络随机化至 {step} 的过程中，"
        "其解释图与训练模型解释图的平均相似度为 {mean:.2f} [{low:.2f}, {high:.2f}]（{metric}，"
        "对 {steps} 个步骤取平均；{n} 张图像上的 {level:%} 区间），未能明确落在阈值 "
        "{threshold:g} 的一侧；需要更多图像才能判定。"
    ),
    "sanity.model.passed": (
        "{method} 通过了模型随机化检验：{scope} {step} 后，其解释图与训练模型解释图的"
        "平均相似度仅为 {mean:.2f} [{low:.2f}, {high:.2f}]（{metric}；{n} 张图像上的 "
        "{level:%} 区间），低于阈值 {threshold:g}。"
    ),
    "sanity.model.failed": (
        "{method} 对该模型不可靠：{scope} {step} 后，其解释图与训练模型解释图的平均"
        "相似度仍为 {mean:.2f} [{low:.2f}, {high:.2f}]（{metric}；{n} 张图像上的 "
        "{level:%} 区间），高于阈值 {threshold:g}：破坏模型学到的内容后，解释图变化很小。"
    ),
    "sanity.model.straddles": (
        "{method} 的模型随机化检验没有定论：{scope} {step} 后，平均相似度 {mean:.2f} "
        "[{low:.2f}, {high:.2f}]（{metric}；{n} 张图像上的 {level:%} 区间）未能明确落在"
        "阈值 {threshold:g} 的一侧；需要更多图像才能判定。"
    ),
    "sanity.model.noise_floor": (
        "模型随机化检验无法评判 {method}：它在未改动的模型上两次运行的相似度仅为 "
        "{self_check:.2f}（{metric}），不高于阈值 {threshold:g}，因此随机化后的低相似度"
        "不能说明任何问题。"
    ),
    "sanity.model.too_few": (
        "{method} 的模型随机化检验没有定论：有数值的图像只有 {n} 张，不足以计算区间。"
    ),
    "sanity.data.passed": (
        "{method} 通过了数据随机化检验：在随机标签上训练的模型的解释图与训练模型解释图的"
        "平均相似度仅为 {mean:.2f} [{low:.2f}, {high:.2f}]（{metric}；{n} 张图像上的 "
        "{level:%} 区间），低于阈值 {threshold:g}。"
    ),
    "sanity.data.failed": (
        "{method} 对该模型不可靠：在随机标签上训练的模型的解释图与训练模型解释图的平均"
        "相似度仍为 {mean:.2f} [{low:.2f}, {high:.2f}]（{metric}；{n} 张图像上的 "
        "{level:%} 区间），高于阈值 {threshold:g}：标签不含信息时，解释图变化很小。"
    ),
    "sanity.data.straddles": (
        "{method} 的数据随机化检验没有定论：随机标签模型与训练模型解释图的平均相似度 "
        "{mean:.2f} [{low:.2f}, {high:.2f}]（{metric}；{n} 张图像上的 {level:%} 区间）"
        "未能明确落在阈值 {threshold:g} 的一侧；需要更多图像才能判定。"
    ),
    "sanity.data.too_few": (
        "{method} 的数据随机化检验没有定论：有数值的图像只有 {n} 张，不足以计算区间。"
    ),
    "sanity.edge.above": (
        "{method} 的解释图与输入的边缘相似：与 Sobel 边缘图的平均相似度为 {mean:.2f} "
        "[{low:.2f}, {high:.2f}]（{metric}；{n} 张图像上的 {level:%} 区间），高于 "
        "{threshold:g}；这样的图可能根本不依赖模型。"
    ),
    "sanity.edge.below": (
        "{method} 的解释图与输入的边缘不相似：与 Sobel 边缘图的平均相似度为 {mean:.2f} "
        "[{low:.2f}, {high:.2f}]（{metric}；{n} 张图像上的 {level:%} 区间），低于 "
        "{threshold:g}。"
    ),
    "sanity.edge.straddles": (
        "{method} 的解释图是否与输入的边缘相似尚无定论：与 Sobel 边缘图的平均相似度 "
        "{mean:.2f} [{low:.2f}, {high:.2f}]（{metric}；{n} 张图像上的 {level:%} 区间）"
        "未能明确落在 {threshold:g} 的一侧。"
    ),
    "sanity.edge.too_few": (
        "有数值的图像只有 {n} 张，不足以判断 {method} 的解释图是否与输入的边缘相似。"
    ),
    "faithfulness.metric.deletion": "删除曲线下面积（deletion AUC）",
    "faithfulness.metric.insertion": "插入曲线下面积（insertion AUC）",
    "faithfulness.metric.aopc": "AOPC",
    "faithfulness.metric.road": "ROAD（LeRF − MoRF）",
    "faithfulness.metric.infidelity": "不忠实度（infidelity）",
    "faithfulness.metric.max_sensitivity": "最大敏感度（max-sensitivity）",
    "faithfulness.metric.sparseness": "稀疏度（基尼系数）",
    "faithfulness.metric.input_invariance": "输入不变性（最大相对变化）",
    "faithfulness.metric.pointing_game": "指向游戏（pointing game）",
    "faithfulness.metric.energy_pointing_game": "基于能量的指向游戏",
    "faithfulness.metric.relevance_mass_accuracy": "相关性质量准确率",
    "faithfulness.metric.relevance_rank_accuracy": "相关性排序准确率",
    "faithfulness.direction.higher": "越高越好",
    "faithfulness.direction.lower": "越低越好",
    "faithfulness.score": (
        "{method}：{metric} 平均为 {mean:.3g}（{direction}）；没有随机排序作对照，"
        "仅凭这个数字无法判断解释图是否忠实。"
    ),
    "faithfulness.better": (
        "按 {metric}，在这些图像上 {method} 对像素的排序优于随机排序：{mean:.3g}，而 "
        "{control} 为 {control_mean:.3g}（{direction}；平均差 {difference:.3g}，{n} 张图像上"
        "的 {level:%} 区间 [{low:.3g}, {high:.3g}]；配对 t 检验，对 {family} 项比较做 Holm "
        "校正后 p = {p:.2g}）。"
    ),
    "faithfulness.worse": (
        "按 {metric}，{method} 对该模型不可靠：它的得分为 {mean:.3g}，而随机排序"
        "（{control}）为 {control_mean:.3g}，比随机更差（{direction}；平均差 "
        "{difference:.3g}，{n} 张图像上的 {level:%} 区间 [{low:.3g}, {high:.3g}]；配对 t 检验，"
        "对 {family} 项比较做 Holm 校正后 p = {p:.2g}）。"
    ),
    "faithfulness.indistinguishable": (
        "按 {metric}，在 {n} 张图像上 {method} 与随机排序无法区分：{mean:.3g}，而 {control} "
        "为 {control_mean:.3g}（{direction}；平均差 {difference:.3g}，{level:%} 区间 "
        "[{low:.3g}, {high:.3g}]；配对 t 检验，对 {family} 项比较做 Holm 校正后 p = {p:.2g}，"
        "不低于 α = {alpha:g}）。"
    ),
    "faithfulness.too_few": (
        "同时具有 {method} 和 {control} 得分的图像只有 {n} 张，不足以按 {metric} 比较两者。"
    ),
    "mprt.smooth": (
        "{method} 的 sMPRT：最后一个随机化步骤（{step}）之后，其去噪解释图与训练模型解释图"
        "的平均 Spearman ρ 为 {mean:.2f}（越低越好；在未改动的模型上两次加噪的结果相似度为 "
        "{ceiling:.2f}）。"
    ),
    "mprt.efficient": (
        "{method} 的 eMPRT：随机化整个网络后，其解释图的复杂度平均变化 {mean:.2f}"
        "（熵的相对增幅；越高越好；模型自身输出的增幅为 {model_rise:.2f}）。"
    ),
    "roar.better": (
        "ROAR，{method}，移除 {fraction:%} 的像素：在剩余内容上重新训练后，模型准确率与"
        "移除同样多随机像素相比为 {difference:+.1%}（{level:%} 区间 [{low:+.1%}, "
        "{high:+.1%}]，Holm 校正后 p = {p:.2g}）：{method} 排在前面的像素比随机像素"
        "包含更多重新训练的模型所需的信息。"
    ),
    "roar.worse": (
        "ROAR，{method}，移除 {fraction:%} 的像素：在剩余内容上重新训练后，模型准确率与"
        "移除同样多随机像素相比为 {difference:+.1%}（{level:%} 区间 [{low:+.1%}, "
        "{high:+.1%}]，Holm 校正后 p = {p:.2g}）：比随机更差，因此 {method} 对该模型不可靠。"
    ),
    "roar.indistinguishable": (
        "ROAR，{method}，移除 {fraction:%} 的像素：在剩余内容上重新训练后，模型准确率与"
        "移除同样多随机像素相比为 {difference:+.1%}（{level:%} 区间 [{low:+.1%}, "
        "{high:+.1%}]，Holm 校正后 p = {p:.2g}）：与随机无法区分。"
    ),
}
