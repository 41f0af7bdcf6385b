"""The README and the CLI's help say what the code does (issue 18 #7): every ```python block of
README.md runs, in order, in one namespace (as a reader pastes them); every line of its
```shell blocks runs through the installed ``seethrough`` command; every example in a
``seethrough ... --help`` text runs.

Inputs are real and small: the bundled photos saved as the files the README names
(``photo.jpg``, ``cat.jpg``, ...), and a small CNN in ``mypkg/nets.py`` for the lines that load
the reader's own model. Nothing is monkeypatched. A line the README itself says takes minutes
runs with the faster choice the README names on that line (``FASTER``)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language, first code line (1-based) and text."""

    language: str
    line: int
    text: str


def blocks(language: str) -> list[Block]:
    found: list[Block] = []
    current: list[str] | None = None
    start, lang = 0, ""
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            if current is None:
                current, start, lang = [], number + 1, line[3:].strip()
            else:
                found.append(Block(lang, start, "\n".join(current) + "\n"))
                current = None
        elif current is not None:
            current.append(line)
    return [b for b in found if b.language == language]


def write_project(folder: Path) -> None:
    """The reader's files the README's examples name, made from real photos and a real
    (small, randomly initialised) CNN."""
    import torch
    from PIL import Image
    from safetensors.torch import save_file
    from skimage import data

    Image.fromarray(data.chelsea()).save(folder / "photo.jpg")
    Image.fromarray(data.chelsea()).save(folder / "cat.jpg")
    (folder / "photos").mkdir()
    Image.fromarray(data.coffee()).save(folder / "photos" / "coffee.jpg")
    Image.fromarray(data.astronaut()).resize((128, 128)).save(folder / "scan.png")
    (folder / "mypkg").mkdir()
    (folder / "mypkg" / "__init__.py").write_text("", encoding="utf-8")
    (folder / "mypkg" / "nets.py").write_text(NETS, encoding="utf-8")
    (folder / "classes.txt").write_text("ant\nbee\nwasp\n", encoding="utf-8")
    sys.path.insert(0, str(folder))
    try:
        from mypkg.nets import make_net

        save_file(make_net().state_dict(), str(folder / "net.safetensors"))
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
            del sys.modules[name]
    del torch


