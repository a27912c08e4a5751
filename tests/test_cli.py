"""End to end through the CLI, as a user runs it: a real PDF of the notes, offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


INKSCRIBE = Path(sys.executable).with_name("inkscribe")  # the console script set-up installs into the venv


def run_cli(*args, home, timeout=600, **extra_env):
    """`inkscribe ARGS` as a user runs it: the console script, from a folder outside the repository."""
    env = {**os.environ, "INKSCRIBE_HOME": str(home), "HF_HUB_OFFLINE": "1", "INKSCRIBE_THREADS": "1", **extra_env}
    return subprocess.run([str(INKSCRIBE), *args], cwd=Path(home).parent, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_digitize_real_pdf_to_json_and_markdown(notes_dir, tmp_path, inkscribe_home):
    pdf = notes_dir / "pdfs" / "assembly_hw.pdf"
    out_json = tmp_path / "out.json"
    r = run_cli("digitize", str(pdf), "-o", str(out_json), "--format", "json", home=inkscribe_home)
    assert r.returncode == 0, r.stderr
    data = json.loads(out_json.read_text())
    assert len(data["pages"]) == 3
    page = data["pages"][0]
    assert page["source"] == "assembly_hw.pdf" and page["page"] == 1
    assert (page["width"], page["height"]) == (1667, 2356)
    assert len(page["lines"]) >= 10
    line = page["lines"][0]
    assert set(line) == {"points", "text", "confidence"} and 0.0 <= line["confidence"] <= 1.0
    ys = [min(p[1] for p in ln["points"]) for ln in page["lines"]]
    assert ys[0] <= sorted(ys)[2], "reading order starts at the top of the page"
    assert sum(len(ln["text"]) for ln in page["lines"]) > 50
    assert "%|" in r.stderr  # a progress bar on stderr

    # Every digitized document is kept in the store for review and fine-tuning.
    from core.store import Store

    store = Store(inkscribe_home)
    docs = store.documents()
    assert [(d["name"], d["status"], d["pages_done"]) for d in docs] == [("assembly_hw.pdf", "done", 3)]

    out_md = tmp_path / "out.md"
    r = run_cli("digitize", str(pdf), "-o", str(out_md), "--detector", "classical", "--no-store", home=inkscribe_home)
    assert r.returncode == 0, r.stderr
    md = out_md.read_text()
    assert md.startswith("# assembly\\_hw.pdf") and "<!-- page 3 -->" in md
    assert len(Store(inkscribe_home).documents()) == 1  # --no-store kept nothing


def test_help_explains_every_flag(inkscribe_home):
    r = run_cli("digitize", "--help", home=inkscribe_home)
    assert r.returncode == 0
    for flag in ("--output", "--format", "--detector", "--recognizer", "--no-store"):
        assert flag in r.stdout


@pytest.mark.parametrize("content", [None, b"", b"not a pdf at all", b"%PDF-1.4\n%%EOF garbage"])
def test_bad_input_is_one_clear_line_and_changes_nothing(tmp_path, inkscribe_home, content):
    src = tmp_path / "notes.pdf"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "out.md"
    r = run_cli("digitize", str(src), "-o", str(out), "--detector", "classical", home=inkscribe_home)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: ")
    assert not out.exists()
    assert not (inkscribe_home / "inkscribe.db").exists()


def test_unknown_model_names_are_user_errors(tmp_path, inkscribe_home):
    from PIL import Image

    img = tmp_path / "p.png"
    Image.new("RGB", (100, 100), "white").save(img)
    r = run_cli("detect", str(img), "--detector", "no-such-thing", home=inkscribe_home)
    assert r.returncode == 2 and "unknown detector" in r.stderr and "Traceback" not in r.stderr


def test_the_command_works_from_any_folder_and_python_m_core_too(inkscribe_home):
    from core import __version__

    r = run_cli("--version", home=inkscribe_home)
    assert (r.returncode, r.stdout.strip()) == (0, f"inkscribe {__version__}")
    r = run_cli("--help", home=inkscribe_home)
    for command in ("app", "digitize", "detect", "train", "evaluate", "train-detector", "evaluate-detector", "models"):
        assert f"\n    {command}" in r.stdout
    assert "worker" not in r.stdout  # started by the app only
    r = subprocess.run([sys.executable, "-m", "core", "--version"], cwd=REPO, capture_output=True, text=True)
    assert r.stdout.strip() == f"inkscribe {__version__}"


@pytest.mark.parametrize("argv", [["bogus"], ["digitize", "{img}", "--recognizer", "active"],
                                  ["digitize", "{img}", "--recognizer", "no-such-model"],
                                  ["detect", "{img}", "--detector", "active"], ["models", "frobnicate"],
                                  ["digitize", "{img}", "--no-such-flag"]])
def test_bad_command_lines_are_one_clear_line_exit_2_and_write_nothing(tmp_path, inkscribe_home, argv):
    from PIL import Image

    img = tmp_path / "p.png"
    Image.new("RGB", (100, 100), "white").save(img)
    r = run_cli(*[a.format(img=img) for a in argv], "-o", str(tmp_path / "out.md"), home=inkscribe_home)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.strip().count("\n") == 0, r.stderr
    assert not (tmp_path / "out.md").exists() and not (inkscribe_home / "inkscribe.db").exists()


@pytest.mark.slow
def test_digitize_reads_with_the_apps_active_model_and_says_so(tmp_path, inkscribe_home):
    import shutil

    from core.settings import SHIPPED_RECOGNIZER
    from core.store import Store

    mine = inkscribe_home / "models" / "recognizer-v1"
    shutil.copytree(SHIPPED_RECOGNIZER, mine)
    store = Store(inkscribe_home)
    store.register_model("recognizer", "recognizer-v1", mine, activate=True)
    r = run_cli("models", "list", home=inkscribe_home)
    assert "* recognizer-v1" in " ".join(r.stdout.split())
    from test_review import page_image

    img, _ = page_image(["hello world"])
    img.save(tmp_path / "page.png")
    r = run_cli("digitize", str(tmp_path / "page.png"), "--recognizer", "active", "--detector", "classical",
                "-o", str(tmp_path / "out.txt"), home=inkscribe_home)
    assert r.returncode == 0, r.stderr
    assert f"recognizer: {mine}" in r.stderr and "detector: classical" in r.stderr
    (doc,) = store.documents()
    assert doc["recognizer"] == str(mine)


@pytest.mark.parametrize("device", ["cuda", "mps", "tpu"])
def test_a_device_this_machine_lacks_is_one_clear_line_exit_2(tmp_path, inkscribe_home, device):
    from PIL import Image

    from core.device import present_devices

    if device in present_devices():
        pytest.skip(f"this machine has {device}")
    img = tmp_path / "p.png"
    Image.new("RGB", (100, 100), "white").save(img)
    r = run_cli("digitize", str(img), "-o", str(tmp_path / "out.md"), home=inkscribe_home, INKSCRIBE_DEVICE=device)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.strip().count("\n") == 0, r.stderr
    assert device in r.stderr and not (tmp_path / "out.md").exists()
    assert not (inkscribe_home / "inkscribe.db").exists()


def test_inkscribe_app_serves_on_this_machine_with_the_upload_limit(inkscribe_home, monkeypatch):
    from core import cli
    from core.settings import reset_settings

    seen = {}
    monkeypatch.setattr(cli.subprocess, "call", lambda argv, **kw: seen.update(argv=argv, cwd=kw["cwd"]) or 0)
    monkeypatch.setenv("INKSCRIBE_MAX_UPLOAD_MB", "50")
    reset_settings()
    assert cli.main(["app", "--port", "8600", "--theme.base", "dark"]) == 0
    argv = seen["argv"]
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1" and argv[argv.index("--server.port") + 1] == "8600"
    assert argv[argv.index("--server.maxUploadSize") + 1] == "50" and argv[-2:] == ["--theme.base", "dark"]
    assert (seen["cwd"] / ".streamlit" / "config.toml").is_file()  # Streamlit reads its settings from there


def test_train_from_store_self_training_is_auto_on_or_off(inkscribe_home, monkeypatch):
    from core import finetune
    from core.cli import build_parser, main

    parse = build_parser().parse_args
    assert parse(["train", "--from-store"]).self_train is None  # auto: core.finetune.self_training_helps
    assert parse(["train", "--from-store", "--self-train"]).self_train is True
    assert parse(["train", "--from-store", "--no-self-train"]).self_train is False
    with pytest.raises(SystemExit) as exc:
        parse(["train", "--from-store", "--self-train", "--no-self-train"])
    assert exc.value.code == 2
    seen = []
    monkeypatch.setattr(finetune, "finetune_recognizer", lambda *a, **k: seen.append(k) or {"model_id": 1})
    assert main(["train", "--from-store", "--no-self-train", "--max-minutes", "0.1"]) == 0
    assert seen[0]["self_train"] is False
