"""Words shared by every subject: image regions, claim hedges."""

from __future__ import annotations

EN: dict[str, str] = {
    "region.top-left": "top left",
    "region.top": "top centre",
    "region.top-right": "top right",
    "region.left": "centre left",
    "region.centre": "centre",
    "region.right": "centre right",
    "region.bottom-left": "bottom left",
    "region.bottom": "bottom centre",
    "region.bottom-right": "bottom right",
}

ZH: dict[str, str] = {
    "region.top-left": "左上角",
    "region.top": "上方中部",
    "region.top-right": "右上角",
    "region.left": "左侧中部",
    "region.centre": "中央",
    "region.right": "右侧中部",
    "region.bottom-left": "左下角",
    "region.bottom": "下方中部",
    "region.bottom-right": "右下角",
}
