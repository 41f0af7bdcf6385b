"""The one-file report: results → :class:`~seethrough.reporting.content.ReportContent` →
``report.json`` and a self-contained ``report.html``.

:func:`build_content` turns what the report job measured (:class:`ReportResults`) into
the report's JSON (schema :data:`SCHEMA`, below), its figures (PNG bytes) and raw maps;
:func:`write_report` writes ``report.json`` and ``report.html`` (every figure inlined as
a ``data:`` URI; no script; a content-security policy that lets the page fetch nothing)
into a folder — the job passes the staging folder of an
:class:`~seethrough.reporting.output.OutputFolder`, so a report is published whole or
not at all.

Every sentence of the report comes from a result's ``describe()`` (or the report's own
templates, ``words/catalogue/report.py``), and every number a sentence shows is a value
of the JSON section its ``evidence`` names (the id of the page section that shows it).
Hedges follow the evidence: an image's sentences about a method are said as findings
only when the method passed the sanity check; a method that failed is called not
reliable for this model, and its maps are not described. "Better than a random ranking"
is said only on the paired t-test Holm-corrected over every method × (deletion,
insertion) comparison of the report (:func:`_holm_corrected`); several TCAV concepts
are tested at α divided by their number (Bonferroni).

Layout of ``report.json`` (``"seethrough.report/1"``)::

    {"schema", "title", "lang", "files",
     "provenance": {"model", "model_source", "model_file", "model_sha256",
                    "parameters_sha256", "versions", "seed", "device", "command",
                    "created", "seconds"},
     "preprocessing": {"description", ...the preprocessing's fields},
     "settings": {"methods", "quick", "sanity_images", "faithfulness_steps", ...},
     "summary": [finding + {"id", "group"}]  (group: "lead", an image id, "sanity",
                 "faithfulness", "agreement" or "data"),
     "images": [{"id", "name", "source", "figure", "predictions": [{"index", "label",
                 "probability"}], "target": {"index", "label", "score"},
                 "findings": [finding + {"method": name or null}],
                 "panels": [{"method", "figure", "range": [lo, hi], "display", "sanity",
                             "explanation": {...the row's JSON: focus, completeness...}}]}],
     "agreement": null | {"metric", "methods", "matrix", "n"},
     "sanity": null | {"mode", "metric", "threshold", "n", "images", "steps", "figure",
                "methods": [{"method", "label", "control", "verdict", "reason", "mean",
                             "ci": [lo, hi], "self_check", "statistic", "steps",
                             "curve": [per-step mean]}]},
                (verdicts over the whole cascade: "mean" is the mean over images of each
                image's mean over the steps, "ci" its Student-t interval; see
                seethrough.trust.verdict)
     "faithfulness": null | {"metric": "deletion", "higher_is_better", "score",
                "fractions", "figure", "methods": [{"method", "curve", "auc",
                "comparison": {...}}], "random": {"curve", "auc"}},
     "insertion": null | (the same layout, for the insertion metric),
     "completeness": [{"image", "method", "sum", "difference", "error",
                       "relative_error", "points"}],
     "data": null | {"source", "n", "baseline", "cards": [...], "probes": {...},
                     "top_examples": {...}, "figures": [{"figure", "alt"}]}}
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..anatomy import Anatomy, TcavResult
from ..attribution.explanation import Explanation, PathExplanation
from ..inside import TopExamples
from ..trust import RandomizationResult
from ..trust.describe import verdict_finding
from ..trust.faithfulness import MetricResult
from ..trust.verdict import ControlComparison, SanityVerdict, holm_family
from ..viz import plot_anatomy, plot_card, plot_top_examples
from ..viz.report_figures import input_png, map_panel, plot_curves, png_bytes
from ..words import Description, Finding
from ..words.names import method_term
from ..words.predictions import describe_predictions
from .content import Embedding, ReportContent
from .html import data_uri, render
from .page_words import page_words
from .serialize import dumps, to_jsonable

__all__ = [
    "REPORT_HTML",
    "REPORT_JSON",
    "SCHEMA",
    "Agreement",
    "Faithfulness",
    "ImageInfo",
    "ReportResults",
    "build_content",
    "write_report",
]

SCHEMA = "seethrough.report/1"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"

Prediction = tuple[int, str, float]
"""(class index, class name, probability)."""


@dataclass(frozen=True)
class ImageInfo:
    """One explained image: its name, where it came from, its top predictions."""

    name: str
    source: str
    predictions: tuple[Prediction, ...]


@dataclass(frozen=True, eq=False)
class Agreement:
    """Mean Spearman correlation of the absolute maps of each pair of methods over ``n``
    images (``matrix`` ``(M, M)``, 1 on the diagonal). The maps are reduced as in the
    sanity check (:func:`seethrough.trust.spearman`): Σ over channels of |A| at the input's
    size, clipped at its 99th percentile."""

    methods: tuple[str, ...]
    matrix: Tensor
    n: int
    metric: str = "spearman_abs"


@dataclass(frozen=True, eq=False)
class Faithfulness:
    """One removal metric (deletion or insertion) for each method and for the random
    ranking (the ``random_noise`` control) on the same images, with the comparisons."""

    metric: str
    results: tuple[MetricResult, ...]
    random: MetricResult
    comparisons: tuple[ControlComparison, ...]


@dataclass(frozen=True, eq=False)
class ReportResults:
    """Everything the report job measured; :func:`build_content` turns it into a report.

    ``explanations`` are one per method, row ``i`` explaining image ``i``;
    ``randomization`` ran on the images ``sanity_images`` with ``sanity_methods`` (the
    report's methods in order, then the controls), whose verdicts are ``verdicts``
    (by the report's method name).
    """

    title: str
    lang: str
    provenance: Mapping[str, Any]
    preprocessing: Mapping[str, Any]
    settings: Mapping[str, Any]
    images: tuple[ImageInfo, ...]
    explanations: tuple[Explanation, ...]
    agreement: Agreement | None = None
    randomization: RandomizationResult | None = None
    sanity_images: tuple[int, ...] = ()
    sanity_methods: tuple[str, ...] = ()
    controls: tuple[str, ...] = ()
    verdicts: Mapping[str, SanityVerdict] = field(default_factory=dict)
    faithfulness: tuple[Faithfulness, ...] = ()
    anatomy: Anatomy | None = None
    data_source: str | None = None
    data_size: int = 0
    top_examples: TopExamples | None = None
    concepts: tuple[TcavResult, ...] = ()
    embedding: Embedding | None = None
    imagenet: bool = False
    """Whether the class indices are ImageNet's (then WordNet describes them)."""


# ------------------------------------------------------------------------ building


def build_content(results: ReportResults) -> ReportContent:
    """The report (JSON, figures, maps, embedding) of ``results``; see the module docstring."""
    builder = _Builder(results)
    return builder.build()


def _holm_corrected(faithfulness: tuple[Faithfulness, ...]) -> tuple[Faithfulness, ...]:
    """The faithfulness comparisons judged as one family: every method against the random
    ranking by every metric the report shows (deletion and insertion), their p-values
    Holm-corrected together (:func:`seethrough.trust.verdict.holm_family`), so that a
    method is called better than random only on the corrected test."""
    flat = [c for f in faithfulness for c in f.comparisons]
    corrected = iter(holm_family(flat))
    return tuple(
        dataclasses.replace(f, comparisons=tuple(next(corrected) for _ in f.comparisons))
        for f in faithfulness
    )


def _bonferroni_concepts(concepts: tuple[TcavResult, ...]) -> tuple[TcavResult, ...]:
    """Several TCAV concepts tested together: each one's ``alpha`` divided by their
    number (Bonferroni, as Kim et al.'s code does), so that "the model uses concept X"
    holds for the family; the sentences show the corrected α."""
    m = len(concepts)
    if m < 2:
        return concepts
    return tuple(dataclasses.replace(t, alpha=t.alpha / m) for t in concepts)


class _Builder:
    def __init__(self, results: ReportResults) -> None:
        self.r = dataclasses.replace(
            results,
            faithfulness=_holm_corrected(results.faithfulness),
            concepts=_bonferroni_concepts(results.concepts),
        )
        self.lang = results.lang
        self.figures: dict[str, bytes] = {}
        self.maps: dict[tuple[str, str], np.ndarray] = {}
        self.ids = [f"image-{i + 1}" for i in range(len(results.images))]

    def build(self) -> ReportContent:
        r = self.r
        sections = {
            "sanity": self._sanity(),
            "faithfulness": self._faithfulness("deletion"),
            "insertion": self._faithfulness("insertion"),
            "completeness": self._completeness(),
            "agreement": self._agreement(),
            "data": self._data(),
        }
        images = [self._image(i) for i in range(len(r.images))]
        data: dict[str, Any] = {
            "schema": SCHEMA,
            "title": r.title,
            "lang": r.lang,
            "files": [REPORT_JSON, REPORT_HTML],
            "provenance": dict(r.provenance),
            "preprocessing": dict(r.preprocessing),
            "settings": dict(r.settings),
            "summary": [],
            "images": images,
            **sections,
        }
        data = to_jsonable(data)
        data["summary"] = to_jsonable(self._summary(data))
        return ReportContent(data, dict(self.figures), dict(self.maps), r.embedding)

    # -------------------------------------------------------------- images

    def verdict(self, method: str) -> str | None:
        found = self.r.verdicts.get(method)
        return None if found is None else found.verdict

    def _image(self, i: int) -> dict[str, Any]:
        r, image_id = self.r, self.ids[i]
        info = r.images[i]
        first = r.explanations[0]
        input_id = f"{image_id}/input"
        self.figures[input_id] = input_png(first, i)
        panels: list[dict[str, Any]] = []
        findings: list[dict[str, Any]] = []
        if info.predictions:
            rows = [{"index": c, "label": n, "probability": p} for c, n, p in info.predictions]
            said = describe_predictions(rows, self.lang, imagenet=r.imagenet)
            findings += [
                {**f.to_dict(self.lang), "method": None}
                for f in _evidenced(said, image_id)
                if f.key != "predictions.next"  # the table shows the runners-up
            ]
        for ex in r.explanations:
            figure_id = f"{image_id}/{ex.method}"
            png, (low, high) = map_panel(ex, i)
            self.figures[figure_id] = png
            self.maps[(image_id, ex.method)] = _channel_sum(ex, i)
            row = _row(ex, i)
            panels.append(
                {
                    "method": ex.method,
                    "figure": figure_id,
                    "range": [low, high],
                    "display": ex.display,
                    "sanity": self.verdict(ex.method),
                    "explanation": _explanation_json(row),
                }
            )
            said = row.describe(self.lang, sanity=self.verdict(ex.method))
            findings += [
                {**f.to_dict(self.lang), "method": ex.method} for f in _evidenced(said, image_id)
            ]
        target = int(first.targets[i])
        return {
            "id": image_id,
            "name": info.name,
            "source": info.source,
            "figure": input_id,
            "predictions": [
                {"index": c, "label": name, "probability": p} for c, name, p in info.predictions
            ],
            "target": {
                "index": target,
                "label": first.target_names()[i],
                "score": float(first.scores[i]),
            },
            "findings": findings,
            "panels": panels,
        }

    # -------------------------------------------------------------- sections

    def _agreement(self) -> dict[str, Any] | None:
        a = self.r.agreement
        if a is None:
            return None
        return {"metric": a.metric, "methods": list(a.methods), "matrix": a.matrix, "n": a.n}

    def _sanity(self) -> dict[str, Any] | None:
        r = self.r
        result = r.randomization
        if result is None:
            return None
        entries = []
        curves = {}
        steps = [s.name for s in result.steps]
        for name, label, similarity in zip(
            r.sanity_methods, result.methods, result.similarities, strict=True
        ):
            verdict = r.verdicts.get(name)
            curve = similarity.mean(_SANITY_METRIC)
            ceiling = similarity.self_check.get(_SANITY_METRIC, math.nan)
            if math.isfinite(ceiling):  # the self-check: the trained model against itself
                curves[name] = (range(len(steps) + 1), [ceiling, *curve.tolist()])
            else:
                curves[name] = (range(1, len(steps) + 1), curve.tolist())
            entries.append(
                {
                    "method": name,
                    "label": label,
                    "control": name in r.controls,
                    **(_verdict_json(verdict) if verdict is not None else {}),
                    "curve": curve,
                }
            )
        figure = plot_curves(
            curves,
            xlabel="randomized (cascading, from the logits down)",
            ylabel="Spearman ρ of |map| to the trained model's",
            title="Sanity check: model-parameter randomization",
            xticks=["trained (self-check)", *steps],
            dashed=r.controls,  # no threshold line: the verdict judges the curve's mean
        )
        self.figures["sanity"] = png_bytes(figure)
        return {
            "mode": result.mode,
            "granularity": result.granularity,
            "metric": _SANITY_METRIC,
            "threshold": _threshold(r.verdicts),
            "n": len(r.sanity_images),
            "images": [self.ids[i] for i in r.sanity_images],
            "steps": steps,
            "figure": "sanity",
            "seconds": result.seconds,
            "methods": entries,
        }

    def _faithfulness(self, metric: str) -> dict[str, Any] | None:
        found = [f for f in self.r.faithfulness if f.metric == metric]
        if not found:
            return None
        f = found[0]
        fractions = f.random.x_values
        assert fractions is not None
        curves = {m.method: (fractions.tolist(), _mean_curve(m).tolist()) for m in f.results}
        curves["random"] = (fractions.tolist(), _mean_curve(f.random).tolist())
        figure = plot_curves(
            curves,
            xlabel=f"fraction of pixels {'removed' if metric == 'deletion' else 'inserted'}",
            ylabel=f"target probability (mean of {len(f.random.scores)} images)",
            title=f"{metric.capitalize()}: most relevant pixels first",
            dashed=("random",),
        )
        self.figures[metric] = png_bytes(figure)
        by_method = {c.method: c for c in f.comparisons}
        return {
            "metric": metric,
            "higher_is_better": f.random.higher_is_better,
            "score": f.random.settings.get("score"),
            "baseline": f.random.settings.get("baseline"),
            "n": len(f.random.scores),
            "fractions": fractions,
            "figure": metric,
            "methods": [
                {
                    "method": m.method,
                    "curve": _mean_curve(m),
                    "auc": m.mean(),
                    "auc_per_image": m.scores,
                    "comparison": by_method.get(m.method),
                }
                for m in f.results
            ],
            "random": {
                "method": f.random.method,
                "curve": _mean_curve(f.random),
                "auc": f.random.mean(),
                "auc_per_image": f.random.scores,
            },
        }

    def _completeness(self) -> list[dict[str, Any]]:
        rows = []
        for ex in self.r.explanations:
            if not isinstance(ex, PathExplanation):
                continue
            error = ex.completeness_error.double()
            difference = ex.scores.double() - ex.baseline_scores.double()
            relative = ex.relative_completeness_error
            for i in range(len(ex)):
                rows.append(
                    {
                        "image": self.ids[int(ex.image_index[i])],
                        "method": ex.method,
                        "sum": float(ex.attributions[i].double().sum()),
                        "difference": float(difference[i]),
                        "error": float(error[i]),
                        "relative_error": float(relative[i]),
                        "points": int(ex.path_points[i]),
                    }
                )
        return rows

    def _data(self) -> dict[str, Any] | None:
        r = self.r
        if r.anatomy is None:
            return None
        a = r.anatomy
        self.figures["data/overview"] = png_bytes(plot_anatomy(a), dpi=70)
        figures = [
            {
                "figure": "data/overview",
                "alt": "Per module: accuracy drop when ablated, gradient size and probe accuracy",
            }
        ]
        for k, card in enumerate(a.cards):
            figure_id = f"data/card-{k + 1}"
            self.figures[figure_id] = png_bytes(plot_card(card, a.class_names), dpi=60)
            figures.append({"figure": figure_id, "alt": f"The card of module {card.name}"})
        top = None
        if r.top_examples is not None:
            top = r.top_examples
            self.figures["data/top"] = png_bytes(plot_top_examples(top), dpi=60)
            alt = f"The images that excite channels of {top.layer} most"
            figures.append({"figure": "data/top", "alt": alt})
        anatomy = to_jsonable(a)
        return {
            "source": r.data_source,
            "n": r.data_size,
            "baseline": anatomy["baseline"],
            "chance": anatomy.get("chance"),
            "pixel_probe_accuracy": anatomy.get("pixel_probe_accuracy"),
            "cards": anatomy["cards"],
            "probes": a.probes,
            "top_examples": top,
            "concepts": list(r.concepts),
            "figures": figures,
        }

    # -------------------------------------------------------------- summary

    def _summary(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The findings at the top of the page, in groups: each image (its top classes,
        then what its most trustworthy map shows), then the checks."""
        r, lang = self.r, self.lang
        grouped: list[tuple[str, list[Finding]]] = [("lead", self._lead_note())]
        for i, image in enumerate(data["images"]):
            said = self._prediction_findings(image["predictions"], self.ids[i])
            grouped.append((self.ids[i], said + self._lead_findings(i)))
        if r.randomization is not None:
            mode = r.randomization.mode
            said = [
                verdict_finding(v, evidence="sanity", mode=mode)
                for name, v in r.verdicts.items()
                if name not in r.controls
            ]
        else:
            said = [Finding("report.sanity.not_run", {}, "sanity", "hedged")]
        grouped.append(("sanity", said))
        said = []
        for f in r.faithfulness:
            if f.metric != "deletion":
                continue
            for c in f.comparisons:  # a failed method's ranking is no finding about the model
                if self.verdict(c.method) != "failed":
                    said += _evidenced(c.describe(lang), "faithfulness")
        grouped.append(("faithfulness", said))
        grouped.append(("agreement", self._agreement_findings()))
        if r.anatomy is not None:
            said = _evidenced(r.anatomy.describe(lang), "data")
            said += [x for t in r.concepts for x in _evidenced(t.describe(lang), "data")]
            grouped.append(("data", said))
        out: list[dict[str, Any]] = []
        for group, findings in grouped:
            for finding in findings:
                entry = {"id": f"finding-{len(out) + 1}", "group": group}
                out.append({**finding.to_dict(lang), **entry})
        return out

    def _prediction_findings(
        self, predictions: list[dict[str, Any]], image_id: str
    ) -> list[Finding]:
        """The top class (and a close runner-up, with WordNet's common parent)."""
        if not predictions:
            return []
        said = describe_predictions(predictions, self.lang, imagenet=self.r.imagenet)
        keep = ("predictions.top", "predictions.close", "predictions.siblings")
        return [f for f in _evidenced(said, image_id) if f.key in keep]

    def lead(self) -> Explanation:
        """The explanation the summary describes: among the methods that passed the sanity
        check, the one that beats the random ranking in the deletion test by the most
        (lowest mean deletion area; methods better than random first); the first that
        passed when there is no deletion test; the first method when none passed (its
        sentences are then hedged or called unreliable by its own ``describe``)."""
        r = self.r
        passed = [ex for ex in r.explanations if self.verdict(ex.method) == "passed"]
        if not passed:
            return r.explanations[0]
        deletion = next((f for f in r.faithfulness if f.metric == "deletion"), None)
        if deletion is None:
            return passed[0]
        area = {m.method: m.mean() for m in deletion.results}
        better = {c.method for c in deletion.comparisons if c.verdict == "better"}

        def rank(ex: Explanation) -> tuple[bool, float]:
            value = area.get(ex.method, math.inf)
            return ex.method not in better, value if math.isfinite(value) else math.inf

        return min(passed, key=rank)

    def _lead_note(self) -> list[Finding]:
        """Which method the summary's sentences about the images use, and why."""
        r, lead = self.r, self.lead()
        if r.randomization is None:
            return []  # the sanity section's own sentence says it was not run
        method = method_term(lead.method)
        if self.verdict(lead.method) != "passed":
            return [Finding("report.lead.unchecked", {"method": method}, "sanity", "hedged")]
        deletion = next((f for f in r.faithfulness if f.metric == "deletion"), None)
        if deletion is None:
            return [Finding("report.lead.passed", {"method": method}, "sanity", "note")]
        auc = next(m.mean() for m in deletion.results if m.method == lead.method)
        values = {"method": method, "auc": auc, "random": deletion.random.mean()}
        better = any(
            c.method == lead.method and c.verdict == "better" for c in deletion.comparisons
        )
        if better:
            return [Finding("report.lead.faithful", values, "faithfulness", "note")]
        return [Finding("report.lead.unfaithful", values, "faithfulness", "hedged")]

    def _lead_findings(self, i: int) -> list[Finding]:
        """What the lead explanation (:meth:`lead`) says about image ``i``, less its sentence
        naming the explained class when that is the top prediction (the image's first
        sentence names it already)."""
        lead = self.lead()
        said = _row(lead, i).describe(self.lang, sanity=self.verdict(lead.method))
        top = self.r.images[i].predictions[:1]
        if top and top[0][0] == int(lead.targets[i]):
            kept = [f for f in said.findings if not f.key.startswith("explanation.target")]
            said = Description(said.subject, tuple(kept))
        return _evidenced(said, self.ids[i])

    def _agreement_findings(self) -> list[Finding]:
        a = self.r.agreement
        if a is None or len(a.methods) < 2:
            return []
        m = a.matrix.double()
        pairs = [
            (float(m[p, q]), a.methods[p], a.methods[q])
            for p in range(len(a.methods))
            for q in range(p + 1, len(a.methods))
            if math.isfinite(float(m[p, q]))
        ]
        if not pairs:
            return []
        most, least = max(pairs), min(pairs)

        def finding(key: str, pair: tuple[float, str, str]) -> Finding:
            rho, first, second = pair
            values = {"first": method_term(first), "second": method_term(second)}
            return Finding(key, {**values, "rho": rho, "n": a.n}, "agreement", "note")

        found = [finding("report.agreement.most", most)]
        if least != most:
            found.append(finding("report.agreement.least", least))
        return found


_SANITY_METRIC = "spearman_abs"


def _threshold(verdicts: Mapping[str, SanityVerdict]) -> float | None:
    return next((v.threshold for v in verdicts.values()), None)


def _verdict_json(v: SanityVerdict) -> dict[str, Any]:
    return {
        "verdict": v.verdict,
        "reason": v.reason,
        "step": v.step,
        "mean": v.mean,
        "ci": list(v.ci) if v.ci is not None else None,
        "n": v.n,
        "threshold": v.threshold,
        "self_check": v.self_check,
        "level": v.level,
        "statistic": v.statistic,
        "steps": v.steps,
    }


def _mean_curve(m: MetricResult) -> Tensor:
    assert m.curve is not None
    return m.curve.double().nanmean(dim=0)


def _channel_sum(ex: Explanation, i: int) -> np.ndarray:
    values = ex.to_input_size().attributions[i].detach().double().sum(dim=0)
    return values.cpu().numpy()


def _row(ex: Explanation, i: int) -> Explanation:
    """Row ``i`` of ``ex`` as an explanation of its own: every per-row tensor field sliced."""
    n = len(ex)
    changes = {
        name: value[i : i + 1]
        for name, value in vars(ex).items()
        if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == n
    }
    changes["image_index"] = torch.zeros(
        1, dtype=ex.image_index.dtype, device=ex.image_index.device
    )
    return ex.replace(**changes)


def _explanation_json(row: Explanation) -> dict[str, Any]:
    """A row's explanation JSON without the bulky fields (attributions, inputs)."""
    found = to_jsonable(row)
    return {k: v for k, v in found.items() if k not in _BULKY}


_BULKY = ("attributions", "inputs", "baselines", "class_names", "input_transform", "versions")
"""Fields of an explanation's JSON that a panel leaves out (the report has them once)."""


def _evidenced(description: Description, section: str) -> list[Finding]:
    """The description's findings, each pointing at the page section ``section``."""
    return [Finding(f.key, f.values, section, f.claim) for f in description.findings]


# ------------------------------------------------------------------------ writing


def write_report(content: ReportContent, folder: str | Path) -> tuple[str, ...]:
    """Write ``report.json`` and ``report.html`` of ``content`` into ``folder`` (a staging
    folder of an :class:`~seethrough.reporting.output.OutputFolder`); returns their names."""
    folder = Path(folder)
    (folder / REPORT_JSON).write_text(dumps(content.data, indent=1), encoding="utf-8")
    (folder / REPORT_HTML).write_text(render_report(content), encoding="utf-8")
    return (REPORT_JSON, REPORT_HTML)


def render_report(content: ReportContent) -> str:
    """The HTML page of ``content`` (every figure inlined)."""
    data = content.data
    uris = {key: data_uri(png) for key, png in content.figures.items()}
    lang = data.get("lang", "en")
    return render(
        "report.html.j2",
        lang=lang,
        title=data.get("title", "seethrough report"),
        report=data,
        figures=uris,
        groups=_groups(data, lang),
        ui=page_words(lang),
        settings=[(key, _show(value)) for key, value in data.get("settings", {}).items()],
        fmt=_fmt,
        percent=_percent,
    )


def _groups(data: Mapping[str, Any], lang: str) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """The summary's findings by group, in order, each group with its heading."""
    names = {image["id"]: image["name"] for image in data.get("images", [])}
    ui = page_words(lang)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for f in data.get("summary", []):
        groups.setdefault(f.get("group", ""), []).append(f)
    return [(names.get(group) or ui(f"heading.{group}"), items) for group, items in groups.items()]


def _show(value: Any) -> str:
    """A setting's value as text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell (``—`` for a missing one)."""
    if value is None:
        return "—"
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _percent(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.1f}%"  # as the sentences write it
