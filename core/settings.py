"""One place for configuration: environment first, then `.streamlit/inkscribe.toml`, then defaults.

Every process (app, CLI, background worker) calls `configure_process()` early so thread
counts and offline flags are set on purpose, before torch or ultralytics pick their own.
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODELS = REPO_ROOT / "models"
SHIPPED_RECOGNIZER = SHIPPED_MODELS / "recognizer-handwriting"  # the offline default when present (docs/decisions/0001-recognizer.md)
CONFIG_FILE = REPO_ROOT / ".streamlit" / "inkscribe.toml"


def _file_config() -> dict:
    if CONFIG_FILE.exists():
        try:
            return tomllib.loads(CONFIG_FILE.read_text()).get("inkscribe", {})
        except (OSError, tomllib.TOMLDecodeError):
            return {}
    return {}


@dataclass(frozen=True)
class Settings:
    home: Path
    threads: int
    train_threads: int  # a training job's threads: one job runs at a time and the server mostly idles
    device: str
    max_image_pixels: int
    max_pdf_pages: int
    max_upload_mb: int
    pdf_dpi: int
    default_detector: str
    default_recognizer: str
    cache: Path | None = None  # derived, rebuildable files (the text prior); default <home>/cache

    @property
    def db_path(self) -> Path:
        return self.home / "inkscribe.db"

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def cache_dir(self) -> Path:
        return self.cache or self.home / "cache"

    @property
    def yolo_config_dir(self) -> Path:
        return self.home / "ultralytics"


@cache
def get_settings() -> Settings:
    """Settings for this process; `reset_settings()` after changing the environment (tests)."""
    cfg = _file_config()

    def pick(env: str, key: str, default):
        value = os.environ.get(env)
        if value is None or value == "":
            value = cfg.get(key, default)
        return type(default)(value) if default is not None else value

    home = Path(pick("INKSCRIBE_HOME", "home", str(Path.home() / ".inkscribe"))).expanduser()
    return Settings(
        home=home,
        threads=pick("INKSCRIBE_THREADS", "threads", max(1, min(2, os.cpu_count() or 1))),
        train_threads=pick("INKSCRIBE_TRAIN_THREADS", "train_threads", max(1, min(2, os.cpu_count() or 1))),
        device=pick("INKSCRIBE_DEVICE", "device", "auto"),
        max_image_pixels=pick("INKSCRIBE_MAX_IMAGE_PIXELS", "max_image_pixels", 60_000_000),
        max_pdf_pages=pick("INKSCRIBE_MAX_PDF_PAGES", "max_pdf_pages", 1000),
        max_upload_mb=pick("INKSCRIBE_MAX_UPLOAD_MB", "max_upload_mb", 200),
        pdf_dpi=pick("INKSCRIBE_PDF_DPI", "pdf_dpi", 200),
        default_detector=pick("INKSCRIBE_DETECTOR", "detector", "default"),
        default_recognizer=pick("INKSCRIBE_RECOGNIZER", "recognizer", "default"),
        cache=Path(cache).expanduser() if (cache := pick("INKSCRIBE_CACHE", "cache", "")) else None,
    )


def reset_settings() -> None:
    get_settings.cache_clear()


_configured = False


def configure_process(threads: int | None = None) -> None:
    """Set offline flags and thread counts for this process (idempotent).

    ultralytics sets OMP_NUM_THREADS=1 on import and torch otherwise takes every core; two
    processes each taking both cores of a small machine run ~10x slower, so we decide here.
    """
    global _configured
    settings = get_settings()
    n = threads or settings.threads
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(n)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(settings.yolo_config_dir))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # ultralytics unpickles .pt files; safe-load refuses checkpoints that would run code.
    os.environ.setdefault("ULTRALYTICS_SAFE_LOAD", "1")
    if _configured and threads is None:
        return
    _configured = True
    # torch reads OMP_NUM_THREADS when it is imported; only a torch that is already loaded
    # needs telling (importing it here would cost seconds before a bad input is even checked).
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def torch_device(preference: str | None = None) -> str:
    """The torch device for `preference` (None: the `device` setting); `core.device.resolve_device` decides."""
    from core.device import resolve_device

    return resolve_device(preference)
