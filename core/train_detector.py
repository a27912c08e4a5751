"""Train the YOLO line detector: the shipped base model and user fine-tunes from confirmed boxes.

`train_detector` fine-tunes from a labels file into a new versioned model directory (the
shipped one is never touched), reports progress per epoch, stops on request, resumes an
interrupted run of the same job, and writes the model atomically so a crash leaves nothing
that looks like a model. It trains on the `device` setting (core.device; ultralytics' automatic
mixed precision on CUDA) and reads pages as `core.detect.yolo` does.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from core.device import mixed_precision, resolve_device, ultralytics_device
from core.errors import BadInputError, CancelledError, ModelError
from core.geometry import squeeze_width
from core.labels import LabelPage, read_labels
from core.modeldir import is_model_dir, next_version_dir, read_manifest, write_model_dir
from core.settings import get_settings
from core.synth import yolo_rows

SCRATCH = "yolo11n.yaml"
# Augmentation for pages of text: no vertical flips or big rotations; keep letter sizes near
# what the page shows at inference (scale), colour jitter for inks and papers.
HYP = {
    "degrees": 1.0, "translate": 0.1, "scale": 0.3, "shear": 0.0, "perspective": 0.0, "flipud": 0.0,
    "fliplr": 0.0, "mosaic": 1.0, "mixup": 0.0, "hsv_h": 0.3, "hsv_s": 0.5, "hsv_v": 0.3, "close_mosaic": 2,
}


def pages_to_yolo(pages: Sequence[LabelPage], out: Path, prefix: str = "", squeeze_x: float = 1.0) -> list[Path]:
    """Put page images in `out/images` and their boxes in `out/labels`; returns image paths.

    Images are linked as they are, or written narrowed by `squeeze_x` for a detector that
    reads narrowed pages (YOLO labels are normalised, so they hold for both).
    """
    from PIL import Image

    from core.ingest import load_image

    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    paths = []
    for page in pages:
        stem = f"{prefix}{page.image_path.stem}"
        upright = load_image(page.image_path)  # the one loader: EXIF rotation applied, as at reading time
        w, h = upright.size
        with Image.open(page.image_path) as raw:
            rotated = raw.size != upright.size or raw.getexif().get(0x0112, 1) != 1
        if squeeze_x > 1.0 or rotated:  # ultralytics must see the pixels the labels were drawn on
            img_link = out / "images" / f"{stem}.jpg"
            if not img_link.exists():
                squeeze_width(upright, squeeze_x).save(img_link, quality=92)
        else:
            img_link = out / "images" / f"{stem}{page.image_path.suffix.lower()}"
            if not img_link.exists():
                try:
                    os.symlink(page.image_path.resolve(), img_link)
                except OSError:
                    shutil.copyfile(page.image_path, img_link)
        rows = yolo_rows([ln.points for ln in page.lines], w, h)
        (out / "labels" / f"{stem}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))
        paths.append(img_link)
    return paths


def write_data_yaml(work: Path, train: Sequence[Path], val: Sequence[Path]) -> Path:
    (work / "train.txt").write_text("".join(f"{p.absolute()}\n" for p in train))
    (work / "val.txt").write_text("".join(f"{p.absolute()}\n" for p in val))
    data = work / "data.yaml"
    # JSON is valid YAML; ultralytics reads it with its YAML loader.
    data.write_text(json.dumps({"path": str(work.absolute()), "train": "train.txt", "val": "val.txt", "names": {0: "line"}}))
    return data


def run_yolo(
    model_src: str | Path,
    data: Path,
    work: Path,
    imgsz: int,
    epochs: int = 100,
    minutes: float | None = None,
    batch: int = 8,
    hyp: dict | None = None,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
    threads: int | None = None,
    device: str | None = None,
    **extra,
) -> tuple[Path, dict]:
    """Train (or resume) an ultralytics run in `work/run` on `device` (None: the `device` setting); returns
    the weights and a summary (with the device and precision ultralytics' trainer reports it used).

    On the CPU: one thread unless `threads` says otherwise (ultralytics sets one on import), no plots,
    no dataloader workers: a background job must not starve the app. On CUDA ultralytics trains with
    its automatic mixed precision (its AMP self-check needs a download; offline it is skipped).
    `nbs=batch`: ultralytics otherwise accumulates gradients up to 64 images per step, which
    leaves a short CPU run with a few dozen optimizer steps.
    """
    from core.detect.yolo import import_yolo, keep_threads

    device = resolve_device(device)
    where = ultralytics_device(device)
    YOLO = import_yolo()  # noqa: N806 - the class, imported late

    last = work / "run" / "weights" / "last.pt"
    cancelled = {"flag": False}
    started = time.time()

    def on_batch_end(trainer) -> None:
        if should_stop and should_stop():
            cancelled["flag"] = True
            trainer.stop = True

    reported = {"epoch": 0}

    def on_epoch_end(trainer) -> None:
        done = trainer.epoch + 1
        if not progress or done <= reported["epoch"] or done > trainer.epochs:
            return  # ultralytics calls this once more after its final validation
        reported["epoch"] = done
        elapsed = time.time() - started
        tloss = getattr(trainer, "tloss", None)
        try:
            loss = float(sum(float(v) for v in tloss.values())) if isinstance(tloss, dict) else float(tloss.sum())
        except (AttributeError, TypeError, ValueError):
            loss = None
        metrics = getattr(trainer, "metrics", None) or {}
        info = {
            "epoch": done, "total_steps": int(trainer.epochs), "step": done,
            "loss": round(loss, 4) if loss is not None else None,
            "eta_s": round(elapsed / max(1, done - trainer.start_epoch) * max(0, trainer.epochs - done), 1),
            "message": f"epoch {done}/{trainer.epochs}",
        }
        if float(metrics.get("metrics/mAP50(B)", 0) or 0) > 0:  # only when a validation ran (val=False)
            info["map50"] = round(float(metrics["metrics/mAP50(B)"]), 4)
        progress(info)

    ran: dict = {}  # where ultralytics really trained, as its trainer says once set up

    def on_train_start(trainer) -> None:
        ran.update(device=str(trainer.device), amp=bool(trainer.amp))

    def hooked(src):
        model = YOLO(str(src))
        model.add_callback("on_train_start", on_train_start)
        model.add_callback("on_train_batch_end", on_batch_end)
        model.add_callback("on_fit_epoch_end", on_epoch_end)
        return model

    if threads:  # ultralytics' select_device() sets torch to its NUM_THREADS (cores - 1) for CPU training
        import ultralytics.utils.torch_utils as torch_utils

        torch_utils.NUM_THREADS = threads
    resuming = resume and last.is_file()
    model = hooked(last if resuming else model_src)
    args = dict(
        data=str(data), imgsz=imgsz, epochs=epochs, batch=batch, device=where, workers=0, plots=False,
        project=str(work.absolute()), name="run", exist_ok=True, verbose=False, val=False,
        amp=mixed_precision(device) == "fp16", patience=1000, seed=0, deterministic=False, nbs=batch,
        **(HYP | (hyp or {})), **extra,
    )
    if minutes:
        args["time"] = minutes / 60
    with keep_threads():
        if resuming:
            try:
                model.train(resume=True, data=str(data), workers=0, plots=False, device=where,
                            **({"time": args["time"]} if minutes else {}))
            except AssertionError:  # ultralytics: "training ... is finished, nothing to resume"
                shutil.rmtree(work / "run", ignore_errors=True)
                resuming = False
                model = hooked(model_src)
        if not resuming:
            model.train(**args)
    if cancelled["flag"]:
        raise CancelledError("detector training was stopped on request; no model was written")
    run = work / "run" / "weights"
    # val=False: the last epoch is the model (best.pt would only be chosen by the final check).
    best = run / "last.pt" if (run / "last.pt").is_file() else run / "best.pt"
    if not best.is_file():
        raise ModelError("detector training ended without producing weights")
    return best, {"seconds": round(time.time() - started, 1), "resumed": resuming,
                  "device": ran.get("device", device),
                  "mixed_precision": "fp16" if ran.get("amp", mixed_precision(device) == "fp16") else "no"}


MIN_PAGES_TO_CHOOSE_READING = 5  # fewer confirmed pages: all are trained on and the base's reading is kept
READING_CONFS = (0.15, 0.25, 0.35, 0.45, 0.55)


P2_YAML = Path(__file__).resolve().parent / "detect" / "yolo11n-p2.yaml"


def p2_detector_from(weights: Path, out: Path) -> dict:
    """A P2 (stride-4) detector whose yolo11n layers start as `weights`' — saved as `out` to train from.

    Layers 0-22 load as they are; the old head's three levels (P3-P5) become the new head's levels
    1-3, and its P3 level also seeds the new P2 level (same channels), so training starts from a
    detector that already reads lines and only has to learn where small boxes sit on the finer grid.
    """
    from core.detect.yolo import import_yolo

    yolo = import_yolo()
    model = yolo(str(P2_YAML), task="detect")
    old = yolo(str(weights), task="detect").model.float().state_dict()  # ultralytics' own loader, as detection uses
    head_old, head_new = max(int(k.split(".")[1]) for k in old), len(model.model.model) - 1
    moved = {}
    for key, value in old.items():
        parts = key.split(".")
        if int(parts[1]) != head_old:
            moved[key] = value
        elif parts[2] in ("cv2", "cv3"):
            level = int(parts[3])
            for new_level in ([0, 1] if level == 0 else [level + 1]):
                moved[".".join(["model", str(head_new), parts[2], str(new_level), *parts[4:]])] = value
        else:  # dfl: fixed weights
            moved[".".join(["model", str(head_new), *parts[2:]])] = value
    state = model.model.state_dict()
    fresh = [k for k in state if k not in moved]  # the P2 branch's own layers
    bad = [k for k, v in moved.items() if k not in state or state[k].shape != v.shape]
    if bad:
        raise ValueError(f"P2 transfer: {len(bad)} tensors do not fit, e.g. {bad[:3]}")
    model.model.load_state_dict(moved, strict=False)
    model.model.names = {0: "line"}
    model.save(str(out))
    return {"weights": str(out), "transferred": len(moved), "new_tensors": len(fresh)}


def held_out_pages(pages: Sequence[LabelPage]) -> tuple[list[LabelPage], list[LabelPage]]:
    """(train, held out): ~10 % of pages (seeded, so a resumed job splits the same way) to choose
    how the fine-tuned model reads pages; none when there are too few pages to spare."""
    if len(pages) < MIN_PAGES_TO_CHOOSE_READING:
        return list(pages), []
    held = set(random.Random(0).sample(range(len(pages)), max(1, round(0.1 * len(pages)))))
    return [p for i, p in enumerate(pages) if i not in held], [p for i, p in enumerate(pages) if i in held]


def choose_reading(weights: Path, base_reading: dict, train_imgsz: int, pages: Sequence[LabelPage]) -> dict:
    """Size and confidence threshold for a fine-tuned model, by F1 on held-out pages.

    A fine-tune shifts the model's confidences, and it learnt at `train_imgsz` while the base
    may be read larger, so the base's reading is only one candidate; it wins ties.
    """
    from core.evaluate import sweep_reading

    squeeze, imgsz = float(base_reading["squeeze_x"]), int(base_reading["imgsz"])
    sizes = [imgsz] + [s for s in sorted({train_imgsz, (train_imgsz + imgsz) // 64 * 32}) if s != imgsz]
    detector = _reader(weights, base_reading)
    rows = sweep_reading(detector, pages, [(squeeze, s) for s in sizes], sorted({*READING_CONFS, base_reading["conf"]}))
    base_row = next(r for r in rows if r["imgsz"] == imgsz and r["conf"] == base_reading["conf"])
    best = max(rows, key=lambda r: (r["f1"], r is base_row))
    return {"imgsz": best["imgsz"], "conf": best["conf"], "chosen_on_pages": len(pages), "f1": best["f1"],
            "base_reading_f1": base_row["f1"],
            "tried": [{k: r[k] for k in ("imgsz", "conf", "precision", "recall", "f1")} for r in rows]}


def fit_margins(weights: Path, reading: dict, pages: Sequence[LabelPage]) -> dict:
    """Box margins (`core.evaluate.fit_box_margins`) of the model read as chosen, on held-out pages."""
    from core.evaluate import fit_box_margins

    return {**fit_box_margins(_reader(weights, reading), pages), "pages": len(pages)}


def _reader(weights: Path, reading: dict):
    """The fine-tuned weights as a detector that reads pages as `reading` says (squeeze_x, imgsz, conf, iou)."""
    from core.detect.yolo import YoloDetector

    return YoloDetector(weights.parent, {"weights": weights.name,
                                         **{k: reading[k] for k in ("squeeze_x", "imgsz", "conf", "iou")}})


def _base_weights(base: str) -> tuple[str, dict]:
    """(weights or yaml to start from, base manifest) for 'default', a model directory or a YAML."""
    from core.detect import resolve_detector_spec

    if base in ("scratch", SCRATCH) or base.endswith((".yaml", ".yml")):
        return (SCRATCH if base == "scratch" else base), {}
    resolved = resolve_detector_spec(base)
    if resolved == "classical" or not is_model_dir(resolved):
        if base == "default":  # no shipped YOLO model in this install: start from scratch
            return SCRATCH, {}
        raise ModelError(f"{base}: not a YOLO detector model directory")
    manifest = read_manifest(resolved)
    if manifest.get("kind") != "detector" or manifest.get("engine") != "yolo":
        raise ModelError(f"{resolved}: fine-tuning needs a YOLO detector, this is {manifest.get('engine')!r}")
    return str(Path(resolved) / manifest.get("weights", "weights.pt")), {**manifest, "path": str(resolved)}


def carried_small_read(base_manifest: dict, small_read: dict | bool = True) -> dict | None:
    """The second, larger read a fine-tune keeps: the base's (True), none (False) or the caller's (a dict).

    A fine-tune learns the same boxes as its base; the small read is what finds bullets and single
    characters (core.detect.yolo), and dropping it silently lost them."""
    if isinstance(small_read, dict):
        return dict(small_read)
    return dict(base_manifest["small_read"]) if small_read and base_manifest.get("small_read") else None


def _job_key(labels: Path, split: str, base: str, max_minutes: float, out: Path) -> str:
    st = labels.stat()
    raw = f"{labels.resolve()}|{st.st_size}|{st.st_mtime_ns}|{split}|{base}|{max_minutes}|{out.resolve()}"
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def train_detector(
    labels: str | Path,
    split: str = "train",
    base: str = "default",
    max_minutes: float = 15,
    out: str | Path | None = None,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
    imgsz: int | None = None,
    batch: int = 4,
    threads: int | None = None,
    small_read: dict | bool = True,
    device: str | None = None,
) -> Path:
    """Fine-tune a YOLO detector on the boxes of `labels` (one split) into a new model directory.

    `out` defaults to the next `detector-vN` under the models dir; an existing directory is
    never overwritten. An interrupted run of the same job resumes from its last epoch. The base's
    second small-box read is kept unless `small_read` says otherwise (`carried_small_read`). It trains
    on `device` (None: the `device` setting) with `threads` (None: the `train_threads` setting, as
    the app's job, the CLI and a benchmark alike; ultralytics alone would take one core of two).
    """
    device = resolve_device(device)  # a device not here is refused before any work
    labels = Path(labels)
    pages = read_labels(labels, split=split)
    pages = [p for p in pages if p.lines]
    if not pages:
        raise BadInputError(f"{labels}: no page in split {split!r} has confirmed line boxes to learn from")
    settings = get_settings()
    out = Path(out) if out else next_version_dir(settings.models_dir, "detector")
    if out.exists():
        raise ModelError(f"{out}: a model already exists there; models are never overwritten")
    start_from, base_manifest = _base_weights(base)
    # A base can be read at a larger size than it was trained at (chosen afterwards): unless told
    # otherwise, fine-tune at its training size (affordable on a CPU) and read the result as the base.
    predict_imgsz = int(imgsz or base_manifest.get("imgsz", 640))
    imgsz = int(imgsz or base_manifest.get("train_imgsz", predict_imgsz))
    work = settings.home / "work" / f"detector-{_job_key(labels, split, base, max_minutes, out)}"
    if not resume and work.exists():
        shutil.rmtree(work)
    data_dir = work / "data"
    # the base was trained on narrowed pages: fine-tune on pages narrowed the same way
    squeeze_x = float(base_manifest.get("train_squeeze_x", base_manifest.get("squeeze_x", 1.0)))
    predict_squeeze_x = float(base_manifest.get("squeeze_x", 1.0))
    train_pages, reading_pages = held_out_pages(pages)
    train_imgs = pages_to_yolo(train_pages, data_dir, squeeze_x=squeeze_x)
    val_imgs = train_imgs[: min(len(train_imgs), 6)]  # a quick sanity check, not a held-out score
    data = write_data_yaml(work, train_imgs, val_imgs)
    if progress:
        held = f" ({len(reading_pages)} more held out to choose how it reads pages)" if reading_pages else ""
        progress({"message": f"fine-tuning the detector on {len(train_pages)} pages{held}", "step": 0})
    # Fine-tuning starts from a trained model: a lower learning rate and a short warm-up.
    hyp = {"lr0": 0.002, "warmup_epochs": 0.5, "optimizer": "AdamW"} if start_from != SCRATCH else {}
    best, info = run_yolo(
        start_from, data, work, imgsz=imgsz, epochs=200, minutes=max_minutes, batch=batch, hyp=hyp,
        progress=progress, should_stop=should_stop, resume=resume, threads=threads or settings.train_threads,
        device=device,
    )
    reading = {"imgsz": predict_imgsz, "conf": float(base_manifest.get("conf", 0.25)),
               "iou": float(base_manifest.get("iou", 0.5)), "squeeze_x": predict_squeeze_x}
    if reading_pages:
        if progress:
            progress({"message": f"choosing size and threshold on {len(reading_pages)} held-out pages"})
        reading["chosen"] = choose_reading(best, reading, imgsz, reading_pages)
        reading.update(imgsz=reading["chosen"]["imgsz"], conf=reading["chosen"]["conf"])
        reading["margins"] = fit_margins(best, reading, reading_pages)
    manifest = {
        "kind": "detector",
        "engine": "yolo",
        "name": out.name,
        "base": base_manifest.get("name", start_from) if base_manifest else start_from,
        "weights": "weights.pt",
        "imgsz": reading["imgsz"],
        "train_imgsz": imgsz,
        "conf": reading["conf"],
        "iou": reading["iou"],
        **({"box_margins": reading["margins"]["margins"], "box_margins_fit": reading["margins"]}
           if "margins" in reading else {}),
        **({"squeeze_x": predict_squeeze_x} if predict_squeeze_x > 1.0 else {}),
        **({"small_read": second} if (second := carried_small_read(base_manifest, small_read)) else {}),
        **({"train_squeeze_x": squeeze_x} if squeeze_x != predict_squeeze_x else {}),
        **({"reading_chosen": reading["chosen"],
            "metrics": {"held_out_f1": reading["chosen"]["f1"], "held_out_pages": len(reading_pages)}}
           if "chosen" in reading else {}),
        "trained_on": {"labels": str(labels.resolve()), "split": split, "pages": len(train_pages),
                       "lines": sum(len(p.lines) for p in train_pages), "held_out_pages": len(reading_pages)},
        "recipe": {"max_minutes": max_minutes, "batch": batch, "imgsz": imgsz, **HYP, **hyp},
        "train_seconds": info["seconds"],
        "device": {"trainer": info["device"], "mixed_precision": info["mixed_precision"]},
    }
    write_model_dir(out, manifest, lambda tmp: shutil.copyfile(best, tmp / "weights.pt"))
    shutil.rmtree(work, ignore_errors=True)  # finished: nothing left to resume
    return out
