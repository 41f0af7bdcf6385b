"""Words: the catalogues (every key in every language), formatting, the round-trip helper,
WordNet (a hand-built database and Debian's real one) and top-k predictions in words."""

from __future__ import annotations

import math
import os
import re
import string
from pathlib import Path
from typing import Any

import pytest

from seethrough.errors import InvalidInputError, InvalidOptionError
from seethrough.words import (
    CLOSE_RATIO,
    LANGUAGES,
    Description,
    Finding,
    Term,
    WordNet,
    WordNetNotFoundError,
    catalogue,
    describe_predictions,
    find_wordnet,
    imagenet_wnid,
    imagenet_wnids,
    method_term,
)
from seethrough.words import wordnet as wordnet_module
from words_helpers import (
    assert_round_trip,
    json_numbers,
    shown_numbers,
    unmatched,
)

DEBIAN = Path("/usr/share/wordnet")
REPO = Path(__file__).resolve().parents[1]


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _literal(template: str) -> str:
    return "".join(text for text, _, _, _ in string.Formatter().parse(template))


# ------------------------------------------------------------------ catalogues


def test_every_key_exists_in_every_language_with_the_same_fields() -> None:
    english = catalogue("en")
    for lang in LANGUAGES:
        words = catalogue(lang)
        assert set(words) == set(english), f"{lang}: keys differ from English"
        for key, template in words.items():
            assert _fields(template) == _fields(english[key]), f"{lang} {key}: fields differ"
            assert template.strip(), f"{lang} {key}: empty template"


def test_no_template_writes_a_number_of_its_own() -> None:
    """Every number of a sentence comes from the result (a field), never from the text."""
    for lang in LANGUAGES:
        for key, template in catalogue(lang).items():
            assert not re.search(r"\d", _literal(template)), f"{lang} {key}: {template!r}"


def test_every_method_has_a_name_in_every_language() -> None:
    from seethrough.attribution import method_names

    for name in method_names():
        assert isinstance(method_term(name), Term), name
    assert method_term("my_own_method") == "my_own_method"  # not in the catalogue: as given


def test_percent_format_shows_a_whole_percentage_and_terms_are_translated() -> None:
    finding = Finding(
        "explanation.focus",
        {
            "hedge": Term("explanation.hedge.passed"),
            "degree": Term("explanation.degree.concentrated"),
            "region": Term("region.top-left"),
            "region_share": 0.625,
            "region_area": 1 / 9,
            "concentration": 0.555,
            "top_fraction": 0.1,
        },
    )
    en, zh = finding.text("en"), finding.text("zh")
    assert "top left" in en and "62%" in en and "56%" in en and "11%" in en
    assert "左上" in zh and "62%" in zh and "56%" in zh  # 0.625 → 62 (round half to even)
    with pytest.raises(InvalidOptionError, match="unknown language 'fr'"):
        finding.text("fr")
    with pytest.raises(KeyError):
        Finding("explanation.focus", {"hedge": Term("explanation.hedge.passed")}).text()


_HAN = "[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]"  # Chinese characters, full-width punctuation


def test_chinese_drops_a_templates_space_only_between_two_chinese_characters() -> None:
    """The zh templates put a space around each value (``{method} 解释``), right for a
    Latin name (``Grad-CAM 解释``) and wrong for a Chinese one (``积分梯度 解释`` → no
    space); a space inside a value (a user's label) is kept."""

    def target(method: Any) -> Finding:
        values = {"method": method, "label": "猫 科", "index": 3, "score": 1.5}
        return Finding("explanation.target", values)

    ig, cam = method_term("integrated_gradients"), method_term("grad_cam")
    expected = "积分梯度解释的是类别“猫 科”（索引 3），模型对该类别的得分为 1.5。"
    assert target(ig).text("zh") == expected
    assert target(cam).text("zh").startswith("Grad-CAM 解释的是类别“猫 科”")
    assert target("我的方法").text("zh").startswith("我的方法解释的是")  # a user's own name
    assert target("my_method").text("zh").startswith("my_method 解释的是")
    assert target(ig).text("en").startswith("Integrated gradients explains")
    # digits keep their space (前 10% 的像素); two values side by side close up too
    lead = Finding("report.agreement.most", {"first": ig, "second": cam, "rho": 0.5, "n": 4})
    assert lead.text("zh").startswith("积分梯度与 Grad-CAM 最一致")
    assert "为 0.50（4 张图像的平均）" in lead.text("zh")


