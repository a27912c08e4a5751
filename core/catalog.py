"""The models a user has: the shipped defaults and the store's own, and which one is active.

The app and the CLI name models the same way: `active` is whatever the app's Models page made
active, `default` what ships, anything else a built-in name or a model directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import ModelError
from core.settings import get_settings
from core.store import Store

KINDS = ("recognizer", "detector")
ACTIVE = "active"


def expand_spec(spec: str | None, kind: str, store: Store | None = None) -> str:
    """`active` → the active model's directory; every other spec is returned as given."""
    spec = (spec or "default").strip()
    if spec != ACTIVE:
        return spec
    row = _active_row(kind, store)
    if row is None:
        raise ModelError(f"there is no active {kind} yet: fine-tune one (the app's Fine-tune page or "
                         f"`inkscribe train --from-store`) and activate it, or name one (`inkscribe models list`)")
    if not Path(row["path"]).is_dir():
        raise ModelError(f"the active {kind} {row['name']!r} is missing from {row['path']}; "
                         "activate another on the Models page")
    return str(row["path"])


def _active_row(kind: str, store: Store | None):
    if store is not None:
        return store.active_model(kind)
    if not get_settings().db_path.exists():  # no store yet, so nothing is active (and nothing is created)
        return None
    with Store() as store:
        return store.active_model(kind)


def resolve(spec: str | None, kind: str, store: Store | None = None) -> str:
    """What a spec loads: a built-in name, a model directory or a hub id (raises ModelError when unknown)."""
    expanded = expand_spec(spec, kind, store)
    if kind == "recognizer":
        from core.recognize import resolve_recognizer_spec

        return resolve_recognizer_spec(expanded)
    from core.detect import resolve_detector_spec

    return resolve_detector_spec(expanded)


def list_models(store: Store) -> list[dict]:
    """Every model a spec can name here: per kind the shipped default, then the store's in order."""
    out = []
    for kind in KINDS:
        active = store.active_model(kind)
        out.append({"kind": kind, "id": None, "name": "default", "active": active is None,
                    "path": _default_path(kind), "holdout_cer": None, "created_at": None})
        for m in store.models(kind):
            metrics = json.loads(m["metrics"] or "{}")
            out.append({"kind": kind, "id": m["id"], "name": m["name"], "active": bool(m["active"]),
                        "path": m["path"], "holdout_cer": metrics.get("holdout_cer"), "created_at": m["created_at"],
                        "on_disk": Path(m["path"]).is_dir()})
    return out


def _default_path(kind: str) -> str:
    try:
        return resolve("default", kind)
    except ModelError as exc:  # a broken install still lists the store's models
        return f"unavailable ({exc})"
