"""Models travel as zips: export a model directory whole, import one only after checking every member.

A model zip holds our manifest (`inkscribe.json`) and the files its engine loads, at the top level
or inside one folder, and nothing else: safetensors, JSON and text (configs, tokenizers, the
writer's character model `charlm.json`), a sentencepiece `.model` for TrOCR, and a `.pt` only as
a YOLO detector's weights file (ultralytics unpickles it, so it is first opened with ultralytics'
safe-load, which refuses a checkpoint that would run code). Anything else, a path that leaves
the folder, a link or an oversized member refuses the whole zip with one sentence. An accepted
model is written as a new version (`INKSCRIBE_HOME/models/<name>-vN`, atomically, never over
another), listed in the store (not active), then loaded and run once on a blank input; if it
does not load, its folder and its store row are removed again.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from core.atomic import write_atomic
from core.errors import BadInputError, InkscribeError, ModelError
from core.modeldir import MANIFEST, next_version_dir, read_manifest, write_model_dir
from core.recognize.networks import CTC, ENCODER_DECODER, family_of
from core.recognize.registry import ENGINES
from core.store import Store

KINDS = ("recognizer", "detector")
DETECTOR_ENGINES = ("yolo", "classical")
RECOGNIZER_ENGINES = ENGINES  # what load_recognizer reads from a folder (new family names and the old ones)
TEXT_SUFFIXES = (".json", ".txt")
SENTENCEPIECE = (".model",)  # TrOCR tokenizers (protobuf data, no code)
MAX_MEMBERS = 200
MAX_MODEL_BYTES = 4 * 2**30  # all members unpacked; a TrOCR-large is about 2.3 GB
MAX_TEXT_BYTES = 256 * 2**20  # one JSON/text file (a large charlm.json is tens of MB)
MAX_SAFETENSORS_HEADER = 100 * 2**20  # the limit the safetensors library itself sets


# -- export -----------------------------------------------------------------------------------
def resolve_model(store: Store, id_or_path: str) -> tuple[Path, dict]:
    """A model to export: a store id (its name, base, scores and training data go into the manifest), a model
    directory, or the name of one in INKSCRIBE_HOME/models or the shipped models. Returns (folder, manifest)."""
    from core.settings import SHIPPED_MODELS, get_settings

    text = id_or_path.strip().lstrip("#")
    if text.isdigit():
        row = store.model(int(text))
        if row is None:
            raise BadInputError(f"no model with id {text} in the store (see `inkscribe models list`)")
        path = Path(row["path"])
        manifest = read_manifest(path) if path.is_dir() else {}
        if not manifest:
            raise ModelError(f"model #{text} ({row['name']}) is missing from {path}")
        return path, _with_store_row(manifest, row)
    for cand in (Path(id_or_path).expanduser(), get_settings().models_dir / id_or_path, SHIPPED_MODELS / id_or_path):
        if cand.is_dir():
            return cand, read_manifest(cand)
    raise BadInputError(f"{id_or_path!r} is neither a model id in the store nor a model directory "
                        "(see `inkscribe models list`)")


def _with_store_row(manifest: dict, row) -> dict:
    """What the store knows of a model (its name, scores on held-out lines, what it learnt from) kept in the zip."""
    return {**manifest, "name": row["name"], **({"base": row["base"]} if row["base"] else {}),
            "trained_on": {**manifest.get("trained_on", {}), **json.loads(row["trained_on"] or "{}")},
            "metrics": {**manifest.get("metrics", {}), **json.loads(row["metrics"] or "{}")}}


def export_model(model_dir: str | Path, out_zip: str | Path, manifest: dict | None = None) -> dict:
    """Zip a model directory to `out_zip` atomically (temp file beside it, then rename).

    `manifest` replaces the folder's own `inkscribe.json` in the zip (e.g. with the store's name and
    scores). Only files an import accepts are written, so every exported zip imports.
    """
    model_dir, out = Path(model_dir), Path(out_zip)
    manifest = manifest if manifest is not None else read_manifest(model_dir)
    files = _model_files(model_dir, manifest)
    write_atomic(out, lambda fh: _write_zip(fh, model_dir.name, manifest, files))
    return {"path": str(out), "bytes": out.stat().st_size, "kind": manifest.get("kind"),
            "name": manifest.get("name") or model_dir.name, "files": [MANIFEST, *(f.name for f in files)]}


def export_model_bytes(model_dir: str | Path, manifest: dict | None = None) -> bytes:
    """The zip in memory (what the app's download button hands over)."""
    model_dir = Path(model_dir)
    manifest = manifest if manifest is not None else read_manifest(model_dir)
    files = _model_files(model_dir, manifest)
    buf = io.BytesIO()
    _write_zip(buf, model_dir.name, manifest, files)
    return buf.getvalue()


def _model_files(model_dir: Path, manifest: dict) -> list[Path]:
    """The folder's files besides the manifest, each one an import accepts (else ModelError naming it)."""
    _check_manifest(manifest, str(model_dir))
    files = []
    for f in sorted(model_dir.iterdir()):
        if f.name == MANIFEST:
            continue
        if f.is_symlink() or not f.is_file():
            raise ModelError(f"{model_dir}: {f.name} is a folder or a link; a model zip carries plain files only")
        problem = _file_problem(f.name, manifest)
        if problem:
            raise ModelError(f"{model_dir}: {f.name} {problem}, so the model cannot be exported")
        files.append(f)
    return files


def _write_zip(fh: BinaryIO, folder: str, manifest: dict, files: list[Path]) -> None:
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{folder}/{MANIFEST}", json.dumps(manifest, indent=2, ensure_ascii=False))
        for f in files:
            zf.write(f, f"{folder}/{f.name}")


# -- import -----------------------------------------------------------------------------------
def import_model_upload(store: Store, name: str, data: bytes) -> dict:
    """An uploaded model zip, imported as `import_model` would (the app's uploader)."""
    from core.settings import get_settings

    folder = get_settings().home / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="model-", suffix=".zip")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return import_model(tmp, store, display=Path(name).name or "upload.zip")
    finally:
        Path(tmp).unlink(missing_ok=True)


