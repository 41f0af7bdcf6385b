"""Every HTML page seethrough writes, in a real headless Chromium (``tests/browser.py``): no
console error, no request outside the page's own folder (none at all for a self-contained
page), every image decodes, no serious accessibility violation, no script; hostile names and
labels show as text. Plus the templates themselves: autoescaping, the content-security
policy, no JavaScript, and a harness that does catch what it looks for."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import jinja2
import numpy as np
import pytest
from PIL import Image

import browser as harness
import test_cli
from browser import ARTIFACTS, check_page, chromium_or_skip
from seethrough.reporting.html import CSP, FOLDER_CSP, data_uri, number, render
from test_cli import run_cli

assets = test_cli.assets  # the tiny model (labels include "<b>fish</b>") and image files
tiny = test_cli.tiny

TEMPLATES = Path(__file__).resolve().parent.parent / "src/seethrough/reporting/templates"
HOSTILE = "script><img src=x onerror=alert(1)>"  # an image file name (without .png)
QUOTED = 'it\'s "quoted" 猫 café'  # quotes and unicode


@pytest.fixture
def browser() -> None:
    """Skip (or, in CI, fail) before any work when there is no browser."""
    chromium_or_skip()


def png(width: int = 8, height: int = 6, colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def page_with(tmp_path: Path, body: str, csp: str = CSP, name: str = "page.html") -> Path:
    """A page through base.html.j2 with ``body`` (trusted markup) as its content."""
    source = '{% extends "base.html.j2" %}{% block content %}' + body + "{% endblock %}"
    env_folder = tmp_path / "templates"
    env_folder.mkdir(exist_ok=True)
    (env_folder / "t.html.j2").write_text(source, encoding="utf-8")
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [jinja2.FileSystemLoader(env_folder), jinja2.FileSystemLoader(TEMPLATES)]
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    html = env.get_template("t.html.j2").render(
        title="test page", lang="en", csp=csp, refresh=None, status=None, version="0"
    )
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Templates: escaping, policy, no JavaScript.


def test_render_escapes_every_value_and_sets_policy_language_and_landmarks() -> None:
    hostile = "<script>alert('x')</script> & \"q\" 猫"
    html = render("base.html.j2", title=hostile, lang="zh", status=hostile)
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;q&#34; 猫" in html
    assert html.startswith('<!DOCTYPE html>\n<html lang="zh">')
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    assert policy is not None and policy.group(1).replace("&#39;", "'") == CSP
    assert CSP.startswith("default-src 'none'; img-src data:;")  # fetch nothing, ever
    assert "'self'" in FOLDER_CSP and "'self'" not in CSP
    assert html.count("<main>") == 1 and "@media print" in html
    assert "refresh" not in html  # only a partial job page reloads itself
    assert 'http-equiv="refresh" content="15"' in render("base.html.j2", title="t", refresh=15)


def test_a_name_the_template_needs_but_is_not_given_raises() -> None:
    with pytest.raises(jinja2.UndefinedError, match="title"):
        render("base.html.j2")


def test_no_template_holds_javascript() -> None:
    templates = sorted(TEMPLATES.glob("*.j2"))
    assert {"base.html.j2", "explain.html.j2", "job.html.j2"} <= {t.name for t in templates}
    for template in templates:
        text = template.read_text(encoding="utf-8").lower()
        assert "<script" not in text, template.name
        assert "javascript:" not in text, template.name
        assert not re.search(r"\son[a-z]+\s*=", text), template.name  # onclick=, onerror=...


def test_data_uri_round_trips_and_refuses_what_is_not_png() -> None:
    data = png()
    uri = data_uri(data)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.removeprefix("data:image/png;base64,")) == data
    with pytest.raises(ValueError, match="expected PNG bytes"):
        data_uri(b"GIF89a...")


def test_numbers_in_tables() -> None:
    assert [number(None), number(3), number(0.12345), number(2.5, 1)] == ["–", "3", "0.123", "2.5"]
    assert [number(-0.0004), number(-0.0006), number(True)] == ["0.000", "-0.001", "True"]


# ---------------------------------------------------------------------------------------------
# The harness: a clean page passes, and each kind of problem is caught.


def test_without_chromium_the_check_skips_but_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(harness, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"needs chromium \(/nonexistent/chromium"):
        chromium_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="in CI it must run"):
        chromium_or_skip()


def test_a_self_contained_page_passes(tmp_path: Path, browser: None) -> None:
    body = (
        f'<h2>figure</h2><img src="{data_uri(png())}" alt="a red rectangle"><p>{{{{ title }}}}</p>'
    )
    check = check_page(page_with(tmp_path, body), screenshot="pages-self-contained.png")
    assert check.problems() == []
    assert (check.images, check.scripts, check.title) == (1, 0, "test page")
    assert check.screenshot == ARTIFACTS / "pages-self-contained.png"
    assert check.screenshot.read_bytes().startswith(b"\x89PNG")


def test_the_harness_catches_fetches_broken_images_scripts_and_missing_alt(
    tmp_path: Path, browser: None
) -> None:
    (tmp_path / "beside.png").write_bytes(png())
    body = (
        '<img src="http://example.invalid/x.png" alt="remote">'  # a fetch: CSP blocks it
        '<img src="beside.png" alt="a file next to the page">'  # any file: also blocked
        f'<img src="{data_uri(png())[:40]}" alt="truncated">'  # does not decode
        f'<img src="{data_uri(png())}">'  # no alt: axe's image-alt (critical)
        "<script>document.title = 'ran'</script>"  # CSP blocks it; counted anyway
    )
    check = check_page(page_with(tmp_path, body))
    assert check.requests[:2] == (
        "http://example.invalid/x.png",
        (tmp_path / "beside.png").as_uri(),
    )
    assert sum("Content Security Policy" in e for e in check.console_errors) >= 3
    assert check.broken_images[:2] == ("http://example.invalid/x.png", "beside.png")
    assert len(check.broken_images) == 3
    assert [v.split(":")[0] for v in check.serious_violations] == ["image-alt"]
    assert check.scripts == 1 and check.title == "test page"  # the script did not run
    # a job page's policy lets its own folder's images load, and nothing else
    folder = page_with(tmp_path, body, csp=FOLDER_CSP, name="folder.html")
    check = check_page(folder)
    assert check.outside() == ("http://example.invalid/x.png",)
    assert "beside.png" not in check.broken_images


# ---------------------------------------------------------------------------------------------
# Every job's page, in the browser.


def assert_clean_folder_page(check_path: Path, screenshot: str) -> str:
    """Check a job page (its figures are files of its folder); return its text."""
    check = check_page(check_path, screenshot=screenshot)
    assert check.console_errors == ()
    assert check.outside() == ()  # only files of its own folder
    assert check.broken_images == ()
    assert check.serious_violations == ()
    assert check.scripts == 0
    assert check.images == len(list(check_path.parent.glob("*.png")))  # every figure shown
    return check.text


def test_explain_page_shows_hostile_names_and_labels_as_text(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str], browser: None
) -> None:
    folder = tmp_path / "<script>alert(1)<"
    folder.mkdir()
    hostile, quoted = folder / f"{HOSTILE}.png", folder / f"{QUOTED}.png"
    shutil.copy(assets / "a.png", hostile)
    shutil.copy(assets / "b.png", quoted)
    out = tmp_path / "out"
    result = run_cli(
        capsys, "explain", str(hostile), str(quoted), *tiny, "--methods", "gradient", "-q",
        "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    text = assert_clean_folder_page(out / "index.html", "pages-explain.png")
    assert f"{HOSTILE} ({hostile})" in text  # name and source, literally
    assert f"{QUOTED} ({quoted})" in text
    assert "<b>fish</b> (4)" in text  # a class label among the top predictions


def test_sanity_page(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str], browser: None
) -> None:
    out = tmp_path / "out"
    image = tmp_path / f"{QUOTED}.png"
    shutil.copy(assets / "a.png", image)
    result = run_cli(
        capsys, "sanity", str(image), str(assets / "b.png"), *tiny,
        "--methods", "gradient,edge_detector", "--figures", "2", "--out", str(out), "-q",
    )  # fmt: skip
    assert result.code == 0, result.err
    text = assert_clean_folder_page(out / "index.html", "pages-sanity.png")
    assert "Similarity to the trained model's map after the last step (features.0)" in text
    assert f"each method's map of {QUOTED}" not in text  # alt text is not body text
    summary = json.loads((out / "sanity.json").read_text(encoding="utf-8"))
    mean = summary["randomization"]["methods"]["gradient"]["spearman_abs"]["mean"][-1]
    assert f"gradient\t{mean:.3f}\t" in text  # the table's number is the JSON's
    edge = summary["randomization"]["verdicts"]["edge_detector"]  # ignores the model: must fail
    assert edge["verdict"] == "failed"
    assert f"edge_detector\tfailed\t{edge['mean']:.3f}\t" in text


def test_anatomy_page_with_a_hostile_concept_name(
    tmp_path: Path, assets: Path, tiny: list[str], capsys: pytest.CaptureFixture[str], browser: None
) -> None:
    data, concept = tmp_path / "data", tmp_path / "concept"
    rng = np.random.default_rng(0)
    for folder, count in [*((data / str(c), 43) for c in range(5)), (concept, 4)]:
        folder.mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    name = "<script>stripes</script>"
    out = tmp_path / "out"
    result = run_cli(
        capsys, "anatomy", *tiny, "--data", str(data), "--modules", "features.0,features.2",
        "--probe-size", "40", "--sweep-size", "20", "--concept", f"{name}={concept}",
        "--concept-class", "4", "--concept-layer", "features.2", "--runs", "3",
        "--out", str(out), "-q",
    )  # fmt: skip
    assert result.code == 0, result.err
    text = assert_clean_folder_page(out / "index.html", "pages-anatomy.png")
    assert f"{name}\tfeatures.2\t<b>fish</b> (4)\t" in text
    assert "Module cards" in text


def test_features_page(tmp_path: Path, capsys: pytest.CaptureFixture[str], browser: None) -> None:
    out = tmp_path / "out"
    result = run_cli(
        capsys, "features", "filters", "--model", "fashion-cnn", "--device", "cpu", "-q",
        "--layer", "conv1", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    text = assert_clean_folder_page(out / "index.html", "pages-features.png")
    assert "layer\tconv1" in text
