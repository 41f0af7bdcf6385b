"""Sentences of the one-file report that no single result says: which method the summary
uses and why, how far the methods agree, and which checks were not run."""

from __future__ import annotations

EN: dict[str, str] = {
    "report.agreement.most": (
        "{first} and {second} agree most: Spearman {rho:.2f} between their absolute maps, "
        "mean over {n} images."
    ),
    "report.agreement.least": (
        "{first} and {second} agree least: Spearman {rho:.2f} between their absolute maps, "
        "mean over {n} images."
    ),
    "report.sanity.not_run": (
        "The sanity check was not run (it needs at least two images), so no map is known to "
        "depend on what the model learned: read every map as a hypothesis."
    ),
    "report.lead.faithful": (
        "The sentences about each image below use {method}: it passed the sanity check and, "
        "of the methods that did, beats the random ranking by the most in the deletion test "
        "(mean area {auc:.3g} against {random:.3g} for the random ranking; lower is better)."
    ),
    "report.lead.unfaithful": (
        "The sentences about each image below use {method}: it passed the sanity check, but "
        "no method that passed removes the score faster than a random ranking in the "
        "deletion test ({method}: mean area {auc:.3g}, random ranking: {random:.3g}; lower "
        "is better), so read the maps with care."
    ),
    "report.lead.passed": (
        "The sentences about each image below use {method}, the first method that passed the "
        "sanity check."
    ),
    "report.lead.unchecked": (
        "No method passed the sanity check, so the sentences about each image below use "
        "{method} and are hypotheses, not findings."
    ),
}

ZH: dict[str, str] = {
    "report.agreement.most": (
        "{first} 与 {second} 最一致：两者绝对值图之间的 Spearman 相关为 {rho:.2f}（{n} 张图像"
        "的平均）。"
    ),
    "report.agreement.least": (
        "{first} 与 {second} 最不一致：两者绝对值图之间的 Spearman 相关为 {rho:.2f}（{n} 张图"
        "像的平均）。"
    ),
    "report.sanity.not_run": (
        "未运行合理性检查（至少需要两张图像），因此没有任何图被证实依赖于模型学到的内容：请把"
        "每张图都当作假设来看。"
    ),
    "report.lead.faithful": (
        "下文对每张图像的描述使用 {method}：它通过了合理性检验，并且在通过检验的方法中，在删"
        "除测试中领先随机排序最多（平均面积 {auc:.3g}，随机排序为 {random:.3g}；越低越好）。"
    ),
    "report.lead.unfaithful": (
        "下文对每张图像的描述使用 {method}：它通过了合理性检验，但在删除测试中，没有任何通过"
        "检验的方法比随机排序更快地降低得分（{method}：平均面积 {auc:.3g}，随机排序："
        "{random:.3g}；越低越好），因此请谨慎解读这些图。"
    ),
    "report.lead.passed": "下文对每张图像的描述使用 {method}，即第一个通过合理性检验的方法。",
    "report.lead.unchecked": (
        "没有任何方法通过合理性检验，因此下文对每张图像的描述使用 {method}，只是假设，而非结论。"
    ),
}