def test_no_chinese_template_puts_a_space_between_two_chinese_characters() -> None:
    for key, template in catalogue("zh").items():
        for text, _, _, _ in string.Formatter().parse(template):  # each piece between values
            assert not re.search(f"{_HAN} +{_HAN}", text), f"{key}: {template!r}"


# ------------------------------------------------------------------ round-trip helper


def test_shown_numbers_reads_every_kind_of_number() -> None:
    shown = shown_numbers("62%, 0.35 and 1,234; -3.5e-05 top-left 3-5 中央12.5%。")
    assert [s.text for s in shown] == ["62%", "0.35", "1,234", "-3.5e-05", "3", "5", "12.5%"]
    assert [s.value for s in shown][:3] == [62.0, 0.35, 1234.0]
    assert math.isclose(shown[3].value, -3.5e-5) and math.isclose(shown[3].tolerance, 5e-7)
    assert [s.percent for s in shown] == [True, False, False, False, False, False, True]
    assert [s.tolerance for s in shown][:3] == [0.5, 0.005, 0.5]


def test_unmatched_checks_numbers_to_their_displayed_precision() -> None:
    data = {"a": 0.623, "b": [0.3512, 7, True], "c": {"d": -2.5e-5}}
    assert json_numbers(data) == [0.623, 0.3512, 7.0, -2.5e-5]  # bools are not numbers
    assert unmatched("62% and 0.35 and 7 and -2.5e-05", data) == []
    wrong = unmatched("63% and 0.36 and 0.623% and 8", data)  # 0.623% would be 0.00623
    assert [s.text for s in wrong] == ["63%", "0.36", "0.623%", "8"]


def test_round_trip_fails_on_a_value_that_is_not_in_the_json() -> None:
    description = Description(
        "t", (Finding("predictions.top", {"label": "cat 9", "index": 3, "probability": 0.5}),)
    )
    data = {"label": "cat 9", "index": 3, "probability": 0.5}
    assert_round_trip(description, data)  # "cat 9" is a name of the JSON: its 9 is ignored
    with pytest.raises(AssertionError, match=r"probability=0\.5 is not a number of the JSON"):
        assert_round_trip(description, {**data, "probability": 0.51})
    with pytest.raises(AssertionError, match="not in the JSON"):
        assert_round_trip(description, {**data, "label": "cat"})  # now 9 is an unexplained number


# ------------------------------------------------------------------ WordNet, hand-built


def _database(folder: Path, synsets: dict[str, tuple[list[str], list[str], str]]) -> None:
    """Write a ``data.noun`` whose offsets are byte positions (the real format)."""
    header = "  1 This is a hand-built test database in the format of wndb(5WN).\n"
    names = list(synsets)

    def line(name: str, offsets: dict[str, int]) -> str:
        words, parents, gloss = synsets[name]
        lemmas = " ".join(f"{w.replace(' ', '_')} 0" for w in words)
        pointers = " ".join(f"@ {offsets[p]:08d} n 0000" for p in parents)
        pointers += " ~ 00000000 n 0000"  # a hyponym pointer: not a hypernym
        count = len(parents) + 1
        head = f"{offsets[name]:08d} 05 n {len(words):02x} {lemmas}"
        return f"{head} {count:03d} {pointers} | {gloss}  \n"

    offsets = dict.fromkeys(names, 0)
    position = len(header)
    for name in names:  # the lengths do not depend on the offsets (fixed width)
        offsets[name] = position
        position += len(line(name, offsets))
    (folder / "data.noun").write_text(header + "".join(line(n, offsets) for n in names))


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[WordNet, dict[str, str]]:
    synsets = {
        "entity": (["entity"], [], "that which is perceived"),
        "animal": (["animal", "beast"], ["entity"], "a living organism"),
        "pet": (["pet"], ["entity"], "a domesticated animal kept for companionship"),
        "cat": (["cat", "true cat"], ["animal"], "feline mammal"),
        "tabby": (["tabby", "tabby cat"], ["cat", "pet"], 'a striped cat; "a tabby on the mat"'),
        "lion": (["lion"], ["cat"], "large gregarious predatory cat"),
        "island": (["lone island"], [], "not connected to anything"),
    }
    _database(tmp_path, synsets)
    net = WordNet(tmp_path)
    text = (tmp_path / "data.noun").read_text()
    ids = {}
    for name, (words, _, _) in synsets.items():
        match = re.search(rf"^(\d{{8}}) 05 n \w\w {words[0].replace(' ', '_')} ", text, re.M)
        assert match is not None
        ids[name] = "n" + match.group(1)
    return net, ids