def import_model(zip_path: str | Path, store: Store, display: str | None = None) -> dict:
    """Check, write, register and load-test a model zip; returns {"model_id", "name", "kind", "path"}.

    Raises BadInputError / ModelError with one sentence; then nothing is left in the models
    folder or the store.
    """
    from core.finetune import register
    from core.settings import get_settings

    zip_path = Path(zip_path)
    label = display or zip_path.name
    if not zip_path.is_file():
        raise BadInputError(f"{zip_path}: no such file")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInputError(f"{label}: not a readable zip archive") from exc
    with zf:
        prefix, members = _members(zf, label)
        manifest = _read_manifest(zf, prefix, label)
        _check_manifest(manifest, label)
        for name in members:
            problem = _file_problem(name, manifest)
            if problem:
                raise BadInputError(f"{label}: refused: {name} {problem}; nothing was imported")
        missing = _missing_files(manifest, set(members))
        if missing:
            raise BadInputError(f"{label}: refused: a {manifest['engine']} {manifest['kind']} needs {missing}, "
                                "which the zip does not hold; nothing was imported")
        name = _display_name(manifest, prefix, label)
        manifest = {**manifest, "name": name, "imported": {"from": label, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}}
        dest = _write(zf, prefix, members, manifest, get_settings().models_dir, _stem(name, manifest["kind"]), label)
    try:
        used = {r["name"] for r in store.models(manifest["kind"])}
        model_id = register(store, dest, name=name if name not in used else dest.name,
                            base=str(manifest.get("base") or "imported"))
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    try:
        _check_loads(dest, manifest)
    except BaseException as exc:
        store.delete_model(model_id)
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(exc, InkscribeError):
            raise ModelError(f"{label}: the model does not load ({_sentence(exc)}); nothing was kept") from exc
        if isinstance(exc, Exception):
            raise ModelError(f"{label}: the model does not load ({exc.__class__.__name__}: {_sentence(exc)}); "
                             "nothing was kept") from exc
        raise
    row = store.model(model_id)
    return {"model_id": model_id, "name": row["name"], "kind": manifest["kind"], "path": str(dest)}


