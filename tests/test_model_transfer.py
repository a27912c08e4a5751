"""core.model_transfer: a model zip round-trips; a zip that is not exactly a model is refused and leaves nothing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import streamlit as st
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from core.errors import InkscribeError, ModelError
from core.model_transfer import export_model, import_model, resolve_model
from core.modeldir import write_model_dir
from core.settings import REPO_ROOT
from core.store import Store
from tests.tiny_models import LINES16, render_line

ALPHABET = "abcdefghijklmnopqrstuvwxyz =+→"


@pytest.fixture(scope="module")
def ctc_dir(tmp_path_factory) -> Path:
    """A small CTC recognizer as fine-tuning saves one: english_g2-shaped network (untrained, seeded), config,
    safetensors weights and the writer's character model (charlm.json)."""
    import torch

    from core.recognize.charlm import CharNgramLM
    from core.recognize.crnn import CRNNRecognizer, build_network

    torch.manual_seed(0)
    rec = CRNNRecognizer(build_network(len(ALPHABET) + 1), ALPHABET, name="tiny",
                         lm=CharNgramLM.train(LINES16, order=3), device="cpu")
    dest = tmp_path_factory.mktemp("models") / "tiny-ctc"
    return write_model_dir(dest, {"kind": "recognizer", "engine": "crnn", "name": "tiny-ctc", "base": "english_g2",
                                  "metrics": {"val_cer": 0.5}}, rec.save)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_zip(path: Path, files: dict[str, bytes], links: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return path


def files_of(ctc_dir: Path, folder: str = "") -> dict[str, bytes]:
    return {f"{folder}{f.name}": f.read_bytes() for f in sorted(ctc_dir.iterdir())}


def assert_nothing_left(store: Store, home: Path) -> None:
    models = home / "models"
    assert store.models() == []
    assert not models.exists() or list(models.iterdir()) == [], list(models.iterdir())


def test_a_ctc_model_round_trips_with_its_store_name_and_scores(store, inkscribe_home, ctc_dir, tmp_path):
    from core.recognize import load_recognizer

    mid = store.register_model("recognizer", "my hand", ctc_dir, engine="crnn", base="english_g2",
                               trained_on={"lines": 42}, metrics={"holdout_cer": 0.21})
    path, manifest = resolve_model(store, str(mid))
    out = export_model(path, tmp_path / "out" / "mine.zip", manifest)
    assert out["files"] == ["inkscribe.json", "charlm.json", "config.json", "model.safetensors"]
    with zipfile.ZipFile(out["path"]) as zf:
        assert sorted(zf.namelist()) == [f"tiny-ctc/{f}" for f in sorted(out["files"])]
        carried = json.loads(zf.read("tiny-ctc/inkscribe.json"))
    assert (carried["name"], carried["metrics"], carried["trained_on"]) == \
        ("my hand", {"val_cer": 0.5, "holdout_cer": 0.21}, {"lines": 42})
    store.delete_model(mid)  # as if on another machine

    got = import_model(out["path"], store)
    assert set(got) == {"model_id", "name", "kind", "path"}
    assert (got["name"], got["kind"]) == ("my hand", "recognizer")
    assert Path(got["path"]) == inkscribe_home / "models" / "my-hand-v1"
    row = store.model(got["model_id"])
    assert not row["active"] and row["engine"] == "crnn" and json.loads(row["metrics"])["holdout_cer"] == 0.21
    for f in ("model.safetensors", "config.json", "charlm.json"):
        assert sha(Path(got["path"]) / f) == sha(ctc_dir / f), f
    crops = [render_line(t) for t in ("hello world", "a = b")]
    assert [r.text for r in load_recognizer(got["path"]).recognize(crops)] == \
        [r.text for r in load_recognizer(str(ctc_dir)).recognize(crops)]

    again = import_model(out["path"], store)  # the same zip twice: a new version, the first one untouched
    assert Path(again["path"]).name == "my-hand-v2" and again["name"] == "my-hand-v2"
    assert sha(Path(got["path"]) / "model.safetensors") == sha(ctc_dir / "model.safetensors")
    assert len(store.models("recognizer")) == 2


def test_a_zip_of_loose_files_imports_and_never_overwrites_a_folder(store, inkscribe_home, ctc_dir, tmp_path):
    taken = inkscribe_home / "models" / "tiny-ctc-v1"
    taken.mkdir(parents=True)
    (taken / "keep.txt").write_text("someone else's")
    got = import_model(model_zip(tmp_path / "loose.zip", files_of(ctc_dir)), store)
    assert Path(got["path"]).name == "tiny-ctc-v2" and (taken / "keep.txt").read_text() == "someone else's"


def _truncated(data: bytes) -> bytes:
    return data[: len(data) - 100]


def _wrong_shapes() -> bytes:
    """A sound safetensors file whose tensors are not the network config.json names."""
    import torch
    from safetensors.torch import save

    return save({"Prediction.weight": torch.zeros(3, 3)})


@pytest.mark.parametrize("case,change,expected", [
    ("traversal", lambda f: {**f, "../evil.json": b"{}"}, "points outside the archive"),
    ("absolute", lambda f: {**f, "/etc/evil.json": b"{}"}, "points outside the archive"),
    ("unknown file", lambda f: {**f, "run.py": b"import os"}, "run.py is a .py file"),
    ("pickle in a recognizer", lambda f: {**f, "weights.pt": b"PK"}, "accepted only as a YOLO detector's weights"),
    ("subfolder", lambda f: {**f, "extra/more.json": b"{}"}, "subfolder"),
    ("missing manifest", lambda f: {k: v for k, v in f.items() if k != "inkscribe.json"}, "no inkscribe.json"),
    ("wrong kind", lambda f: {**f, "inkscribe.json": b'{"kind": "tokenizer", "engine": "crnn"}'},
     "names the kind 'tokenizer'"),
    ("unknown engine", lambda f: {**f, "inkscribe.json": b'{"kind": "recognizer", "engine": "keras"}'},
     "'keras' is not a recognizer engine"),
    ("weights missing", lambda f: {k: v for k, v in f.items() if k != "model.safetensors"}, "needs model.safetensors"),
    ("cut weights", lambda f: {**f, "model.safetensors": _truncated(f["model.safetensors"])}, "is cut short"),
    ("bad json", lambda f: {**f, "config.json": b"{not json"}, "config.json is not valid JSON"),
    ("weights that do not load", lambda f: {**f, "model.safetensors": _wrong_shapes()}, "the model does not load"),
])
def test_bad_model_zips_are_refused_with_one_sentence_and_leave_nothing(store, inkscribe_home, ctc_dir, tmp_path,
                                                                          case, change, expected):
    zipped = model_zip(tmp_path / "bad.zip", change(files_of(ctc_dir)))
    with pytest.raises(InkscribeError) as err:
        import_model(zipped, store)
    message = str(err.value)
    assert expected in message and message.startswith("bad.zip: ") and "\n" not in message, message
    assert_nothing_left(store, inkscribe_home)


def test_links_oversized_members_and_non_zips_are_refused(store, inkscribe_home, ctc_dir, tmp_path, monkeypatch):
    from core import model_transfer

    with pytest.raises(InkscribeError, match="symbolic link"):
        import_model(model_zip(tmp_path / "l.zip", files_of(ctc_dir), links=("charlm.json.lnk",)), store)
    monkeypatch.setattr(model_transfer, "MAX_MODEL_BYTES", 1_000_000)
    with pytest.raises(InkscribeError, match="unpacks to"):
        import_model(model_zip(tmp_path / "big.zip", files_of(ctc_dir)), store)
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(InkscribeError, match="not a readable zip"):
        import_model(tmp_path / "x.zip", store)
    assert_nothing_left(store, inkscribe_home)


class _RunsCode:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_yolo_checkpoint_that_would_run_code_is_refused_before_it_runs(store, inkscribe_home, tmp_path):
    import torch

    marker = tmp_path / "ran"
    buf = io.BytesIO()
    torch.save({"model": _RunsCode(marker)}, buf)
    manifest = {"kind": "detector", "engine": "yolo", "name": "evil", "weights": "weights.pt"}
    zipped = model_zip(tmp_path / "evil.zip", {"evil/inkscribe.json": json.dumps(manifest).encode(),
                                               "evil/weights.pt": buf.getvalue()})
    with pytest.raises(ModelError, match="does not load.*not a plain YOLO checkpoint"):
        import_model(zipped, store)
    assert not marker.exists(), "the pickled command ran"
    assert_nothing_left(store, inkscribe_home)
    other = {**manifest, "weights": "../../weights.pt"}
    with pytest.raises(InkscribeError, match="not a .pt file beside it"):
        import_model(model_zip(tmp_path / "w.zip", {"inkscribe.json": json.dumps(other).encode()}), store)


def test_the_shipped_yolo_detector_round_trips_through_safe_load(store, inkscribe_home, tmp_path):
    from core.detect import SHIPPED_DETECTOR

    if not (SHIPPED_DETECTOR / "weights.pt").is_file():
        pytest.skip("models/detector-yolo is not present")
    path, manifest = resolve_model(store, "detector-yolo")
    out = export_model(path, tmp_path / "det.zip", manifest)
    assert out["files"] == ["inkscribe.json", "weights.pt"] and out["kind"] == "detector"
    got = import_model(out["path"], store)
    assert (got["kind"], Path(got["path"]).name) == ("detector", "detector-yolo-v1")
    assert sha(Path(got["path"]) / "weights.pt") == sha(SHIPPED_DETECTOR / "weights.pt")
    assert store.active_model("detector") is None and store.model(got["model_id"])["engine"] == "yolo"


def test_export_refuses_a_folder_holding_what_an_import_would_refuse(ctc_dir, tmp_path):
    import shutil

    folder = tmp_path / "odd"
    shutil.copytree(ctc_dir, folder)
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelError, match="pytorch_model.bin is a .bin file"):
        export_model(folder, tmp_path / "odd.zip")
    assert not (tmp_path / "odd.zip").exists() and not list(tmp_path.glob(".inkscribe-*"))