def test_synset_reads_lemmas_gloss_and_hypernyms(tiny: tuple[WordNet, dict[str, str]]) -> None:
    net, ids = tiny
    tabby = net.synset(ids["tabby"])
    assert tabby.lemmas == ("tabby", "tabby cat") and tabby.name == "tabby"
    assert tabby.gloss == "a striped cat"  # the example sentence is left out
    assert tabby.hypernyms == (ids["cat"], ids["pet"])  # "~" (hyponym) pointers are not
    assert [s.name for s in net.chain(ids["tabby"])] == ["cat", "animal", "entity"]
    assert net.ancestors(ids["tabby"]) == {
        ids["tabby"]: 0,
        ids["cat"]: 1,
        ids["pet"]: 1,
        ids["animal"]: 2,
        ids["entity"]: 2,
    }


def test_common_hypernym_is_the_nearest_shared_ancestor(
    tiny: tuple[WordNet, dict[str, str]],
) -> None:
    net, ids = tiny
    parent, a, b = net.common_hypernym(ids["tabby"], ids["lion"])  # type: ignore[misc]
    assert (parent.name, a, b) == ("cat", 1, 1)
    parent, a, b = net.common_hypernym(ids["tabby"], ids["pet"])  # type: ignore[misc]
    assert (parent.name, a, b) == ("pet", 1, 0)  # a synset is its own ancestor
    parent, a, b = net.common_hypernym(ids["lion"], ids["pet"])  # type: ignore[misc]
    assert (parent.name, a, b) == ("entity", 3, 1)
    assert net.common_hypernym(ids["lion"], ids["island"]) is None


