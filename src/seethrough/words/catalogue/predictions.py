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
        "({second_probability:.1%}); WordNet files both under “{parent}”, so it confuses two "
        "kinds of {parent}, not two unrelated things."
    ),
    "predictions.gloss": "WordNet: “{label}” is {gloss} (a kind of {chain}).",
    "predictions.gloss.root": "WordNet: “{label}” is {gloss}.",
    "predictions.wordnet_missing": (
        "WordNet was not found, so the classes are not described: install Debian's "
        "wordnet-base or set SEETHROUGH_WORDNET to the folder that holds data.noun."
    ),
}

ZH: dict[str, str] = {
    "predictions.top": "模型给出的最高类别是“{label}”（索引 {index}），概率为 {probability:.1%}。",
    "predictions.next": "其次：“{label}”（索引 {index}），概率为 {probability:.1%}。",
    "predictions.close": (
        "模型在“{first}”（{first_probability:.1%}）与“{second}”（{second_probability:.1%}）"
        "之间拿不准：第二名的概率至少是第一名的一半。"
    ),
    "predictions.siblings": (
        "模型在“{first}”（{first_probability:.1%}）与“{second}”（{second_probability:.1%}）"
        "之间拿不准；WordNet 把两者都归在“{parent}”之下，所以它混淆的是两种{parent}，"
        "而不是两样无关的东西。"
    ),
    "predictions.gloss": "WordNet（英文释义）：“{label}”是 {gloss}（属于 {chain}）。",
    "predictions.gloss.root": "WordNet（英文释义）：“{label}”是 {gloss}。",
    "predictions.wordnet_missing": (
        "未找到 WordNet，因此没有给出类别的释义：请安装 Debian 的 wordnet-base，"
        "或把 SEETHROUGH_WORDNET 设为包含 data.noun 的文件夹。"
    ),
}