def test_cli_models_export_and_import(store, inkscribe_home, ctc_dir, tmp_path):
    mid = store.register_model("recognizer", "cli hand", ctc_dir, engine="crnn")
    env = {**os.environ, "INKSCRIBE_HOME": str(inkscribe_home), "HF_HUB_OFFLINE": "1", "INKSCRIBE_THREADS": "1"}
    exe = str(REPO_ROOT / ".venv" / "bin" / "inkscribe")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, "models", *args], env=env, capture_output=True, text=True, timeout=300)

    r = run("export", str(mid), "-o", str(tmp_path / "m.zip"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["bytes"] == (tmp_path / "m.zip").stat().st_size
    r = run("import", str(tmp_path / "m.zip"))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert set(got) == {"model_id", "name", "kind", "path"} and got["kind"] == "recognizer"
    assert got["name"] == "cli-hand-v1" and Path(got["path"]) == inkscribe_home / "models" / "cli-hand-v1"
    r = run("import", str(ctc_dir / "config.json"))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    r = run("export", "999", "-o", str(tmp_path / "n.zip"))
    assert r.returncode == 2 and "no model with id 999" in r.stderr


def test_models_page_offers_export_per_model_and_imports_a_zip(store, inkscribe_home, ctc_dir, tmp_path,
                                                               monkeypatch):
    deferred: list = []
    real = MediaFileManager.add_deferred
    monkeypatch.setattr(MediaFileManager, "add_deferred",
                        lambda self, fn, *a, **k: deferred.append(fn) or real(self, fn, *a, **k))
    st.cache_resource.clear()
    mid = store.register_model("recognizer", "page hand", ctc_dir, engine="crnn")
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/models.py").run()
    assert not at.exception, [e.value for e in at.exception]
    (button,) = [b for b in at.get("download_button") if b.proto.label == "Export as zip"]
    assert button.proto.deferred_file_id, "the zip is built on the press, not when the page is drawn"
    data = deferred[-1]()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert json.loads(zf.read("tiny-ctc/inkscribe.json"))["name"] == "page hand"
    at.file_uploader(key="model-import").set_value(("page.zip", data, "application/zip")).run()
    at.button(key="model-import-go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Imported the recognizer" in s.value for s in at.success)
    assert [m["name"] for m in store.models("recognizer")] == ["page hand", "page-hand-v1"]
    assert any(f"export-{m['id']}" == b.key for m in store.models("recognizer") for b in at.get("download_button"))
    at.file_uploader(key="model-import").set_value(("notes.zip", b"not a zip", "application/zip")).run()
    at.button(key="model-import-go").click().run()
    assert any("not a readable zip" in e.value for e in at.error) and len(store.models()) == 2
    assert mid in [m["id"] for m in store.models()]


def test_a_model_written_today_with_the_family_name_imports(store, ctc_dir, tmp_path):
    """Fine-tunes now write engine "ctc" (the family), older ones "crnn": both travel."""
    files = files_of(ctc_dir)
    files["inkscribe.json"] = json.dumps({**json.loads(files["inkscribe.json"]), "engine": "ctc"}).encode()
    got = import_model(model_zip(tmp_path / "today.zip", files), store)
    assert store.model(got["model_id"])["engine"] == "ctc"
