"""Sentences of the one-file report that no single result says: which method the summary
uses and why, how far the methods agree, and which checks were not run."""

from __future__ import annotations

EN: dict[str, str] = {
    "report.agreement.most": (
        "{first} and {second} agree most: the magnitudes of their maps have a Spearman rank "
        "correlation of {rho:.2f} (mean over {n} images)."
    ),
    "report.agreement.least": (
        "{first} and {second} agree least: the magnitudes of their maps have a Spearman rank "
        "correlation of {rho:.2f} (mean over {n} images)."
    ),
    "report.sanity.not_run": (
        "The sanity check was not run (it needs at least two images), so no map is known to "
        "depend on what the model learned: read every map as a hypothesis."
    ),
    "report.lead.faithful": (
        "Where each image's map is strongest is read from {method}: it passed the sanity "
        "check and, of the methods that did, beat a random ranking by the most in the "
        "deletion test (mean area {auc:.3g} against {random:.3g}; lower is better)."
    ),
    "report.lead.unfaithful": (
        "Where each image's map is strongest is read from {method}: it passed the sanity "
        "check, but no method that passed beat a random ranking in the deletion test "
        "({method}: mean area {auc:.3g}, random: {random:.3g}; lower is better), so read the "
        "maps with care."
    ),
    "report.lead.passed": (
        "Where each image's map is strongest is read from {method}, the first method that "
        "passed the sanity check."
    ),
    "report.lead.unchecked": (
        "No method passed the sanity check, so what is said below about each image's map "
        "(read from {method}) is a hypothesis, not a finding."
    ),
}

ZH: dict[str, str] = {
    "report.agreement.most": (
        "{first} 与 {second} 最一致：两者解释图强度的 Spearman 秩相关为 {rho:.2f}"
        "（{n} 张图像的平均）。"
    ),
    "report.agreement.least": (
        "{first} 与 {second} 最不一致：两者解释图强度的 Spearman 秩相关为 {rho:.2f}"
        "（{n} 张图像的平均）。"
    ),
    "report.sanity.not_run": (
        "未运行合理性检验（至少需要两张图像），因此没有任何解释图被证实依赖于模型学到的内容："
        "请把每张解释图都当作假设来看。"
    ),
    "report.lead.faithful": (
        "下文描述每张图像时，解释图最强的位置取自 {method}：它通过了合理性检验，而且在通过"
        "检验的方法中，它在删除测试中领先随机排序最多（平均面积 {auc:.3g}，随机排序为 "
        "{random:.3g}；越低越好）。"
    ),
    "report.lead.unfaithful": (
        "下文描述每张图像时，解释图最强的位置取自 {method}：它通过了合理性检验，但在删除测试"
        "中，没有任何通过检验的方法胜过随机排序（{method}：平均面积 {auc:.3g}，随机排序："
        "{random:.3g}；越低越好），因此请谨慎解读这些解释图。"
    ),
    "report.lead.passed": (
        "下文描述每张图像时，解释图最强的位置取自 {method}，即第一个通过合理性检验的方法。"
    ),
    "report.lead.unchecked": (
        "没有任何方法通过合理性检验，因此下文关于每张图像解释图的描述（依据 {method}）"
        "只是假设，而非结论。"
    ),
}