NETS = '''
import torch
from torch import nn


def make_net() -> nn.Module:
    """Three classes; a 16-channel conv layer (`conv2`) for the CAMs and channel examples."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=4), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3),
    ).eval()


trained_net = make_net()
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------------ Python blocks
def check_tour(namespace: dict) -> None:
    """The tour's claims about what it printed (the issue's drift)."""
    names = namespace["ex"].target_names()
    assert names[0] == "tiger cat (282)"
    assert "'tiger cat (282)'" in README.read_text(encoding="utf-8")


def check_atlas(namespace: dict) -> None:
    atlas = namespace["atlas"]
    assert tuple(atlas.images.shape) == (4, 3, 64, 64) and tuple(atlas.traces.shape) == (64, 4)
    assert float(atlas.images.min()) >= 0 and float(atlas.images.max()) <= 1


def check_crops(namespace: dict) -> None:
    """The crops are normalised model inputs (Fashion-MNIST's black background is
    ``-mean / std`` < 0), not pixels in [0, 1]."""
    crops = namespace["top"].crops()
    assert min(float(c.min()) for row in crops for c in row) < 0


# after a block containing the key ran: check what the README says it gives
CHECKS = {"ex.target_names()": check_tour, "atlas.images": check_atlas, "top.crops()": check_crops}


@pytest.mark.slow
def test_readme_python_blocks_run_in_order(project: Path) -> None:
    python = blocks("python")
    assert len(python) >= 4, "the README's tour has lost its Python examples"
    namespace: dict = {"__name__": "readme"}
    sys.path.insert(0, str(project))  # a reader's own package (mypkg) is importable
    try:
        for block in python:
            # leading newlines: tracebacks give README.md's own line numbers
            code = compile("\n" * (block.line - 1) + block.text, str(README), "exec")
            try:
                exec(code, namespace)
            except Exception as error:
                pytest.fail(
                    f"README.md block at line {block.line}: {type(error).__name__}: {error}"
                )
            for key, check in CHECKS.items():
                if key in block.text:
                    check(namespace)
    finally:
        sys.path.remove(str(project))


# ------------------------------------------------------------------------------- CLI lines
# The README says these lines take minutes and names, on the line, a faster choice.
FASTER = {"seethrough explain": "--methods gradient,grad_cam", "seethrough report": "--quick"}
# Lines that take more than ~20 s here (integrated gradients on two photos, 2 CPU cores).
SLOW = {
    "seethrough explain cat.jpg photos/",
    "seethrough report",
    "seethrough robust compare",  # about a minute
}


def shell_lines() -> list[str]:
    lines = []
    for block in blocks("shell"):
        lines += [s.strip() for s in block.text.splitlines() if s.strip().startswith("seethrough")]
    return lines


def cli_command() -> list[str]:
    """The installed ``seethrough`` command (as a reader runs it: the current folder is not
    on ``sys.path`` unless the CLI puts it there)."""
    script = Path(sys.executable).with_name("seethrough")
    return [str(script)] if script.exists() else [sys.executable, "-m", "seethrough.cli"]


def run_cli(args: list[str], cwd: Path) -> tuple[int, str, str]:
    done = subprocess.run(
        [*cli_command(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def strict_json(path: Path) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"{path.name} holds {constant}, which is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def cli_cases() -> list[Any]:
    cases = []
    for line in shell_lines():
        marks = [pytest.mark.slow] if any(line.startswith(s) for s in SLOW) else []
        cases.append(pytest.param(line, marks=marks, id=line.split("#")[0].strip()))
    return cases


@pytest.mark.parametrize("line", cli_cases())
def test_readme_cli_line_runs(line: str, project: Path) -> None:
    command, _, comment = line.partition("#")
    args = shlex.split(command)[1:]
    faster = FASTER.get(command.strip())
    if faster is not None:
        assert faster in comment, f"the README no longer names {faster!r} on {line!r}"
        args += shlex.split(faster)
    code, out, err = run_cli(args, project)
    assert code == 0, f"{line!r} exited with {code}:\n{err[-3000:]}"
    assert "Traceback" not in err
    if args[0] in ("explain", "sanity"):
        default = {"explain": "seethrough-out", "sanity": "seethrough-sanity"}[args[0]]
        folder = project / (args[args.index("--out") + 1] if "--out" in args else default)
        summary = "summary.json" if args[0] == "explain" else "sanity.json"
        strict_json(folder / summary)
    elif args[0] == "report":
        out = args[args.index("--out") + 1] if "--out" in args else "seethrough-report"
        report = strict_json(project / out / "report.json")
        assert isinstance(report, dict) and report["schema"] == "seethrough.report/1"
        folder = project / out
        assert (folder / "report.html").stat().st_size > 0
    elif args[0] == "methods":
        import seethrough as st

        for name in st.method_names():
            assert re.search(rf"^{name}\b", out, re.MULTILINE), f"{name} not listed"
    elif args == ["layers"]:
        assert re.search(r"^_blocks\.3\b", out, re.MULTILINE), out[:2000]


def test_readme_layer_names_exist_in_the_built_in_model() -> None:
    """Every EfficientNet-Lite0 layer the README names (in code, in backticks) is a real
    module name (the tour once said ``blocks.3`` where the names are ``_blocks.N``)."""
    import seethrough as st

    modules = {name for name, _ in st.load_model("efficientnet-lite0").module.named_modules()}
    text = README.read_text(encoding="utf-8")
    named = set(re.findall(r"[\"'`](_?blocks\.\d+|_conv_stem|_conv_head)[\"'`]", text))
    assert named, "the README names no layer any more; update this test"
    assert named <= modules, sorted(named - modules)


# ------------------------------------------------------------------------- --help examples
# How to run each command on the small CNN; an example from its --help is added to this.
BASE: dict[tuple[str, ...], list[str]] = {
    ("explain",): ["scan.png", "--model", "mypkg.nets:trained_net"],
    ("sanity",): ["scan.png", "--model", "mypkg.nets:trained_net"],
    ("features", "filters"): ["--model", "mypkg.nets:trained_net", "--layer", "2"],
    ("features", "maps"): ["scan.png", "--model", "mypkg.nets:trained_net", "--layer", "2"],
    ("features", "maximize"): [
        *("--model", "mypkg.nets:trained_net", "--layer", "2", "--steps", "2", "--size", "32"),
    ],
    ("features", "top-examples"): [
        *("scan.png", "photos", "--model", "mypkg.nets:trained_net", "--layer", "2", "--k", "1"),
    ],
    ("features", "dream"): [
        *("scan.png", "--model", "mypkg.nets:trained_net", "--layer", "2", "--octaves", "1"),
        *("--steps", "2"),
    ],
    ("features", "invert"): [
        *("scan.png", "--model", "mypkg.nets:trained_net", "--layer", "2", "--steps", "2"),
    ],
    ("robust", "compare"): [
        *("--methods", "gradient", "--limit", "4", "--no-sanity", "--no-faithfulness"),
        *("--no-max-sensitivity", "--no-activation-maximization"),
    ],
}


def help_text(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    from seethrough.cli import main

    code = main([*path, "--help"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def subcommands(text: str) -> list[str]:
    if "Commands:" not in text:
        return []
    section = text.split("Commands:", 1)[1]
    return re.findall(r"^  (\S+)\s", section, re.MULTILINE)


def option_entries(text: str) -> list[tuple[str, str]]:
    """``(option, help)`` per option of a click help page, wrapped lines joined."""
    if "Options:" not in text:
        return []
    section = text.split("Options:", 1)[1].split("Commands:", 1)[0]
    entries: list[list[str]] = []
    for line in section.splitlines():
        match = re.match(r"^  (?:-\w, )?(--[\w-]+)", line)
        if match:
            entries.append([match.group(1), line[match.end() :]])
        elif entries and line.strip():
            entries[-1].append(line)
    return [(e[0], " ".join(s.strip() for s in e[1:])) for e in entries]


def examples(help_: str, option: str) -> list[list[str]]:
    """The arguments each "e.g." of an option's help stands for: ``--opt value`` forms as
    written, bare values as the value of this option."""
    found = []
    for phrase in re.findall(r"e\.g\. (.+?)(?:\.(?:\s|$)|\s[\[(]|$)", help_):
        for example in phrase.split(" or "):
            words = shlex.split(example)
            found.append(words if words[0].startswith("--") else [option, *words])
    return found


def help_examples(
    capsys: pytest.CaptureFixture[str],
) -> list[tuple[tuple[str, ...], list[str]]]:
    found: list[tuple[tuple[str, ...], list[str]]] = []
    pending: list[tuple[str, ...]] = [()]
    while pending:
        path = pending.pop()
        text = help_text(path, capsys)
        pending += [(*path, c) for c in subcommands(text)]
        for option, help_ in option_entries(text):
            found += [(path, e) for e in examples(help_, option)]
        # whole command lines in a description ("seethrough explain cat.jpg ..."): as written
        description = text.split("Options:", 1)[0]
        for line in re.findall(r"^\s+\$?\s*seethrough (.+)$", description, re.MULTILINE):
            found.append(((), shlex.split(line.split("#")[0])))
    return found


def test_every_help_example_runs(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process (``seethrough.cli.main``, the console script's entry point), each example
    added to a small invocation of its command on the small CNN."""
    from seethrough.cli import main

    monkeypatch.syspath_prepend(str(project))  # about the examples, not about imports
    found = help_examples(capsys)
    assert any("--set" in args for _, args in found), "no --set example found: parser broken?"
    failures = []
    try:
        for n, (path, args) in enumerate(found):
            if not path:  # a whole command line from a description
                code = main([*args])
                if code != 0:
                    err = capsys.readouterr().err.strip()
                    failures.append(f"seethrough {' '.join(args)}: {err}")
                continue
            if path not in BASE:
                failures.append(f"{' '.join(path)} {' '.join(args)}: no BASE invocation here")
                continue
            code = main([*path, *BASE[path], *args, "--out", f"out-{n}", "--quiet"])
            err = capsys.readouterr().err
            if code != 0:
                failures.append(f"seethrough {' '.join(path)} ... {' '.join(args)}: {err.strip()}")
    finally:
        for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
            del sys.modules[name]
    assert not failures, "\n".join(failures)