def _sentence(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text.rstrip(".")[:240]


def _members(zf: zipfile.ZipFile, label: str) -> tuple[str, list[str]]:
    """(folder prefix, file names below it) after checking every member; any bad member refuses the zip."""
    infos = [i for i in zf.infolist() if not _ignored(i.filename)]
    if len(infos) > MAX_MEMBERS:  # (the __MACOSX/ and .DS_Store files macOS adds are never unpacked)
        raise BadInputError(f"{label}: refused: it holds {len(infos)} files; a model has at most {MAX_MEMBERS}")
    total = 0
    for info in infos:
        problem = _member_problem(info)
        if problem:
            raise BadInputError(f"{label}: refused: the member {info.filename!r} {problem}; nothing was imported")
        total += info.file_size
    if total > MAX_MODEL_BYTES:
        raise BadInputError(f"{label}: refused: it unpacks to {total / 1e9:,.1f} GB; a model zip may hold at most "
                            f"{MAX_MODEL_BYTES / 2**30:.0f} GB")
    files = [i.filename for i in infos if not i.is_dir()]
    if MANIFEST in files:
        prefix = ""
    else:
        tops = {f.split("/", 1)[0] for f in files}
        prefix = f"{tops.pop()}/" if len(tops) == 1 else ""
        if not prefix or f"{prefix}{MANIFEST}" not in files:
            raise BadInputError(f"{label}: refused: no {MANIFEST} at its top level or in one folder, so it is not an "
                                "Inkscribe model zip")
    names = []
    for f in files:
        rest = f[len(prefix):] if f.startswith(prefix) else f
        if not f.startswith(prefix) or "/" in rest:
            raise BadInputError(f"{label}: refused: {f} lies outside the model's folder or in a subfolder, which a "
                                "model does not have; nothing was imported")
        if rest in names:
            raise BadInputError(f"{label}: refused: it holds {rest} twice")
        if rest != MANIFEST:
            names.append(rest)
    return prefix, names


def _ignored(name: str) -> bool:
    return name.startswith("__MACOSX/") or PurePosixPath(name).name == ".DS_Store"


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return "points outside the archive (absolute path, '..' or a backslash)"
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return "is a symbolic link"
    if info.flag_bits & 0x1:
        return "is encrypted"
    if info.file_size > MAX_MODEL_BYTES:
        return f"unpacks to {info.file_size / 1e9:,.1f} GB"
    return None


def _read_manifest(zf: zipfile.ZipFile, prefix: str, label: str) -> dict:
    info = zf.getinfo(f"{prefix}{MANIFEST}")
    if info.file_size > 1 * 2**20:
        raise BadInputError(f"{label}: refused: its {MANIFEST} is {info.file_size / 1e6:,.0f} MB, not a manifest")
    try:
        manifest = json.loads(_read(zf, info, label).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{label}: refused: its {MANIFEST} is not valid JSON") from exc
    if not isinstance(manifest, dict):
        raise BadInputError(f"{label}: refused: its {MANIFEST} is not a JSON object")
    return manifest


def _check_manifest(manifest: dict, label: str) -> None:
    kind, engine = manifest.get("kind"), manifest.get("engine")
    if kind not in KINDS:
        raise BadInputError(f"{label}: refused: its {MANIFEST} names the kind {kind!r}; Inkscribe models are "
                            f"{' or '.join(KINDS)}")
    engines = RECOGNIZER_ENGINES if kind == "recognizer" else DETECTOR_ENGINES
    if engine not in engines:
        raise BadInputError(f"{label}: refused: {engine!r} is not a {kind} engine Inkscribe knows "
                            f"({', '.join(engines)})")
    weights = manifest.get("weights", "weights.pt")
    if engine == "yolo" and (not isinstance(weights, str) or "/" in weights or not weights.endswith(".pt")):
        raise BadInputError(f"{label}: refused: its {MANIFEST} names the weights file {weights!r}, not a .pt file "
                            "beside it")


def _file_problem(name: str, manifest: dict) -> str | None:
    """Why a file must not be part of this model (None: it may)."""
    suffix = PurePosixPath(name).suffix.lower()
    if name.startswith(".") or not suffix:
        return "is not a file a model holds"
    if suffix in TEXT_SUFFIXES or suffix == ".safetensors":
        return None
    if suffix == ".pt":
        if manifest.get("engine") == "yolo" and name == manifest.get("weights", "weights.pt"):
            return None
        return "is a pickled PyTorch file, accepted only as a YOLO detector's weights file"
    if suffix in SENTENCEPIECE and family_of(manifest.get("engine")) == ENCODER_DECODER:
        return None
    return f"is a {suffix} file, which a model zip does not carry (safetensors, JSON and text only)"


def _missing_files(manifest: dict, names: set[str]) -> str:
    engine = manifest["engine"]
    family = family_of(engine) if manifest.get("kind") == "recognizer" else None
    if family == CTC:
        need = [f for f in ("model.safetensors", "config.json") if f not in names]
    elif family == ENCODER_DECODER:
        need = [f for f in ("config.json",) if f not in names]
        if not any(n.endswith(".safetensors") for n in names):
            need.append("a .safetensors weights file")
    elif engine == "yolo":
        need = [f for f in (manifest.get("weights", "weights.pt"),) if f not in names]
    else:
        need = []
    return " and ".join(need)


def _display_name(manifest: dict, prefix: str, label: str) -> str:
    name = manifest.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()[:120]
    return prefix.rstrip("/") or Path(label).stem or manifest["kind"]


def _stem(name: str, kind: str) -> str:
    """A folder stem from a model's name: safe characters, no trailing -vN (the version is added anew)."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_")
    stem = re.sub(r"-v\d+$", "", stem)[:60].strip("-_")
    return stem or kind


def _write(zf: zipfile.ZipFile, prefix: str, members: list[str], manifest: dict, models_dir: Path, stem: str,
           label: str) -> Path:
    """Unpack and check the files into a new version folder, atomically; retried if another writer took the name."""
    def fill(tmp: Path) -> None:
        for name in members:
            target = tmp / name
            info = zf.getinfo(f"{prefix}{name}")
            _extract(zf, info, target, label)
            problem = _content_problem(target, manifest)
            if problem:
                raise BadInputError(f"{label}: refused: {name} {problem}; nothing was imported")

    for _ in range(5):
        dest = next_version_dir(models_dir, stem)
        try:
            return write_model_dir(dest, manifest, fill)
        except ModelError:
            if not dest.exists():
                raise
    raise ModelError(f"{label}: could not find a free folder name for {stem} in {models_dir}")


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> bytes:
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as exc:
        raise BadInputError(f"{label}: the member {info.filename!r} is damaged ({_sentence(exc)})") from exc


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, label: str) -> None:
    """Stream one member to `target` (zipfile stops at the declared size and checks the CRC)."""
    try:
        with zf.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as exc:
        raise BadInputError(f"{label}: the member {info.filename!r} is damaged ({_sentence(exc)}); "
                            "nothing was imported") from exc


def _content_problem(path: Path, manifest: dict) -> str | None:
    """A quick look inside each file: JSON parses, text is UTF-8, safetensors has a sound header, a .pt is a zip."""
    suffix = path.suffix.lower()
    size = path.stat().st_size
    if suffix in TEXT_SUFFIXES:
        if size > MAX_TEXT_BYTES:
            return f"is {size / 1e6:,.0f} MB, more than a {suffix} file of a model holds"
        try:
            text = path.read_text(encoding="utf-8")
            if suffix == ".json":
                json.loads(text)
        except UnicodeDecodeError:
            return "is not UTF-8 text"
        except json.JSONDecodeError:
            return "is not valid JSON"
        return None
    if suffix == ".safetensors":
        return _safetensors_problem(path, size)
    if suffix == ".pt" and not zipfile.is_zipfile(path):
        return "is not a PyTorch checkpoint (a .pt file is a zip archive)"
    return None


def _safetensors_problem(path: Path, size: int) -> str | None:
    """safetensors: an 8-byte header length, a JSON header, tensors whose byte ranges fill the rest exactly."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return "is not a safetensors file (too short)"
        (n,) = struct.unpack("<Q", head)
        if n > MAX_SAFETENSORS_HEADER or 8 + n > size:
            return "is not a safetensors file (its header is damaged)"
        try:
            header = json.loads(fh.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "is not a safetensors file (its header is not JSON)"
    if not isinstance(header, dict):
        return "is not a safetensors file (its header is damaged)"
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(v, int) for v in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            return f"is not a safetensors file (tensor {key!r} is damaged)"
        end = max(end, offsets[1])
    if 8 + n + end != size:
        return f"is cut short or padded ({size:,} bytes where its header describes {8 + n + end:,})"
    return None


# -- the load test ----------------------------------------------------------------------------
def _check_loads(path: Path, manifest: dict) -> None:
    """Load the model as the app would and run it once on a blank input (raises whatever loading raises)."""
    from PIL import Image

    if manifest["kind"] == "recognizer":
        from core.recognize import load_recognizer

        load_recognizer(str(path)).recognize([Image.new("RGB", (96, 32), "white")])
        return
    if manifest["engine"] == "yolo":
        _safe_load(path / manifest.get("weights", "weights.pt"))
    from core.detect import load_detector

    load_detector(str(path)).detect([Image.new("RGB", (128, 96), "white")])


def _safe_load(weights: Path) -> None:
    """Open a YOLO checkpoint with ultralytics' safe-load (weights only, known classes), whatever the environment
    says: an imported .pt that would run code when unpickled is refused before ultralytics loads it for real."""
    from core.detect.yolo import import_yolo, keep_threads

    with keep_threads():
        import_yolo()
        from ultralytics.nn.tasks import _SafeLoad, torch_safe_load

        if not _SafeLoad.SUPPORTED:  # torch < 2.6 would fall back to an unrestricted load
            raise ModelError("this torch cannot load YOLO weights safely (torch 2.6 or newer is needed)")
        try:
            torch_safe_load(str(weights), safe_only=True)
        except Exception as exc:
            raise ModelError(f"{weights.name} is not a plain YOLO checkpoint ({_sentence(exc)})") from exc


Builder = Callable[[], bytes]


def zip_builder(home: Path, model_id: int) -> Builder:
    """The app's download: builds the zip when the button is pressed, with a store connection of its own."""
    def build() -> bytes:
        store = Store(home)
        try:
            path, manifest = resolve_model(store, str(model_id))
            return export_model_bytes(path, manifest)
        finally:
            store.close()
    return build
