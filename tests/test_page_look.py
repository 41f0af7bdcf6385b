"""The report page's words and look: Chinese without stray spaces, methods named as the
sentences name them, each image's "explains the class" said once, and a stylesheet that
names Simplified Chinese fonts and fetches none."""

from __future__ import annotations

import html
import io
import re
import string
from typing import Any

from PIL import Image

from seethrough.reporting.build import render_report
from seethrough.reporting.content import ReportContent
from seethrough.reporting.html import render
from seethrough.reporting.page_words import ZH, page_words
from seethrough.words import Finding, Term

_HAN = "[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]"  # Chinese characters, full-width punctuation


def test_chinese_page_words_put_no_space_between_two_chinese_characters() -> None:
    for key, template in ZH.items():
        for text, _, _, _ in string.Formatter().parse(template):
            assert not re.search(f"{_HAN} +{_HAN}", text), f"{key}: {template!r}"


def test_page_words_close_up_around_chinese_values_and_name_methods() -> None:
    zh, en = page_words("zh"), page_words("en")
    ig, cam = zh.method("integrated_gradients"), zh.method("grad_cam")
    assert ig == "积分梯度" and cam == "Grad-CAM"
    assert zh("panel_alt", image="猫", method=ig, low="0", high="1") == (
        "猫的积分梯度解释图，颜色范围 0 到 1"
    )
    assert zh("panel_alt", image="cat", method=cam, low="0", high="1").startswith(
        "cat 的 Grad-CAM 解释图"
    )
    assert en.method("gradient_x_input") == "Gradient × input"
    assert en.method("my_method") == "my_method"  # the user's own: as given
    assert zh.get("baseline.blur", "blur") == "模糊后的图像" and zh.get("baseline.x", "x") == "x"


def test_the_stylesheet_names_simplified_chinese_fonts_and_fetches_nothing() -> None:
    page = render("base.html.j2", title="t", lang="zh")
    css = page[page.index("<style>") : page.index("</style>")]
    family = re.search(r"body\{font-family:([^;]*);", css.replace("\n", ""))
    assert family is not None
    fonts = [f.strip().strip('"') for f in family.group(1).split(",")]
    for font in ("PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "WenQuanYi Micro Hei"):
        assert fonts.index(font) < fonts.index("sans-serif"), font
    assert "@import" not in css and "url(" not in css and "@font-face" not in css
    assert "@media print" in css


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def _finding(key: str, values: dict[str, Any], claim: str, lang: str, **extra: Any) -> dict:
    return {**Finding(key, values, "image-1", claim).to_dict(lang), **extra}  # type: ignore[arg-type]


def _content(lang: str) -> ReportContent:
    """A one-image report with two methods, as the job writes it (hand-made)."""
    methods = ("gradient", "grad_cam")
    focus = {
        "hedge": Term("explanation.hedge.passed"),
        "degree": Term("explanation.degree.moderate"),
        "region": Term("region.centre"),
        "region_share": 0.25,
        "region_area": 1 / 9,
        "concentration": 0.3,
        "top_fraction": 0.1,
    }
    findings = [
        _finding(
            "predictions.top",
            {"label": "cat", "index": 3, "probability": 0.5},
            "finding",
            lang,
            method=None,
        )
    ]
    for name in methods:
        target = {"method": Term(f"method.{name}"), "label": "cat", "index": 3, "score": 2.5}
        findings.append(_finding("explanation.target", target, "note", lang, method=name))
        findings.append(_finding("explanation.focus", focus, "finding", lang, method=name))
    panels = [
        {
            "method": m,
            "figure": f"image-1/{m}",
            "range": [-1.0, 1.0],
            "display": "signed",
            "sanity": "passed",
        }
        for m in methods
    ]
    data = {
        "lang": lang,
        "title": "t",
        "summary": [{**findings[0], "id": "finding-1", "group": "image-1"}],
        "images": [
            {
                "id": "image-1",
                "name": "chelsea",
                "source": "sample:chelsea",
                "figure": "image-1/input",
                "predictions": [{"index": 3, "label": "cat", "probability": 0.5}],
                "target": {"index": 3, "label": "cat (3)", "score": 2.5},
                "findings": findings,
                "panels": panels,
            }
        ],
        "agreement": None,
        "sanity": None,
        "faithfulness": None,
        "insertion": None,
        "completeness": [],
        "data": None,
        "provenance": {
            "model": "m",
            "model_source": "m",
            "model_file": None,
            "model_sha256": None,
            "parameters_sha256": "0" * 64,
            "versions": {"seethrough": "0"},
            "seed": 0,
            "device": "cpu",
            "command": None,
            "created": "now",
            "seconds": 1.0,
        },
        "preprocessing": {"description": "none", "size": 28},
        "settings": {},
    }
    figures = {"image-1/input": _png(), **{f"image-1/{m}": _png() for m in methods}}
    return ReportContent(data, figures, {}, None)


def test_an_image_says_which_class_every_map_explains_once_and_names_each_method() -> None:
    for lang, explains, names in (
        ("en", "explains the class", ("Gradient", "Grad-CAM")),
        ("zh", "解释的是类别", ("梯度", "Grad-CAM")),
    ):
        page = render_report(_content(lang))
        section = html.unescape(page[page.index('<section id="image-1"') :])
        assert explains not in section  # said once, in the line above the maps
        assert page_words(lang)("explained", label="cat (3)", score="2.5") in section
        assert section.count("the map is strongest" if lang == "en" else "解释图在中央最强") == 2
        for name in names:
            assert f"<dt>{name}</dt>" in section
        assert "gradient_x" not in section and "<dt>grad_cam</dt>" not in section
        assert 'class="pixelated"' in section  # a 28-pixel input is enlarged without blur
