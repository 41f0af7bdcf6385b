"""Output folders (``seethrough.reporting.output``): the early write check, one run at a time,
stale stages of killed runs, safe and readable file names (issue 18 #4–6, #10)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from seethrough.cli import main
from seethrough.errors import InvalidOptionError
from seethrough.reporting.output import LOCK, OutputFolder, file_stems, safe_stem

SRC = Path(__file__).resolve().parents[1] / "src"
SLOW_MODULE = "seethrough_output_test_slownet"
SLOW_SOURCE = textwrap.dedent(
    """
    import os
    import time

    from torch import nn


    class SlowNet(nn.Module):
        '''A tiny classifier whose forward waits until the file $RELEASE exists (if set).'''

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=4, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            release = os.environ.get("RELEASE")
            deadline = time.monotonic() + 120
            while release and not os.path.exists(release) and time.monotonic() < deadline:
                time.sleep(0.02)
            return self.fc(self.pool(self.conv(x).relu()).flatten(1))


    def build():
        return SlowNet()


    def never():
        raise RuntimeError("the model was built: the check came too late")
    """
)


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The slow model's module and weights, and an image."""
    folder = tmp_path_factory.mktemp("slow")
    (folder / f"{SLOW_MODULE}.py").write_text(SLOW_SOURCE)
    namespace: dict[str, object] = {}
    exec(SLOW_SOURCE, namespace)
    torch.manual_seed(0)
    save_file(namespace["SlowNet"]().state_dict(), str(folder / "slow.safetensors"))  # type: ignore[operator]
    from PIL import Image

    Image.new("RGB", (32, 24), (200, 40, 10)).save(folder / "a.png")
    return folder


def explain_args(slow: Path, out: Path, factory: str = "build") -> list[str]:
    return [
        "explain",
        str(slow / "a.png"),
        "--factory",
        f"{SLOW_MODULE}:{factory}",
        "--weights",
        str(slow / "slow.safetensors"),
        "--device",
        "cpu",
        "--methods",
        "gradient",
        "-q",
        "--out",
        str(out),
    ]


def command(slow: Path, out: Path, release: Path | None) -> tuple[list[str], dict[str, str]]:
    """``seethrough explain`` for a process of its own: its model waits for ``release``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(slow), str(SRC), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    if release is not None:
        env["RELEASE"] = str(release)
    return [sys.executable, "-m", "seethrough.cli", *explain_args(slow, out)], env


def start(slow: Path, out: Path, release: Path) -> subprocess.Popen[str]:
    args, env = command(slow, out, release)
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_until_writing(out: Path, process: subprocess.Popen[str], limit: float = 120) -> None:
    """Until the run holds ``out`` (its lock and staging folder are there)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if (out / LOCK).exists() and any(
            p.name.startswith(".partial-") for p in out.iterdir() if out.is_dir()
        ):
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended early: {process.communicate()}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the run never started writing")


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------- processes


def test_two_runs_into_one_folder_one_fails_at_once(slow: Path, tmp_path: Path) -> None:
    out, release = tmp_path / "out", tmp_path / "release"
    first = start(slow, out, release)  # its model waits until `release` exists
    try:
        wait_until_writing(out, first)
        args, env = command(slow, out, None)
        second = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert first.poll() is None  # the first run was still computing all along
    finally:
        release.touch()
        _, err_text = first.communicate(timeout=300)
    assert second.returncode == 2
    lines = second.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"seethrough: error: output folder {out} is being written by another seethrough run "
        f"(pid {first.pid}, started "
    ), second.stderr
    assert first.returncode == 0, err_text
    # the folder holds the first run's files, and only them
    manifest = json.loads((out / "summary.json").read_text(encoding="utf-8"))["files"]
    assert (
        listing(out)
        == sorted(manifest)
        == [
            "a.png",
            "attributions.safetensors",
            "index.html",
            "summary.json",
        ]
    )


def test_a_killed_run_leaves_a_stale_stage_that_the_next_run_removes(
    slow: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    victim = start(slow, out, tmp_path / "never")  # it waits until it is killed
    wait_until_writing(out, victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=60)
    stale = [p.name for p in out.iterdir() if p.name.startswith(".partial-")]
    assert len(stale) == 1 and stale[0].startswith(f".partial-{victim.pid}-")

    monkeypatch.syspath_prepend(str(slow))
    monkeypatch.delenv("RELEASE", raising=False)
    code = main(explain_args(slow, out))  # no --force: the stage is not a result
    err = capsys.readouterr().err
    assert code == 0, err
    assert (
        f"seethrough: removed 1 stale staging folder left in {out} by run pid {victim.pid}, "
        f"which was interrupted: {stale[0]}"
    ) in err
    assert listing(out) == ["a.png", "attributions.safetensors", "index.html", "summary.json"]


def test_a_terminated_run_cleans_up_like_an_interrupted_one(slow: Path, tmp_path: Path) -> None:
    """The tester's case: SIGTERM (what `kill` and schedulers send) left the staging
    folder and the lock file behind."""
    out = tmp_path / "out"
    victim = start(slow, out, tmp_path / "never")  # it waits until it is terminated
    wait_until_writing(out, victim)
    os.kill(victim.pid, signal.SIGTERM)
    _, err = victim.communicate(timeout=60)
    assert victim.returncode == 143
    assert err.splitlines()[-1] == (
        "seethrough: error: terminated; the output folder keeps the report of the steps "
        "finished so far, if any"
    )
    assert not out.exists()  # nothing was published: the new folder is gone again


# ---------------------------------------------------------------------------- the early check


@pytest.mark.parametrize("where", ["/proc/seethrough-out", "/sys/seethrough-out"])
def test_an_unwritable_place_is_refused_before_any_work(
    where: str, slow: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path(where).parent.is_dir():
        pytest.skip(f"no {Path(where).parent} here")
    monkeypatch.syspath_prepend(str(slow))
    code = main(explain_args(slow, Path(where), factory="never"))  # building would raise
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"seethrough: error: cannot write output folder {where}: creating a ")
    assert err.count("\n") == 1 and "choose another --out" in err
    assert not Path(where).exists()


def test_a_read_only_folder_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    if os.name != "posix" or os.geteuid() == 0:
        # Root (as in CI) writes anywhere: refuse creations in ``parent`` the way the kernel
        # refuses them for everyone else, so the same path through the early check runs.
        real = tempfile.mkdtemp

        def refusing(*args: Any, **kwargs: Any) -> str:
            if Path(kwargs.get("dir") or "") == parent:
                raise PermissionError(13, "Permission denied", str(parent))
            return real(*args, **kwargs)

        monkeypatch.setattr(tempfile, "mkdtemp", refusing)
    try:
        with pytest.raises(InvalidOptionError, match=r"cannot write output folder .*; choose"):
            OutputFolder(parent / "out")
    finally:
        parent.chmod(0o755)


def test_a_file_on_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidOptionError, match="is a file, not a folder"):
        OutputFolder(tmp_path / "file" / "out")
    with pytest.raises(InvalidOptionError, match="is a file; choose a folder"):
        OutputFolder(tmp_path / "file")


