"""Templates of the dataset-level findings: SpRAy strategies and per-class maps
(:mod:`seethrough.scale.describe`)."""

from __future__ import annotations

EN: dict[str, str] = {
    "scale.class.unnamed": "(unnamed)",
    "scale.maps.unnamed": "attribution",
    "scale.by.label": "true label",
    "scale.by.target": "explained class",
    "scale.by.predicted": "predicted class",
    "scale.by.given": "the labels given",
    # SpRAy
    "scale.spray.summary": (
        "SpRAy grouped the {n} maps ({method}) of the class {cls} into {k} clusters: the "
        "largest gap in the spectrum of the maps' nearest-neighbour graph ({gap:.3g}) "
        "follows eigenvalue {eigengap}."
    ),
    "scale.spray.summary_fixed": (
        "SpRAy grouped the {n} maps ({method}) of the class {cls} into {k} clusters, as "
        "asked; the largest gap in the spectrum ({gap:.3g}) would suggest {eigengap}."
    ),
    "scale.spray.one": (
        "SpRAy found no separate strategies among the {n} maps ({method}) of the class "
        "{cls}: the largest gap in the spectrum ({gap:.3g}) follows its first eigenvalue, "
        "so they form one cluster."
    ),
    "scale.spray.differs.accuracy": (
        "Cluster {id} ({size} maps, {share:.0%}) is treated differently from the rest of "
        "the class: its accuracy is {accuracy:.1%} against {rest:.1%} (Fisher's exact test, "
        "Holm-corrected p = {p:.2g}). A candidate strategy of its own: if its mean map and "
        'representative images point away from the object, a "Clever Hans" one.'
    ),
    "scale.spray.differs.confidence": (
        "Cluster {id} ({size} maps, {share:.0%}) is treated differently from the rest of "
        "the class: its mean confidence is {confidence:.3f} against {rest:.3f} (permutation "
        "test, Holm-corrected p = {p:.2g}). A candidate strategy of its own: if its mean map "
        'and representative images point away from the object, a "Clever Hans" one.'
    ),
    "scale.spray.cluster": "Cluster {id}: {size} maps ({share:.0%}).",
    "scale.spray.cluster.accuracy": (
        "Cluster {id}: {size} maps ({share:.0%}), accuracy {accuracy:.1%} (rest of the "
        "class: {rest:.1%})."
    ),
    "scale.spray.none_differs": (
        "No cluster's accuracy or mean confidence differs from the rest of the class "
        "(Holm-corrected over {tests} tests, level {alpha:g}); the clusters may still be "
        "different strategies with the same outcome: compare their mean maps."
    ),
    "scale.spray.no_outcomes": (
        "Without labels, predictions and probabilities the clusters' outcomes were not "
        "compared: judge them by their mean maps."
    ),
    # per-class maps
    "scale.classes.summary": (
        "Mean maps ({method}) of {classes} classes over {n} images (classes by {by})."
    ),
    "scale.classes.concentration": (
        "Relevance is most concentrated for {most}: {most_share:.0%} [{most_low:.0%}, "
        "{most_high:.0%}] of each map's absolute mass lies in its top {top:.0%} of pixels "
        "on average ({most_n} images), and least for {least}: {least_share:.0%} "
        "[{least_low:.0%}, {least_high:.0%}] ({least_n} images). A flat map gives "
        "{top:.0%}; the two are the extremes of {classes} classes, picked after looking."
    ),
    "scale.classes.concentration.one": (
        "For {most}, {most_share:.0%} [{most_low:.0%}, {most_high:.0%}] of each map's "
        "absolute mass lies in its top {top:.0%} of pixels on average ({most_n} images; a "
        "flat map gives {top:.0%})."
    ),
}

ZH: dict[str, str] = {
    "scale.class.unnamed": "（未命名）",
    "scale.maps.unnamed": "归因",
    "scale.by.label": "真实标签",
    "scale.by.target": "被解释的类别",
    "scale.by.predicted": "预测类别",
    "scale.by.given": "给定的标签",
    # SpRAy
    "scale.spray.summary": (
        "SpRAy 将类别“{cls}”的 {n} 张解释图（{method}）分为 {k} 个簇：这些图的近邻图谱中"
        "最大的间隔（{gap:.3g}）位于第 {eigengap} 个特征值之后。"
    ),
    "scale.spray.summary_fixed": (
        "SpRAy 按要求将类别“{cls}”的 {n} 张解释图（{method}）分为 {k} 个簇；谱中最大的"
        "间隔（{gap:.3g}）建议的簇数为 {eigengap}。"
    ),
    "scale.spray.one": (
        "SpRAy 在类别“{cls}”的 {n} 张解释图（{method}）中没有找到彼此分离的策略：谱中最大"
        "的间隔（{gap:.3g}）位于第一个特征值之后，因此它们构成一个簇。"
    ),
    "scale.spray.differs.accuracy": (
        "模型对簇 {id}（{size} 张图，{share:.0%}）的处理与该类别其余图像不同：其准确率为 "
        "{accuracy:.1%}，而其余图像为 {rest:.1%}（Fisher 精确检验，Holm 校正后 "
        "p = {p:.2g}）。它可能是一种独立的策略：若其平均解释图和代表图像偏离物体本身，"
        "则可能是“聪明汉斯”策略。"
    ),
    "scale.spray.differs.confidence": (
        "模型对簇 {id}（{size} 张图，{share:.0%}）的处理与该类别其余图像不同：其平均置信度为 "
        "{confidence:.3f}，而其余图像为 {rest:.3f}（置换检验，Holm 校正后 "
        "p = {p:.2g}）。它可能是一种独立的策略：若其平均解释图和代表图像偏离物体本身，"
        "则可能是“聪明汉斯”策略。"
    ),
    "scale.spray.cluster": "簇 {id}：{size} 张图（{share:.0%}）。",
    "scale.spray.cluster.accuracy": (
        "簇 {id}：{size} 张图（{share:.0%}），准确率 {accuracy:.1%}（该类别其余图像：{rest:.1%}）。"
    ),
    "scale.spray.none_differs": (
        "没有哪个簇的准确率或平均置信度与该类别其余图像不同（对 {tests} 个检验做 Holm "
        "校正，水平 {alpha:g}）；这些簇仍可能是结果相同的不同策略：请比较它们的平均解释图。"
    ),
    "scale.spray.no_outcomes": (
        "没有标签、预测和概率，无法比较各簇的结果：请根据它们的平均解释图判断。"
    ),
    # per-class maps
    "scale.classes.summary": (
        "{classes} 个类别在 {n} 张图像上的平均解释图（{method}；类别依据：{by}）。"
    ),
    "scale.classes.concentration": (
        "相关性在 {most} 上最集中：平均而言，每张图绝对值总量的 {most_share:.0%} "
        "[{most_low:.0%}, {most_high:.0%}] 落在前 {top:.0%} 的像素中（{most_n} 张图像）；"
        "在 {least} 上最分散：{least_share:.0%} [{least_low:.0%}, {least_high:.0%}]"
        "（{least_n} 张图像）。均匀的图为 {top:.0%}；这两个类别是 {classes} 个类别中事后挑出"
        "的两端。"
    ),
    "scale.classes.concentration.one": (
        "对 {most} 而言，平均每张图绝对值总量的 {most_share:.0%} [{most_low:.0%}, "
        "{most_high:.0%}] 落在前 {top:.0%} 的像素中（{most_n} 张图像；均匀的图为 {top:.0%}）。"
    ),
}
