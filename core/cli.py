"""`python -m core …`: the same flows as the app, for scripts, benchmarks and tests.

User errors print one line on stderr and exit 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from pathlib import Path

from core.errors import InkscribeError

FORMAT_BY_SUFFIX = {".md": "md", ".markdown": "md", ".txt": "txt", ".json": "json"}


def _check_output(path: Path) -> None:
    """Refuse an output path that can never be written, before any work is done."""
    if path.is_dir():
        raise InkscribeError(f"{path}: is a folder; give a file name for the output")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InkscribeError(f"{parent}: is a file, so {path.name} cannot be written inside it")
            break


def _write_atomic(path: Path, text: str) -> None:
    """Write the whole output or nothing: temp file beside it, then rename."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    # A short temp name: a long output name plus a suffix could exceed the file system's name limit.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".inkscribe-", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _tqdm_progress(desc: str):
    from tqdm import tqdm

    bar = None

    def update(info: dict) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=info.get("total_steps"), desc=desc, unit="step", file=sys.stderr, leave=True)
        if info.get("total_steps"):
            bar.total = info["total_steps"]
        bar.n = info.get("step", bar.n)
        extra = {k: info[k] for k in ("loss", "val_cer", "message") if info.get(k) is not None}
        if extra:
            bar.set_postfix({k: (round(v, 4) if isinstance(v, float) else v) for k, v in extra.items()}, refresh=False)
        bar.refresh()

    def close() -> None:
        if bar is not None:
            bar.close()

    update.close = close  # type: ignore[attr-defined]
    return update


