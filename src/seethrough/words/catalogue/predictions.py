"""Templates for top-k predictions (:func:`seethrough.words.predictions.describe_predictions`)."""

from __future__ import annotations

EN: dict[str, str] = {
    "predictions.top": (
        "The model's top class is “{label}” (index {index}), with probability {probability:.1%}."
    ),
    "predictions.next": "Next: “{label}” (index {index}), with probability {probability:.1%}.",
    "predictions.close": (
        "The model is unsure between “{first}” ({first_probability:.1%}) and “{second}” "
        "({second_probability:.1%}): the runner-up is at least half as likely as the top class."
    ),
    "predictions.siblings": (
        "The model is unsure between “{first}” ({first_probability:.1%}) and “{second}” "
        "({second_probability:.1%}), both a kind of “{parent}” in WordNet: it confuses close "
        "relatives, not unrelated things."
    ),
    # the chain of broader terms starts at the class itself: "tabby → domestic cat → cat"
    "predictions.gloss": "WordNet: “{label}” is {gloss} ({label} → {chain}).",
    "predictions.gloss.root": "WordNet: “{label}” is {gloss}.",
    "predictions.wordnet_missing": (
        "WordNet was not found, so the classes are not described: install Debian's "
        "wordnet-base or set SEETHROUGH_WORDNET to the folder that holds data.noun."
    ),
}

ZH: dict[str, str] = {
    "predictions.top": (
        "模型判断最可能的类别是“{label}”（索引 {index}），概率为 {probability:.1%}。"
    ),
    "predictions.next": "其次是“{label}”（索引 {index}），概率为 {probability:.1%}。",
    "predictions.close": (
        "模型在“{first}”（{first_probability:.1%}）与“{second}”（{second_probability:.1%}）"
        "之间难以取舍：第二名的概率不低于第一名的一半。"
    ),
    "predictions.siblings": (
        "模型在“{first}”（{first_probability:.1%}）与“{second}”（{second_probability:.1%}）"
        "之间难以取舍；在 WordNet 中两者同属“{parent}”：模型混淆的是相近的类别，"
        "而非毫不相干的事物。"
    ),
    # WordNet 只有英文：释义原样照录，上位概念链从该类别本身开始
    "predictions.gloss": "WordNet 英文释义：“{label}”指 {gloss}（{label} → {chain}）。",
    "predictions.gloss.root": "WordNet 英文释义：“{label}”指 {gloss}。",
    "predictions.wordnet_missing": (
        "未找到 WordNet，因此没有给出类别的释义：请安装 Debian 的 wordnet-base，"
        "或把 SEETHROUGH_WORDNET 设为包含 data.noun 的文件夹。"
    ),
}
