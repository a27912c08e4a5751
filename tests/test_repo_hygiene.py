"""Committed files hold no build machine's paths and no lab-notebook "stop N" markers.

A path such as a scratch folder under the system temp folder, a home folder, or the folder this
checkout sits in means nothing on another machine: docs and comments name placeholders
(`MODEL_DIR`, `--labels LABELS`) instead. "Stop N" headings were the working log of one
development run; the history lives in CHANGELOG.md and docs/decisions/.

Scans every git-tracked text file outside `tests/`, plus untracked files git does not ignore
(new files someone is about to commit). Reports every offending file:line at once.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# a "stop N" marker (also "Stops 22–24", "stop 19's"), but not a duration ("stops 5 s before")
STOP_MARKER = re.compile(r"(?<![\w-])[Ss]tops? \d+\b(?!\s?(?:s|ms|seconds?|steps?|min|minutes?|px|%)\b)")

# .gitignore patterns are relative to the repository ("/tmp/" there is the checkout's own tmp/)
SKIP_NAMES = {".gitignore"}


def _machine_roots() -> list[str]:
    """Absolute folders of a build machine, each ending in '/'."""
    roots = {"/tmp/", "/root/"}
    for folder in (tempfile.gettempdir(), os.path.expanduser("~"), str(REPO.parent)):
        folder = folder.rstrip("/")
        if folder and folder != "/":  # a checkout at the file system's root has no parent to leak
            roots.add(folder + "/")
    return sorted(roots)


def _path_pattern() -> re.Pattern[str]:
    literal = "|".join(re.escape(root) for root in _machine_roots())
    # /home/<name>/ and /Users/<name>/ for any name. A path starts the line or follows a space, quote,
    # bracket, '=', ',' or ':' (so not the middle of a URL, of another path or of `<home>/work/`).
    return re.compile(rf"(?:^|(?<=[\s`'\"(\[{{=,:;]))(?:{literal}|/home/[^/\s]+/|/Users/[^/\s]+/)")


def _candidate_files() -> list[str]:
    def ls(*args: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", "-z", *args], cwd=REPO, capture_output=True, check=True)
        return [name for name in out.stdout.decode("utf-8", "surrogateescape").split("\0") if name]

    names = set(ls()) | set(ls("--others", "--exclude-standard"))
    return sorted(n for n in names if not n.startswith("tests/") and Path(n).name not in SKIP_NAMES)


def _text(path: Path) -> str | None:
    """The file's text, or None for binary files, unreadable files and files deleted in the work tree."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def find_offenders() -> list[str]:
    paths = _path_pattern()
    found = []
    for name in _candidate_files():
        text = _text(REPO / name)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for pattern, what in ((paths, "machine path"), (STOP_MARKER, '"stop N" marker')):
                match = pattern.search(line)
                if match:
                    found.append(f"{name}:{number}: {what} {match.group(0)!r}: {line.strip()[:120]}")
    return found


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_no_machine_paths_or_stop_markers_in_committed_files():
    offenders = find_offenders()
    assert not offenders, f"{len(offenders)} offending line(s):\n" + "\n".join(offenders)


def test_the_patterns_catch_what_they_should():
    paths = _path_pattern()
    for bad in ("see /tmp/rb/lr1/size-all", "`/home/alice/x`", "(/root/.cache)", "/Users/bob/notes.pdf",
                f"--labels {REPO.parent}/shared/data/notes/labels.jsonl"):
        assert paths.search(bad), bad
    for fine in ("--out MODEL_DIR", "https://example.org/tmp/x", "~/.inkscribe", "../shared/data", "repo/tmp/x",
                 "<home>/work/detector-base"):
        assert not paths.search(fine), fine
    for bad in ("Stop 26: the curve", "stop 19's machine", "Stops 22–24", "at stop 15)"):
        assert STOP_MARKER.search(bad), bad
    for fine in ("stops 5 s before the budget ends", "should_stop()", "the stop button", "non-stop 3"):
        assert not STOP_MARKER.search(fine), fine