def cmd_digitize(args: argparse.Namespace) -> int:
    from core.export import render
    from core.ingest import inspect_source
    from core.pipeline import Engines, digitize
    from core.store import Store

    fmt = args.format or (FORMAT_BY_SUFFIX.get(Path(args.output).suffix.lower(), "md") if args.output else "md")
    if args.output:
        _check_output(Path(args.output))
        out = Path(args.output).resolve()
        if any(Path(src).resolve() == out for src in args.inputs):
            raise InkscribeError(f"{args.output}: is also an input; writing there would destroy it")
    for src in args.inputs:  # fail on a bad input before loading any model
        inspect_source(src)
    engines = Engines.load(args.detector, args.recognizer)
    store = None if args.no_store else Store()
    progress = _tqdm_progress("digitize")
    try:
        docs = digitize(args.inputs, engines, store=store, progress=progress, keep_partial=False)
    finally:
        progress.close()
    pages = [p for d in docs for p in d.pages]
    for page in pages:
        for warning in page.warnings:
            print(f"warning: {page.source} page {page.page}: {warning}", file=sys.stderr)
    text = render(pages, fmt)
    if args.output:
        _write_atomic(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from core.detect import load_detector
    from core.ingest import inspect_source, load_image
    from core.layout import order_lines

    for src in args.images:
        inspect_source(src)
    detector = load_detector(args.detector)
    out = []
    for src in args.images:
        image = load_image(src)
        lines = order_lines(detector.detect([image])[0])
        out.append({"source": str(src), "width": image.width, "height": image.height,
                    "lines": [{"points": ln.to_json()["points"], "confidence": round(ln.det_confidence, 4)} for ln in lines]})
    if args.json:
        print(json.dumps({"pages": out}, indent=1))
    else:
        for page in out:
            print(f"{page['source']}: {len(page['lines'])} lines")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from core.train_recognizer import train_recognizer

    progress = _tqdm_progress("train")
    try:
        out = train_recognizer(args.labels, split=args.split, base=args.base, max_minutes=args.max_minutes,
                               out=args.out, progress=progress, resume=not args.no_resume)
    finally:
        progress.close()
    print(out)
    return 0


def cmd_train_detector(args: argparse.Namespace) -> int:
    from core.train_detector import train_detector

    progress = _tqdm_progress("train-detector")
    try:
        out = train_detector(args.labels, split=args.split, base=args.base, max_minutes=args.max_minutes,
                             out=args.out, progress=progress, resume=not args.no_resume)
    finally:
        progress.close()
    print(out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from core.evaluate import evaluate_recognizers

    result = evaluate_recognizers(args.labels, args.split, args.recognizer or ["default"], limit=args.limit)
    print(json.dumps(result, indent=1))
    return 0


def cmd_evaluate_detector(args: argparse.Namespace) -> int:
    from core.evaluate import evaluate_detectors

    print(json.dumps(evaluate_detectors(args.labels, args.split, args.detector or ["default"]), indent=1))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from core.jobs import run_job

    return run_job(args.job_id)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description="Inkscribe: read handwritten notes, learn the hand.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("digitize", help="PDFs/images → text (Markdown, plain text or JSON)",
                       description="Find the lines on every page, read them, put them in reading order and write "
                                   "Markdown, text or JSON. Every document is also kept in the store "
                                   "(INKSCRIBE_HOME) for review and fine-tuning in the app.")
    d.add_argument("inputs", nargs="+", metavar="INPUT", help="PDF, PNG, JPEG or TIFF files")
    d.add_argument("-o", "--output", help="write here (atomically) instead of stdout; the suffix picks the format")
    d.add_argument("--format", choices=["md", "txt", "json"],
                   help="md: Markdown with a heading per file and page markers; txt: one line per detected line, "
                        "pages separated by a blank line; json: pages with line polygons, text and confidence")
    d.add_argument("--detector", default="default", help="'default', 'classical', 'yolo' or a detector model directory")
    d.add_argument("--recognizer", default="default",
                   help="'default' (offline PP-OCRv5), 'ppocrv4', 'english_g2', a recognizer model directory, or a hub id when online")
    d.add_argument("--no-store", action="store_true", help="do not keep the result in the store")
    d.set_defaults(func=cmd_digitize)

    t = sub.add_parser("detect", help="find text lines on page images")
    t.add_argument("images", nargs="+", metavar="PAGE_IMAGE")
    t.add_argument("--detector", default="default", help="'default', 'classical', 'yolo' or a model directory")
    t.add_argument("--json", action="store_true", help="print boxes as JSON")
    t.set_defaults(func=cmd_detect)

    for name, func, what in (("train", cmd_train, "recognizer"), ("train-detector", cmd_train_detector, "detector")):
        tr = sub.add_parser(name, help=f"fine-tune a {what} on labelled pages (a new model; the base is never changed)")
        tr.add_argument("--labels", required=True, help="labels.jsonl (pages with line polygons and texts)")
        tr.add_argument("--split", default="train", help="which split of the labels to train on (default: train)")
        tr.add_argument("--base", default="default", help=f"the {what} to start from: 'default' or a model directory")
        tr.add_argument("--max-minutes", type=float, default=15.0, help="stop (keeping the best model) after this long")
        tr.add_argument("--out", help="model directory to create (default: a new version in INKSCRIBE_HOME/models)")
        tr.add_argument("--no-resume", action="store_true", help="start over instead of resuming an interrupted run")
        tr.set_defaults(func=func)

    e = sub.add_parser("evaluate", help="CER/WER of recognizers on labelled lines (JSON on stdout)")
    e.add_argument("--labels", required=True)
    e.add_argument("--split", default="eval")
    e.add_argument("--recognizer", action="append", help="repeatable; 'default' or a model directory")
    e.add_argument("--limit", type=int, help="only the first N lines (quick checks)")
    e.set_defaults(func=cmd_evaluate)

    ed = sub.add_parser("evaluate-detector", help="line detection precision/recall/F1 at IoU 0.5 (JSON on stdout)")
    ed.add_argument("--labels", required=True)
    ed.add_argument("--split", default="eval")
    ed.add_argument("--detector", action="append", help="repeatable; 'default', 'classical' or a model directory")
    ed.set_defaults(func=cmd_evaluate_detector)

    w = sub.add_parser("worker", help="run a queued background job (started by the app)")
    w.add_argument("job_id", type=int)
    w.set_defaults(func=cmd_worker)
    return p


def main(argv: list[str] | None = None) -> int:
    from core.settings import configure_process, get_settings

    args = build_parser().parse_args(argv)
    configure_process()
    try:
        return int(args.func(args) or 0)
    except InkscribeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except sqlite3.Error as exc:  # a damaged, locked or full store file
        print(f"error: the store in {get_settings().home} could not be used ({exc})", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permissions, name too long: one line, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
