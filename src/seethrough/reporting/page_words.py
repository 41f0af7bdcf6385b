"""The report page's own words — headings, table headers, notes, captions — in every
language of the report (``EN``, ``ZH``; the same keys).

The findings (sentences with numbers from the results) are in the words catalogue
(:mod:`seethrough.words.catalogue`); these are the page's fixed texts, which may name
papers and years. :func:`page_words` gives a :class:`PageWords` that fills one as the
sentences are filled (:func:`seethrough.words.findings.fill`: ``str.format``, and in
Chinese no space between a value and Chinese text) and names methods as the sentences do
(``Gradient × input``, 积分梯度).

Terms are the same as the sentences': *map* (解释图), *sanity check* (合理性检验),
*deletion / insertion test* (删除测试 / 插入测试), *random ranking* (随机排序).
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidOptionError
from ..words import catalogue
from ..words.findings import fill

__all__ = ["EN", "ZH", "PageWords", "page_words"]

EN: dict[str, str] = {
    "heading.contents": "Contents",
    "heading.lead": "Which method the sentences use",
    "heading.summary": "What the report finds",
    "heading.images": "Image by image",
    "heading.sanity": "Can the maps be trusted?",
    "heading.faithfulness": "Do the maps point at what the model uses?",
    "heading.deletion": "Deletion test",
    "heading.insertion": "Insertion test",
    "heading.agreement": "Do the methods agree?",
    "heading.data": "What does the network rely on?",
    "heading.completeness": "Integrated gradients: do the attributions add up?",
    "heading.provenance": "How this report was made",
    "nav.images": "Images",
    "nav.sanity": "Sanity check",
    "nav.faithfulness": "Faithfulness",
    "nav.agreement": "Agreement",
    "nav.completeness": "Completeness",
    "nav.data": "Network",
    "nav.provenance": "Provenance",
    "summary_note": (
        "Each sentence links to its evidence below; every number is in report.json. A "
        "sentence with a yellow bar is a hypothesis (no check confirms it); one with a red "
        "bar says that a method is not reliable for this model."
    ),
    "maps_note": (
        "How to read the maps: each has its own colour bar, in the method's raw units, so "
        "ranges differ between methods and images; values beyond the bar's ends are clipped "
        "(an arrow on the bar shows it). Signed maps: red is evidence for the class, blue "
        "against it. Magnitude maps: brighter is larger. The badge under a map gives its "
        "method's sanity check."
    ),
    "glance": "At a glance",
    "glance.sanity": "sanity check",
    "glance.deletion": "deletion test, against random",
    "glance.insertion": "insertion test, against random",
    "top_predictions": "Top predictions",
    "class": "class",
    "index": "index",
    "probability": "probability",
    "explained": "Every map below explains {label}; the model's score for it is {score}.",
    "input": "input, as the model sees it",
    "input_alt": "{image} as the model sees it",
    "panel_alt": "{method} map of {image}, colour range {low} to {high}",
    "panel_caption": "{method}, {display}, range [{low}, {high}]",
    "display.signed": "signed",
    "display.magnitude": "magnitude",
    "sanity_badge": "sanity check: {verdict}",
    "verdict.passed": "passed",
    "verdict.failed": "failed",
    "verdict.inconclusive": "inconclusive",
    "verdict.unchecked": "not checked",
    "agreement_note": (
        "Spearman rank correlation between the absolute maps (the maps' magnitudes, at the "
        "input's size) of two methods, mean over {n} images: 1 when they rank the pixels the "
        "same way, 0 when their rankings are unrelated."
    ),
    "agreement_none": "One method only: nothing to compare.",
    "method": "method",
    "sanity_note": (
        "Model-parameter randomization (Adebayo et al., 2018), {mode}, on {n} images: the "
        "network's layers are re-initialised one after another from the output down, and "
        "each method's map of the randomized network is compared with its map of the trained "
        "one (Spearman ρ of the absolute maps). A method passes when the 95% interval "
        "(Student t, over the images) of its similarity averaged over all the steps lies "
        "below {threshold}: its maps then change as soon as the top layers lose what they "
        "learned — guided backpropagation's do not (Adebayo et al., Fig. 2) — and fails when "
        "the interval lies above. The edge detector is a control that ignores the model: it "
        "must fail. The self-check compares the trained model's map with itself."
    ),
    "sanity_alt": (
        "Similarity of each method's map to the trained model's map after each randomization step"
    ),
    "verdict": "verdict",
    "mode.cascading": "cascading",
    "mode.independent": "independent",
    "randomized_mean": "mean ρ over the steps",
    "interval": "95% interval",
    "self_check": "self-check",
    "control": "control",
    "not_run": "Not run.",
    "deletion_note": (
        "Each map ranks the pixels; the most relevant are removed first (replaced by "
        "{baseline}) while the model's probability for the class is tracked (Petsiuk et al., "
        "2018). A faithful map makes it fall fast: a lower area under the curve is better. A "
        "random ranking (the control) shows what a map that knows nothing achieves; mean over "
        "{n} images."
    ),
    "insertion_note": (
        "Starting from {baseline}, the most relevant pixels are put back first: a faithful "
        "map makes the probability rise fast, so a higher area under the curve is better. "
        "The random ranking is the control; mean over {n} images."
    ),
    "baseline.zeros": "zeros",
    "baseline.blur": "a blurred copy of the image",
    "baseline.mean": "the image's mean",
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
        "Completeness (Sundararajan et al., 2017): the attributions of a path method add up "
        "to the change of the model's score from the baseline image to the input. Relative "
        "error: |sum − difference| / |difference|."
    ),
    "completeness_none": "No path method was run.",
    "image": "image",
    "sum": "sum of attributions",
    "score_difference": "score difference",
    "relative_error": "relative error",
    "path_points": "path points",
    "data_note": (
        "{n} labelled images from {source}. Each module's output is mean-ablated (the "
        "accuracy drop says how much the network relies on it), and a linear probe reads the "
        "classes from it (held-out accuracy), next to the same probe on a randomly "
        "initialised copy of the network and on the raw pixels ({pixels}); chance: {chance}."
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
    "seconds": "run time (seconds)",
    "setting": "setting",
    "value": "value",
    "preprocessing": "Preprocessing",
    "settings": "Settings",
    "made_by": "Made by seethrough {version}.",
}

ZH: dict[str, str] = {
    "heading.contents": "目录",
    "heading.lead": "描述依据的方法",
    "heading.summary": "报告的主要发现",
    "heading.images": "逐图说明",
    "heading.sanity": "这些解释图可信吗？",
    "heading.faithfulness": "解释图指向的是模型真正依赖的内容吗？",
    "heading.deletion": "删除测试",
    "heading.insertion": "插入测试",
    "heading.agreement": "各方法的结论一致吗？",
    "heading.data": "网络依赖什么？",
    "heading.completeness": "积分梯度：归因之和与得分变化相符吗？",
    "heading.provenance": "本报告的生成方式",
    "nav.images": "图像",
    "nav.sanity": "合理性检验",
    "nav.faithfulness": "忠实度",
    "nav.agreement": "一致性",
    "nav.completeness": "完整性",
    "nav.data": "网络",
    "nav.provenance": "来源",
    "summary_note": (
        "每句话都链接到下文的证据，所有数字都可在 report.json 中找到。左侧带黄色竖条的句子是"
        "假设（尚无检验证实）；带红色竖条的句子说明某个方法对该模型不可靠。"
    ),
    "maps_note": (
        "如何阅读解释图：每张图都有自己的色标，单位是该方法的原始单位，因此不同方法、不同图像的"
        "范围各不相同；超出色标两端的值被截断（色标上的箭头表示有截断）。带符号的图：红色是支持"
        "该类别的证据，蓝色是反对的证据。强度图：越亮表示越大。图下方的标签是该方法的合理性检验"
        "结果。"
    ),
    "glance": "一览",
    "glance.sanity": "合理性检验",
    "glance.deletion": "删除测试（与随机排序相比）",
    "glance.insertion": "插入测试（与随机排序相比）",
    "top_predictions": "最高预测",
    "class": "类别",
    "index": "索引",
    "probability": "概率",
    "explained": "下面每张解释图解释的都是 {label}，模型对该类别的得分为 {score}。",
    "input": "输入（模型所见）",
    "input_alt": "模型所见的 {image}",
    "panel_alt": "{image} 的 {method} 解释图，颜色范围 {low} 到 {high}",
    "panel_caption": "{method}，{display}，范围 [{low}, {high}]",
    "display.signed": "带符号",
    "display.magnitude": "强度",
    "sanity_badge": "合理性检验：{verdict}",
    "verdict.passed": "通过",
    "verdict.failed": "未通过",
    "verdict.inconclusive": "无定论",
    "verdict.unchecked": "未检验",
    "agreement_note": (
        "两种方法的绝对值图（即解释图的强度，输入尺寸）之间的 Spearman 秩相关，{n} 张图像的"
        "平均：1 表示两者对像素的排序相同，0 表示两者的排序毫无关联。"
    ),
    "agreement_none": "只有一种方法：无从比较。",
    "method": "方法",
    "sanity_note": (
        "模型参数随机化（Adebayo 等，2018），{mode}，共 {n} 张图像：从输出层起逐层重新初始化"
        "网络，并将每种方法在随机化网络上的解释图与其在训练好的网络上的解释图比较（绝对值图的 "
        "Spearman ρ）。若各步相似度的平均值的 95% 区间（按图像的 Student t 区间）低于 "
        "{threshold}，该方法即通过：顶层一旦失去所学，其解释图随之改变——引导反向传播的解释图"
        "并非如此（Adebayo 等，图 2）；若区间高于阈值则不通过。"
        "边缘检测器是不看模型的对照，必然不通过。自检是训练好的模型的解释图与其自身的比较。"
    ),
    "sanity_alt": "每个随机化步骤之后，各方法的解释图与训练好的模型的解释图的相似度",
    "verdict": "结论",
    "mode.cascading": "级联",
    "mode.independent": "逐层独立",
    "randomized_mean": "各步的平均 ρ",
    "interval": "95% 区间",
    "self_check": "自检",
    "control": "对照",
    "not_run": "未运行。",
    "deletion_note": (
        "每张解释图给像素排序；按此顺序先移除最相关的像素（替换为 {baseline}），同时跟踪模型对"
        "该类别的概率（Petsiuk 等，2018）。忠实的解释图会让概率迅速下降：曲线下面积越低越好。"
        "随机排序（对照）显示一张毫无知识的解释图能做到什么；{n} 张图像的平均。"
    ),
    "insertion_note": (
        "从 {baseline} 开始，先放回最相关的像素：忠实的解释图会让概率迅速上升，因此曲线下面积"
        "越高越好。随机排序是对照；{n} 张图像的平均。"
    ),
    "baseline.zeros": "零值",
    "baseline.blur": "模糊后的图像",
    "baseline.mean": "图像均值",
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
        "完整性（Sundararajan 等，2017）：路径方法的归因之和等于模型得分从基线图像到输入的"
        "变化量。相对误差为 |和 − 差| / |差|。"
    ),
    "completeness_none": "未运行路径方法。",
    "image": "图像",
    "sum": "归因之和",
    "score_difference": "得分差",
    "relative_error": "相对误差",
    "path_points": "路径点数",
    "data_note": (
        "来自 {source} 的 {n} 张带标签图像。对每个模块的输出做均值消融（准确率下降多少，说明网络"
        "对它依赖多少），并用线性探针从中读出类别（留出集准确率），与随机初始化的网络副本上的同一"
        "探针以及原始像素上的探针（{pixels}）对照；随机猜测的水平为 {chance}。"
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
    "seconds": "运行时间（秒）",
    "setting": "设置项",
    "value": "值",
    "preprocessing": "预处理",
    "settings": "设置",
    "made_by": "由 seethrough {version} 生成。",
}

_WORDS = {"en": EN, "zh": ZH}


class PageWords:
    """The page's texts in one language: ``ui(key, **values)`` fills text ``key``;
    :meth:`method` names a method as the sentences do; :meth:`get` is ``ui`` with a
    fallback for keys that may be missing (a baseline the page has no words for)."""

    def __init__(self, lang: str) -> None:
        if lang not in _WORDS:
            raise InvalidOptionError(f"unknown language {lang!r} (valid: {', '.join(_WORDS)})")
        self.lang = lang
        self.words = _WORDS[lang]

    def __call__(self, key: str, **values: Any) -> str:
        return fill(self.words[key], values, self.lang)

    def get(self, key: str, default: str) -> str:
        """Text ``key`` (no values), or ``default`` when the page has no such text."""
        return self.words.get(key, default)

    def method(self, name: str) -> str:
        """The method's name in this language (``gradient_x_input`` → "Gradient × input");
        a method the catalogue does not know (the user's own) as given."""
        return catalogue(self.lang).get(f"method.{name}", name)


def page_words(lang: str) -> PageWords:
    """The page's texts in ``lang`` (:class:`PageWords`).

    Raises
    ------
    InvalidOptionError
        For a language without page words.
    """
    return PageWords(lang)
