"""The report page's own words — headings, table headers, notes, captions — in every
language of the report (``EN``, ``ZH``; the same keys).

The findings (sentences with numbers from the results) are in the words catalogue
(:mod:`seethrough.words.catalogue`); these are the page's fixed texts, which may name
papers and years. :func:`page_words` fills one with ``str.format``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import InvalidOptionError

__all__ = ["EN", "ZH", "page_words"]

EN: dict[str, str] = {
    "heading.lead": "How to read this",
    "heading.summary": "What the report finds",
    "heading.sanity": "Can the maps be trusted?",
    "heading.faithfulness": "Do the maps point at what the model uses?",
    "heading.agreement": "Do the methods agree?",
    "heading.data": "What does the network rely on?",
    "heading.completeness": "Integrated gradients: do the attributions add up?",
    "heading.provenance": "How this report was made",
    "summary_note": (
        "Each sentence links to its evidence below. Sentences in the colour of a warning are "
        "hedged (not confirmed by a check) or say that a method is not reliable for this "
        "model; every number is in report.json."
    ),
    "top_predictions": "Top predictions",
    "class": "class",
    "index": "index",
    "probability": "probability",
    "explained": "Explained: {label} (score {score}).",
    "input": "input",
    "input_alt": "{image} as the model sees it",
    "panel_alt": "{method} map of {image}, colour range {low} to {high}",
    "panel_caption": "{method} ({display}), range [{low}, {high}]",
    "display.signed": "signed",
    "display.magnitude": "magnitude",
    "verdict.passed": "passed",
    "verdict.failed": "failed",
    "verdict.inconclusive": "inconclusive",
    "verdict.unchecked": "not checked",
    "agreement_note": (
        "Spearman rank correlation between the absolute maps of two methods (at the input's "
        "size), mean over {n} images. 1: the same ranking of pixels; 0: unrelated."
    ),
    "agreement_none": "One method only: nothing to compare.",
    "method": "method",
    "sanity_note": (
        "Model-parameter randomization (Adebayo et al., 2018), {mode}, on {n} images: the "
        "network's layers are re-initialised from the logits down, and each method's map of "
        "the randomized model is compared with the trained model's (Spearman ρ of absolute "
        "maps). A method passes when the 95 % interval of the fully randomized mean lies "
        "below {threshold}: its map depends on what the model learned. The edge detector is "
        "a control that ignores the model: it must fail."
    ),
    "sanity_alt": (
        "Similarity of each method's map to the trained model's map after each randomization step"
    ),
    "verdict": "verdict",
    "mode.cascading": "cascading",
    "mode.independent": "independent",
    "randomized_mean": "mean ρ, fully randomized",
    "interval": "95 % interval",
    "self_check": "self-check",
    "control": "control",
    "not_run": "Not run.",
    "deletion": "Deletion",
    "insertion": "Insertion",
    "deletion_note": (
        "The most relevant pixels (by each map) are replaced by {baseline} first, and the "
        "target's probability is tracked (Petsiuk et al., 2018). A faithful map makes it "
        "fall fast: lower area is better. The random ranking (a control) shows what no "
        "knowledge gives; mean over {n} images."
    ),
    "insertion_note": (
        "The most relevant pixels are inserted into a {baseline} copy first: higher area is "
        "better. The random ranking (a control) shows what no knowledge gives; mean over {n} "
        "images."
    ),
    "deletion_alt": "Deletion curves of each method and of a random ranking",
    "insertion_alt": "Insertion curves of each method and of a random ranking",
    "area": "area",
    "random_area": "random's area",
    "difference": "difference",
    "against_random": "against random",
    "comparison.better": "better",
    "comparison.worse": "worse",
    "comparison.indistinguishable": "indistinguishable",
    "completeness_note": (
        "Completeness (Sundararajan et al., 2017): the attributions of a path method sum to "
        "the score difference between the input and the baseline. The relative error is |sum "
        "− difference| / |difference|."
    ),
    "completeness_none": "No path method was run.",
    "image": "image",
    "sum": "sum of attributions",
    "score_difference": "score difference",
    "relative_error": "relative error",
    "path_points": "path points",
    "data_note": (
        "{n} labelled images from {source}. Each module's output is mean-ablated (its "
        "accuracy drop), and a linear probe reads the classes from it (held-out accuracy), "
        "next to the same probe on a randomly initialised copy and on the raw pixels "
        "({pixels}); chance {chance}."
    ),
    "module": "module",
    "accuracy_drop": "accuracy drop when ablated",
    "probe_accuracy": "probe accuracy",
    "random_probe": "random network's probe",
    "model": "model",
    "model_source": "model source",
    "model_file": "model file",
    "model_sha256": "model file SHA-256",
    "parameters_sha256": "parameters SHA-256",
    "versions": "versions",
    "seed": "seed",
    "device": "device",
    "command": "command",
    "created": "created",
    "seconds": "seconds",
    "setting": "setting",
    "value": "value",
    "preprocessing": "Preprocessing",
    "settings": "Settings",
}

ZH: dict[str, str] = {
    "heading.lead": "如何阅读",
    "heading.summary": "报告的结论",
    "heading.sanity": "这些图可信吗？",
    "heading.faithfulness": "这些图指向模型真正使用的内容吗？",
    "heading.agreement": "各方法一致吗？",
    "heading.data": "网络依赖什么？",
    "heading.completeness": "积分梯度：归因之和对得上吗？",
    "heading.provenance": "本报告如何生成",
    "summary_note": (
        "每句话都链接到下文的证据。以警示颜色显示的句子是有保留的（未经检验证实），或说明某方"
        "法对该模型不可靠；所有数字都在 report.json 中。"
    ),
    "top_predictions": "最高预测",
    "class": "类别",
    "index": "索引",
    "probability": "概率",
    "explained": "解释的类别：{label}（得分 {score}）。",
    "input": "输入",
    "input_alt": "模型所见的 {image}",
    "panel_alt": "{image} 的 {method} 图，颜色范围 {low} 到 {high}",
    "panel_caption": "{method}（{display}），范围 [{low}, {high}]",
    "display.signed": "带符号",
    "display.magnitude": "强度",
    "verdict.passed": "通过",
    "verdict.failed": "未通过",
    "verdict.inconclusive": "无定论",
    "verdict.unchecked": "未检验",
    "agreement_note": (
        "两种方法的绝对值图（输入尺寸）之间的 Spearman 秩相关，{n} 张图像的平均。1：像素排序"
        "相同；0：无关。"
    ),
    "agreement_none": "只有一种方法：无从比较。",
    "method": "方法",
    "sanity_note": (
        "模型参数随机化（Adebayo 等，2018），{mode}，共 {n} 张图像：从输出层起逐层重新初始化"
        "网络，并将随机化模型的解释图与训练模型的解释图比较（绝对值图的 Spearman ρ）。若完全"
        "随机化后平均值的 95 % 区间低于 {threshold}，则该方法通过：其图依赖于模型学到的内容。"
        "边缘检测器是不看模型的对照，它必然不通过。"
    ),
    "sanity_alt": "每个随机化步骤后，各方法的图与训练模型的图的相似度",
    "verdict": "结论",
    "mode.cascading": "级联",
    "mode.independent": "逐层独立",
    "randomized_mean": "完全随机化后的平均 ρ",
    "interval": "95 % 区间",
    "self_check": "自检",
    "control": "对照",
    "not_run": "未运行。",
    "deletion": "删除测试",
    "insertion": "插入测试",
    "deletion_note": (
        "按每张图把最相关的像素先替换为 {baseline}，并跟踪目标类别的概率（Petsiuk 等，2018）"
        "。忠实的图会让概率迅速下降：面积越低越好。随机排序（对照）显示毫无知识时的结果；{n} "
        "张图像的平均。"
    ),
    "insertion_note": (
        "把最相关的像素先插入 {baseline} 副本：面积越高越好。随机排序（对照）显示毫无知识时的"
        "结果；{n} 张图像的平均。"
    ),
    "deletion_alt": "各方法及随机排序的删除曲线",
    "insertion_alt": "各方法及随机排序的插入曲线",
    "area": "面积",
    "random_area": "随机排序的面积",
    "difference": "差值",
    "against_random": "与随机排序相比",
    "comparison.better": "更好",
    "comparison.worse": "更差",
    "comparison.indistinguishable": "无法区分",
    "completeness_note": (
        "完备性（Sundararajan 等，2017）：路径方法的归因之和等于输入与基线之间的得分差。相对"
        "误差为 |和 − 差| / |差|。"
    ),
    "completeness_none": "未运行路径方法。",
    "image": "图像",
    "sum": "归因之和",
    "score_difference": "得分差",
    "relative_error": "相对误差",
    "path_points": "路径点数",
    "data_note": (
        "来自 {source} 的 {n} 张带标签图像。对每个模块的输出做均值消融（得到准确率下降），并"
        "用线性探针从中读出类别（留出集准确率），与随机初始化副本上的同一探针以及原始像素上的"
        "探针（{pixels}）对照；随机水平 {chance}。"
    ),
    "module": "模块",
    "accuracy_drop": "消融后的准确率下降",
    "probe_accuracy": "探针准确率",
    "random_probe": "随机网络的探针",
    "model": "模型",
    "model_source": "模型来源",
    "model_file": "模型文件",
    "model_sha256": "模型文件 SHA-256",
    "parameters_sha256": "参数 SHA-256",
    "versions": "版本",
    "seed": "随机种子",
    "device": "设备",
    "command": "命令",
    "created": "生成时间",
    "seconds": "秒数",
    "setting": "设置",
    "value": "值",
    "preprocessing": "预处理",
    "settings": "设置",
}

_WORDS = {"en": EN, "zh": ZH}


def page_words(lang: str) -> Callable[..., str]:
    """``ui(key, **values)``: the page's text ``key`` in ``lang``, filled with ``values``.

    Raises
    ------
    InvalidOptionError
        For a language without page words.
    """
    if lang not in _WORDS:
        raise InvalidOptionError(f"unknown language {lang!r} (valid: {', '.join(_WORDS)})")
    words = _WORDS[lang]

    def ui(key: str, **values: Any) -> str:
        return words[key].format(**values)

    return ui