def test_bad_ids_and_missing_databases_are_clear_errors(
    tiny: tuple[WordNet, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, _ = tiny
    with pytest.raises(InvalidOptionError, match="'n' and 8 digits"):
        net.synset("02123045")
    with pytest.raises(InvalidOptionError, match="no WordNet noun synset n00000003"):
        net.synset("n00000003")  # inside the header: no synset starts there
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WordNetNotFoundError, match="install Debian's wordnet-base"):
        find_wordnet(empty)
    monkeypatch.setenv("SEETHROUGH_WORDNET", str(empty))
    with pytest.raises(WordNetNotFoundError, match=r"\$SEETHROUGH_WORDNET"):
        find_wordnet()
    monkeypatch.setenv("SEETHROUGH_WORDNET", str(tmp_path))
    found = find_wordnet()
    assert found is not None and found.folder == tmp_path
    monkeypatch.delenv("SEETHROUGH_WORDNET")
    monkeypatch.setattr(wordnet_module, "DEFAULT_WORDNET", empty)
    assert find_wordnet() is None  # not installed: None, and callers say so


def test_missing_wordnet_gives_a_note_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEETHROUGH_WORDNET", raising=False)
    monkeypatch.setattr(wordnet_module, "DEFAULT_WORDNET", tmp_path)
    rows = [{"index": 281, "label": "tabby", "probability": 0.6}]
    description = describe_predictions(rows, imagenet=True)
    keys = [f.key for f in description.findings]
    assert keys == ["predictions.top", "predictions.wordnet_missing"]
    assert "WordNet was not found" in description.text("en")
    assert "未找到 WordNet" in description.text("zh")


def test_imagenet_index_is_checked() -> None:
    assert len(imagenet_wnids()) == 1000 and imagenet_wnid(281) == "n02123045"
    with pytest.raises(InvalidOptionError, match=r"\[0, 999\]"):
        imagenet_wnid(1000)


# ------------------------------------------------------------------ WordNet, Debian's real one

needs_wordnet = pytest.mark.skipif(
    not (DEBIAN / "data.noun").is_file() and not os.environ.get("CI"),
    reason="Debian's wordnet-base is not installed (apt install wordnet-base)",
)


@pytest.fixture(scope="module")
def real() -> WordNet:
    return WordNet(DEBIAN)


@needs_wordnet
def test_imagenet_ids_match_our_class_labels(real: WordNet) -> None:
    """The shipped id list is in the order of models/imagenet_classes.txt: each label is a
    lemma of its synset, except two disambiguated names (checked by hand)."""
    labels = (REPO / "src/seethrough/models/imagenet_classes.txt").read_text().splitlines()
    assert len(labels) == 1000
    mismatched = {}
    for index, label in enumerate(labels):
        lemmas = [w.lower() for w in real.synset(imagenet_wnid(index)).lemmas]
        if label.lower() not in lemmas:
            mismatched[index] = (label, lemmas)
    assert mismatched == {
        134: ("crane bird", ["crane"]),
        639: ("maillot tank suit", ["maillot", "tank suit"]),
    }


@needs_wordnet
def test_real_wordnet_glosses_and_parents(real: WordNet) -> None:
    tabby = real.synset(imagenet_wnid(281))
    assert tabby.lemmas == ("tabby", "tabby cat") and "cat" in tabby.gloss
    chain = [s.name for s in real.chain(tabby.wnid)]
    assert chain[:3] == ["domestic cat", "cat", "feline"] and chain[-1] == "entity"
    parent, a, b = real.common_hypernym(imagenet_wnid(285), imagenet_wnid(281))  # type: ignore[misc]
    assert (parent.name, a, b) == ("domestic cat", 1, 1)  # Egyptian cat, tabby
    parent, a, b = real.common_hypernym(imagenet_wnid(281), imagenet_wnid(817))  # type: ignore[misc]
    assert parent.name == "whole" and max(a, b) > 3  # tabby, sports car: nothing in common


# ------------------------------------------------------------------ predictions in words


def _rows(*items: tuple[int, str, float]) -> list[dict[str, object]]:
    return [{"index": i, "label": label, "probability": p} for i, label, p in items]


@needs_wordnet
def test_close_siblings_are_explained_by_their_common_parent(real: WordNet) -> None:
    rows = _rows((281, "tabby", 0.41), (282, "tiger cat", 0.30), (285, "Egyptian cat", 0.1))
    description = describe_predictions(rows, imagenet=True, wordnet=real)
    keys = [f.key for f in description.findings]
    assert keys == [
        "predictions.top",
        "predictions.next",
        "predictions.next",
        "predictions.siblings",
        "predictions.gloss",
        "predictions.gloss",
    ]
    assert description.findings[0].claim == "finding"
    assert description.findings[3].values["parent"] == "domestic cat"
    en = description.text("en")
    assert "“tabby” (index 281), with probability 41.0%" in en
    assert "both a kind of “domestic cat” in WordNet" in en and "mottled with black" in en
    assert "(tabby → domestic cat → cat → feline)" in en
    glosses = [
        str(f.values[k])
        for f in description.findings
        for k in ("gloss", "chain", "parent")
        if k in f.values
    ]
    assert_round_trip(description, rows, ignore=glosses)


@needs_wordnet
def test_a_close_pair_without_a_near_parent_is_only_called_close(real: WordNet) -> None:
    rows = _rows((281, "tabby", 0.4), (817, "sports car", 0.2))  # p2 = CLOSE_RATIO · p1
    assert rows[1]["probability"] == CLOSE_RATIO * rows[0]["probability"]  # type: ignore[operator]
    description = describe_predictions(rows, imagenet=True, wordnet=real)
    assert [f.key for f in description.findings][2] == "predictions.close"
    assert "at least half as likely" in description.text("en")


def test_the_close_rule_and_plain_labels() -> None:
    apart = describe_predictions(_rows((3, "shirt", 0.6), (6, "coat", 0.29)))
    assert [f.key for f in apart.findings] == ["predictions.top", "predictions.next"]
    close = describe_predictions(_rows((3, "shirt", 0.5), (6, "coat", 0.25)))
    assert [f.key for f in close.findings][-1] == "predictions.close"
    assert_round_trip(close, _rows((3, "shirt", 0.5), (6, "coat", 0.25)))
    assert "难以取舍" in close.text("zh")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "no predictions"),
        ([{"index": 1, "label": "a"}], "lacks probability"),
        (_rows((1, "a", 1.5)), r"in \[0, 1\]"),
        (_rows((1, "a", 0.2), (2, "b", 0.3)), "most likely first"),
        ([{"index": "1", "label": "a", "probability": 0.3}], "an index is an int"),
    ],
)
def test_bad_predictions_are_clear_errors(rows: list[dict[str, object]], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        describe_predictions(rows)
