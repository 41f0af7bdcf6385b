"""Templates of the decomposition findings: concept relevance (:mod:`seethrough.decompose.concepts`)
and class circuits (:mod:`seethrough.decompose.circuit`)."""

from __future__ import annotations

EN: dict[str, str] = {
    # concept relevance (Achtibat et al.): one sentence per explained row
    "decompose.concepts.signed": (
        "Image {image}, {cls} (score {score:.3g}): relevance {total:.3g} reaches the "
        "{channels} channels of {layer}; channel {channel} carries the most, {relevance:.3g} "
        "({share:.0%} of their absolute relevance), and the top {top} together carry "
        "{coverage:.0%}."
    ),
    "decompose.concepts.abs": (
        "Image {image}, {cls} (score {score:.3g}): relevance {total:.3g} reaches the "
        "{channels} channels of {layer}; channel {channel} carries the largest in magnitude, "
        "{relevance:.3g} ({share:.0%} of their absolute relevance), and the top {top} "
        "together carry {coverage:.0%}."
    ),
    "decompose.concepts.given": (
        "Image {image}, {cls} (score {score:.3g}): relevance {total:.3g} reaches the "
        "{channels} channels of {layer}; of the {top} channels asked for, channel {channel} "
        "carries the most, {relevance:.3g} ({share:.0%} of the layer's absolute relevance), "
        "and together they carry {coverage:.0%}."
    ),
    "decompose.concepts.zero": (
        "Image {image}, {cls} (score {score:.3g}): no relevance reaches the channels of "
        "{layer}, so no channel stands out."
    ),
    "decompose.concepts.target": "the target score",
    "decompose.concepts.caution": (
        "Channel relevance is what the LRP rules of the {composite} composite assign; "
        "modified-backpropagation explanations can change little when the weights of deep "
        "layers are randomised (Sixt et al.), so check the method with a sanity test before "
        "reading a channel as the model's reason."
    ),
    # class circuits (seethrough.decompose.circuit)
    "decompose.circuit.size": (
        "{size} of the {total} channels keep the decisions of {cls} to at least {keep:.0%}: "
        "with the other channels {ablated}, the network labels {accuracy:.1%} of the "
        "{images} {cls} search images correctly (all channels: {accuracy_full:.1%}), and "
        "{precision:.1%} of the images it labels {cls} are {cls} (all channels: "
        "{precision_full:.1%})."
    ),
    "decompose.circuit.mean": "mean-ablated",
    "decompose.circuit.zero": "set to zero",
    "decompose.circuit.layer": "{layer}: {count} of its {channels} channels are in the circuit.",
    "decompose.circuit.held_out": (
        "On {images} held-out {cls} images the circuit keeps {kept:.1%} of the full "
        "network's decisions (the smaller of the class-accuracy and precision ratios; "
        "{keep:.0%} asked): class accuracy {accuracy:.1%} (all channels: "
        "{accuracy_full:.1%}), precision {precision:.1%} (all channels: {precision_full:.1%})."
    ),
    "decompose.circuit.held_out_short": (
        "On {images} held-out {cls} images the circuit keeps only {kept:.1%} of the full "
        "network's decisions, less than the {keep:.0%} asked: class accuracy "
        "{accuracy:.1%} (all channels: {accuracy_full:.1%}), precision {precision:.1%} (all "
        "channels: {precision_full:.1%}); the circuit is fitted to its search images — "
        "search on more images."
    ),
    "decompose.circuit.held_out_empty": (
        "The full network labels none of the held-out {cls} images correctly, so there is "
        "nothing to compare the circuit with there."
    ),
    "decompose.circuit.no_held_out": (
        "No images were held out: these numbers are on the images the circuit was chosen "
        "on, and overstate what it keeps on new ones."
    ),
    "decompose.circuit_overlap.most": (
        "The circuits of {a} and {b} overlap the most: they share {shared} channels, a "
        "Jaccard index of {jaccard:.2f}."
    ),
    "decompose.circuit_overlap.least": (
        "The circuits of {a} and {b} overlap the least: they share {shared} channels, a "
        "Jaccard index of {jaccard:.2f}."
    ),
}

