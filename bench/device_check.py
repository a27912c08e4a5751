"""Where each stage runs: one page through detect + recognize, then a short recognizer fine-tune.

Prints the device the detector, the recognizer and the trainer ran on (what the `device` setting,
INKSCRIBE_DEVICE, resolves to here), whether each used mixed precision, and each stage's time, so a
GPU machine can be checked in a few minutes. Without --labels it makes its own data (a synthetic
page from core.synth to detect, and two pages of lines rendered in core.synth's fonts and words to
fine-tune on), so it runs on a fresh clone; with --labels the first labelled page is read and the
fine-tune uses the labelled pages. (YOLO loads its weights on first use: the detector's load time is
inside its run time.)

    .venv/bin/python bench/device_check.py --minutes 0.5
    INKSCRIBE_DEVICE=cuda .venv/bin/python bench/device_check.py --labels ../shared/data/notes/labels.jsonl

Run it from the repository root.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from core.settings import configure_process, get_settings


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The first of core.synth's hand-like fonts with real lower case (some draw every letter as a capital,
    which a recognizer rightly reads as one), else Pillow's own font."""
    from core.synth import available_fonts

    for path in available_fonts():
        font = ImageFont.truetype(path, size)
        x, big_x = font.getbbox("x"), font.getbbox("X")
        if x[3] - x[1] < 0.8 * (big_x[3] - big_x[1]):
            return font
    return ImageFont.load_default(size)


def synthetic_labels(folder: Path, pages: int = 2, lines: int = 12, seed: int = 0) -> Path:
    """A labels.jsonl of `pages` white pages with `lines` lines of core.synth's words each (one page is
    held out for validation, as with real labels)."""
    from core.synth import WORDS

    rng, font = random.Random(seed), _font(36)
    (folder / "pages").mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(pages):
        texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))) for _ in range(lines)]
        page = Image.new("RGB", (1200, 70 * lines + 60), "white")
        draw, boxes = ImageDraw.Draw(page), []
        for i, text in enumerate(texts):
            x0, y0, x1, y1 = draw.textbbox((40, 40 + 70 * i), text, font=font)
            draw.text((40, 40 + 70 * i), text, fill="black", font=font)
            boxes.append([[x0 - 6, y0 - 6], [x1 + 6, y0 - 6], [x1 + 6, y1 + 6], [x0 - 6, y1 + 6]])
        page.save(folder / "pages" / f"p{p}.png")
        rows.append({"page": f"pages/p{p}.png", "doc": f"synthetic-{p}", "split": "train",
                     "lines": [{"points": b, "text": t} for b, t in zip(boxes, texts, strict=True)]})
    path = folder / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def page_to_read(labels: Path | None) -> Image.Image:
    """The first labelled page, or a synthetic note page (core.synth) when there are no labels."""
    from core.ingest import load_image
    from core.labels import read_labels
    from core.synth import make_page

    if labels is None:
        return make_page(random.Random(7), width=1240).image
    return load_image(read_labels(labels)[0].image_path)


def detect_stage(image: Image.Image, spec: str) -> tuple[dict, list]:
    """Load and run the detector on one page: (report row, its lines)."""
    from core.detect import load_detector

    started = time.monotonic()
    detector = load_detector(spec)
    loaded = time.monotonic()
    lines = detector.detect([image])[0]
    return {"stage": "detect", "engine": detector.name, "device": getattr(detector, "device", "cpu"),
            "mixed_precision": "no", "load_s": round(loaded - started, 2),
            "run_s": round(time.monotonic() - loaded, 2), "items": f"{len(lines)} lines"}, lines


def recognize_stage(image: Image.Image, lines: list, spec: str) -> dict:
    """Load the recognizer and read the page's detected lines."""
    from core.device import mixed_precision
    from core.geometry import crop_line
    from core.recognize import load_recognizer

    crops = [crop_line(image, line.points) for line in lines]
    started = time.monotonic()
    recognizer = load_recognizer(spec)
    loaded = time.monotonic()
    read = recognizer.recognize(crops)
    device = getattr(recognizer, "device", "cpu")
    return {"stage": "recognize", "engine": recognizer.name, "device": device,
            "mixed_precision": mixed_precision(device), "load_s": round(loaded - started, 2),
            "run_s": round(time.monotonic() - loaded, 2), "items": f"{sum(bool(r.text) for r in read)} lines read"}


def train_stage(labels: Path, base: str, minutes: float, work: Path, threads: int) -> dict:
    """A `minutes`-long fine-tune of `base`; the device and precision come from the model's manifest."""
    from core.modeldir import read_manifest
    from core.train_recognizer import train_recognizer

    started = time.monotonic()
    out = train_recognizer(labels, base=base, max_minutes=minutes, out=work / "device-check-model", threads=threads)
    manifest = read_manifest(out)
    metrics = manifest["metrics"]
    return {"stage": "fine-tune", "engine": manifest["engine"], "device": manifest["device"]["trainer"],
            "mixed_precision": manifest["device"]["mixed_precision"], "load_s": None,
            "run_s": round(time.monotonic() - started, 2),
            "items": f"{metrics['steps']} steps, val CER {metrics['base_val_cer']} -> {metrics['val_cer']}"}


def print_rows(rows: list[dict]) -> None:
    print(f"{'stage':<10} {'device':<8} {'mixed precision':<16} {'load s':>7} {'run s':>7}  engine: result")
    for r in rows:
        load = "" if r["load_s"] is None else f"{r['load_s']:.2f}"
        precision = "off" if r["mixed_precision"] == "no" else f"on ({r['mixed_precision']})"
        print(f"{r['stage']:<10} {r['device']:<8} {precision:<16} {load:>7} {r['run_s']:>7.2f}  {r['engine']}: {r['items']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, help="labels.jsonl to read and fine-tune on (default: synthetic)")
    parser.add_argument("--minutes", type=float, default=2.0, help="the fine-tune's time budget")
    parser.add_argument("--detector", default="default")
    parser.add_argument("--recognizer", default="default", help="read with and fine-tune this recognizer")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (two agents share a small machine)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args()
    configure_process(threads=args.threads)
    from core.device import present_devices, resolve_device
    from core.errors import InkscribeError

    try:
        device = resolve_device()
    except InkscribeError as exc:  # as the CLI does: one sentence, exit 2
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"device setting {get_settings().device!r} -> {device} (present: {', '.join(present_devices())})")
    with tempfile.TemporaryDirectory(prefix="device-check-") as tmp:
        labels = args.labels or synthetic_labels(Path(tmp) / "labels")
        image = page_to_read(args.labels)
        detected, lines = detect_stage(image, args.detector)
        rows = [detected, recognize_stage(image, lines, args.recognizer)]
        rows.append(train_stage(labels, args.recognizer, args.minutes, Path(tmp), args.threads))
    print_rows(rows)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