# ---------------------------------------------------------------------------- in one process


def test_the_lock_refuses_a_second_folder_object_and_is_gone_after(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = OutputFolder(out)
    later = OutputFolder(out)  # checked before the first took the folder
    with first as staging:
        (staging / "a.txt").write_text("first")
        assert (out / LOCK).read_text().split()[0] == str(os.getpid())
        with pytest.raises(InvalidOptionError, match=rf"being written by .*\(pid {os.getpid()}, "):
            OutputFolder(out)
        with (
            pytest.raises(InvalidOptionError, match="being written by another seethrough run"),
            later,
        ):
            pass
    assert listing(out) == ["a.txt"] and (out / "a.txt").read_text() == "first"


def test_stale_stages_do_not_count_as_files_and_are_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    (out / ".partial-4242-abc").mkdir(parents=True)
    (out / ".partial-4242-abc" / "x.png").write_bytes(b"half")
    (out / LOCK).write_text("4242 2024-01-01 00:00:00\n")  # left by the killed run: not held
    folder = OutputFolder(out)  # no "already has files"
    with caplog.at_level(logging.WARNING, logger="seethrough"), folder as staging:
        (staging / "new.txt").write_text("new")
    assert folder.stale == (".partial-4242-abc",)
    assert "removed 1 stale staging folder" in caplog.text and "pid 4242" in caplog.text
    assert listing(out) == ["new.txt"]


def test_a_real_file_still_counts(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidOptionError, match="already has files"):
        OutputFolder(tmp_path)


def test_what_was_published_stays_when_a_later_step_fails(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    folder = OutputFolder(out)
    published = []

    def steps() -> None:
        with folder as staging:
            (staging / "index.html").write_text("step 1")
            (staging / "a.png").write_text("step 1")
            published.extend(folder.publish(last=["index.html"]))
            (staging / "index.html").write_text("step 2, half")
            raise RuntimeError("step 2")

    with pytest.raises(RuntimeError, match="step 2"):
        steps()
    assert published == ["a.png", "index.html"]
    assert listing(out) == ["a.png", "index.html"]
    assert (out / "index.html").read_text() == "step 1"


def test_nothing_is_left_when_a_run_fails_before_publishing(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"

    def interrupted() -> None:
        with OutputFolder(out) as staging:
            (staging / "a.png").write_text("x")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------- file names


def test_file_names_keep_unicode_letters() -> None:
    """Regression (issue 18 #10): ``ñandú`` gave ``and``, a CJK name gave ``image``."""
    decomposed = unicodedata.normalize("NFD", "café")  # e + combining acute accent
    stems = file_stems(["ñandú", decomposed, "東京 タワー", "नमस्ते", "Ελλάδα", "Ñandú"], "image")
    assert stems == [
        "ñandú",
        unicodedata.normalize("NFC", "café"),  # one character é, as most file systems store it
        "東京_タワー",
        "नमस्ते",  # combining vowel signs kept
        "Ελλάδα",
        "Ñandú-2",  # the same name as ñandú on a case-insensitive file system
    ]


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("script><img src=x onerror=alert(1)>", "script_img_src_x_onerror_alert_1"),
        ("../../etc/passwd", "etc_passwd"),
        ('a\\b:c*d?e"f<g>h|i', "a_b_c_d_e_f_g_h_i"),
        ("tab\tand\nnewline", "tab_and_newline"),
        (".hidden", "hidden"),
        ("CON", "CON_"),
        ("nul.txt", "nul.txt_"),
        ("", "image"),
        ("???", "image"),
    ],
)
def test_path_unsafe_characters_are_replaced(name: str, stem: str) -> None:
    assert safe_stem(name, "image") == stem


def test_collisions_get_an_index_also_across_case() -> None:
    assert file_stems(["a b", "a_b", "A_B", "a?b", "c"]) == ["a_b", "a_b-2", "A_B-3", "a_b-4", "c"]


def test_long_names_are_cut_on_a_character_boundary() -> None:
    stem = safe_stem("é" * 200)
    assert stem == "é" * 60 and len(stem.encode("utf-8")) == 120