ZH: dict[str, str] = {
    "decompose.concepts.signed": (
        "图像 {image}，{cls}（得分 {score:.3g}）：到达 {layer} 的 {channels} 个通道的相关性为 "
        "{total:.3g}；通道 {channel} 承载最多，为 {relevance:.3g}（占各通道相关性绝对值之和的 "
        "{share:.0%}），前 {top} 个通道合计承载 {coverage:.0%}。"
    ),
    "decompose.concepts.abs": (
        "图像 {image}，{cls}（得分 {score:.3g}）：到达 {layer} 的 {channels} 个通道的相关性为 "
        "{total:.3g}；通道 {channel} 的相关性绝对值最大，为 {relevance:.3g}（占各通道相关性"
        "绝对值之和的 {share:.0%}），前 {top} 个通道合计承载 {coverage:.0%}。"
    ),
    "decompose.concepts.given": (
        "图像 {image}，{cls}（得分 {score:.3g}）：到达 {layer} 的 {channels} 个通道的相关性为 "
        "{total:.3g}；在指定的 {top} 个通道中，通道 {channel} 承载最多，为 {relevance:.3g}"
        "（占该层相关性绝对值之和的 {share:.0%}），它们合计承载 {coverage:.0%}。"
    ),
    "decompose.concepts.zero": (
        "图像 {image}，{cls}（得分 {score:.3g}）：没有相关性到达 {layer} 的通道，"
        "因此没有突出的通道。"
    ),
    "decompose.concepts.target": "目标得分",
    "decompose.concepts.caution": (
        "通道相关性是 {composite} 组合的 LRP 规则所分配的；修改反向传播的解释方法在深层权重被"
        "随机化后可能变化很小（Sixt 等），因此在把某个通道当作模型的依据之前，请先用合理性检验"
        "检查该方法。"
    ),
    "decompose.circuit.size": (
        "{total} 个通道中的 {size} 个即可把 {cls} 的决策保持在至少 {keep:.0%}：其余通道"
        "{ablated}后，网络把 {images} 张 {cls} 搜索图像中的 {accuracy:.1%} 判对（全部通道："
        "{accuracy_full:.1%}），被判为 {cls} 的图像中有 {precision:.1%} 确实是 {cls}"
        "（全部通道：{precision_full:.1%}）。"
    ),
    "decompose.circuit.mean": "被均值消融",
    "decompose.circuit.zero": "被置零",
    "decompose.circuit.layer": "{layer}：其 {channels} 个通道中有 {count} 个在回路中。",
    "decompose.circuit.held_out": (
        "在 {images} 张留出的 {cls} 图像上，该回路保持了完整网络决策的 {kept:.1%}（取类别"
        "准确率与精确率两个比值中较小者；要求 {keep:.0%}）：类别准确率 {accuracy:.1%}"
        "（全部通道：{accuracy_full:.1%}），精确率 {precision:.1%}（全部通道："
        "{precision_full:.1%}）。"
    ),
    "decompose.circuit.held_out_short": (
        "在 {images} 张留出的 {cls} 图像上，该回路只保持了完整网络决策的 {kept:.1%}，低于"
        "要求的 {keep:.0%}：类别准确率 {accuracy:.1%}（全部通道：{accuracy_full:.1%}），"
        "精确率 {precision:.1%}（全部通道：{precision_full:.1%}）；回路是在搜索图像上选出的，"
        "请用更多图像搜索。"
    ),
    "decompose.circuit.held_out_empty": (
        "完整网络在留出的 {cls} 图像上一张也没有判对，因此无从比较。"
    ),
    "decompose.circuit.no_held_out": (
        "没有留出图像：这些数字来自选出回路所用的图像，会高估它在新图像上保持的程度。"
    ),
    "decompose.circuit_overlap.most": (
        "{a} 与 {b} 的回路重叠最多：共享 {shared} 个通道，Jaccard 指数为 {jaccard:.2f}。"
    ),
    "decompose.circuit_overlap.least": (
        "{a} 与 {b} 的回路重叠最少：共享 {shared} 个通道，Jaccard 指数为 {jaccard:.2f}。"
    ),
}
