"""`inkscribe …` (also `python -m core …`): the same flows as the app, for people, scripts and tests.

User errors print one line on stderr and exit 2; they never show a traceback. Every command
that loads a model says on stderr which one it loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from core.atomic import write_atomic
from core.errors import InkscribeError
from core.train.data import PICKS

FORMAT_BY_SUFFIX = {".md": "md", ".markdown": "md", ".txt": "txt", ".json": "json", ".xml": "alto", ".pdf": "pdf",
                    ".zip": "page-xml"}
FILE_ONLY_FORMATS = ("page-xml", "pdf")  # a zip or a PDF is never written to the terminal


def _check_output(path: Path) -> None:
    """Refuse an output path that can never be written, before any work is done."""
    if path.is_dir():
        raise InkscribeError(f"{path}: is a folder; give a file name for the output")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InkscribeError(f"{parent}: is a file, so {path.name} cannot be written inside it")
            break


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
    if fmt in FILE_ONLY_FORMATS and not args.output:
        raise InkscribeError(f"--format {fmt} writes a file: give one with -o (e.g. -o notes{_suffix(fmt)})")
    if args.output:
        _check_output(Path(args.output))
        out = Path(args.output).resolve()
        if any(Path(src).resolve() == out for src in args.inputs):
            raise InkscribeError(f"{args.output}: is also an input; writing there would destroy it")
    for src in args.inputs:  # fail on a bad input before loading any model
        inspect_source(src)
    engines = Engines.load(_spec(args.detector, "detector"), _spec(args.recognizer, "recognizer"))
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
    if fmt in ("page-xml", "alto", "pdf"):  # with the page images: from the store, else rendered again
        from core.interchange import digitized_pages, write_export

        exported = digitized_pages(docs, store)
        if args.output:
            write_atomic(Path(args.output), lambda fh: write_export(exported, fmt, fh))
        else:
            write_export(exported, fmt, sys.stdout.buffer)
    else:
        text = render(pages, fmt)
        if args.output:
            write_atomic(Path(args.output), lambda fh: fh.write(text.encode("utf-8")))
        else:
            sys.stdout.write(text)
    _say_loaded("detector", engines.detector_spec)  # once all went well: a bad input stays one line
    _say_loaded("recognizer", engines.recognizer_spec)
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from core.detect import load_detector, resolve_detector_spec
    from core.ingest import inspect_source, load_image
    from core.layout import order_lines

    for src in args.images:
        inspect_source(src)
    spec = _spec(args.detector, "detector")
    detector = load_detector(spec)
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
    _say_loaded("detector", resolve_detector_spec(spec))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Fine-tune on a labels file, or on the store's confirmed lines (scored, registered, maybe activated)."""
    from core.catalog import resolve
    from core.modeldir import next_version_dir
    from core.settings import get_settings
    from core.store import Store

    with Store() as store:
        base = _spec(args.base, "recognizer", store)
        resolve(base, "recognizer")  # an unknown base fails before any work
        out = Path(args.out).expanduser().resolve() if args.out else next_version_dir(get_settings().models_dir,
                                                                                     "recognizer")
        progress = _tqdm_progress("train")
        try:
            result = _train(args, store, base, out, progress)
        finally:
            progress.close()
    _say_loaded("base recognizer", resolve(base, "recognizer"))
    print(json.dumps(result, indent=1))
    return 0


def _train(args: argparse.Namespace, store, base: str, out: Path, progress) -> dict:
    from core.finetune import finetune_recognizer, register
    from core.settings import get_settings
    from core.train_recognizer import train_recognizer

    if args.from_store:  # self_train None: the app's default rule (core.finetune.self_training_helps)
        work = get_settings().home / "runs" / out.name
        return finetune_recognizer(store, work, out, base=base, max_minutes=args.max_minutes, progress=progress,
                                   options={"limit_lines": args.limit_lines} if args.limit_lines else None,
                                   self_train=args.self_train)
    model_dir = train_recognizer(args.labels, split=args.split, base=base, max_minutes=args.max_minutes, out=out,
                                 progress=progress, resume=not args.no_resume, limit_lines=args.limit_lines,
                                 pick=args.pick, self_train=bool(args.self_train))
    result = {"model_dir": str(model_dir)}
    if not args.no_store:  # the app lists it on the Models page (never activated: no held-out lines of yours)
        result["model_id"] = register(store, Path(model_dir), base=base)
    return result


def cmd_train_detector(args: argparse.Namespace) -> int:
    from core.detect import resolve_detector_spec
    from core.train_detector import train_detector

    progress = _tqdm_progress("train-detector")
    try:
        base = _spec(args.base, "detector")
        resolve_detector_spec(base)  # an unknown base fails before any work
        out = train_detector(args.labels, split=args.split, base=base, max_minutes=args.max_minutes,
                             out=args.out, progress=progress, resume=not args.no_resume)
    finally:
        progress.close()
    _say_loaded("base detector", resolve_detector_spec(base))
    print(out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from core.evaluate import evaluate_recognizers
    from core.recognize import resolve_recognizer_spec

    specs = [_spec(r, "recognizer") for r in args.recognizer or ["default"]]
    result = evaluate_recognizers(args.labels, args.split, specs, limit=args.limit)
    for spec in specs:  # said once the labels proved readable: a bad input stays one line
        _say_loaded("recognizer", resolve_recognizer_spec(spec))
    print(json.dumps(result, indent=1))
    return 0


def cmd_evaluate_detector(args: argparse.Namespace) -> int:
    from core.detect import resolve_detector_spec
    from core.evaluate import evaluate_detectors

    specs = [_spec(d, "detector") for d in args.detector or ["default"]]
    result = evaluate_detectors(args.labels, args.split, specs)
    for spec in specs:
        _say_loaded("detector", resolve_detector_spec(spec))
    print(json.dumps(result, indent=1))
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from core.catalog import list_models
    from core.store import Store

    with Store() as store:
        rows = list_models(store)
    if args.json:
        print(json.dumps({"models": rows}, indent=1))
        return 0
    for r in rows:
        cer = f"held-out CER {r['holdout_cer']:.3f}" if r["holdout_cer"] is not None else ""
        ident = f"#{r['id']}" if r["id"] is not None else "-"
        missing = "" if r.get("on_disk", True) else " (missing on disk)"
        print(f"{r['kind']:<10} {ident:>5} {'*' if r['active'] else ' '} {r['name']:<28} {cer:<20} {r['path']}{missing}")
    print("* = active: what the app reads with, and what --recognizer/--detector active names", file=sys.stderr)
    return 0


def cmd_models_export(args: argparse.Namespace) -> int:
    """A model (store id, folder or name) → one zip of its manifest and files; JSON summary on stdout."""
    from core.model_transfer import export_model, resolve_model
    from core.store import Store

    out = Path(args.output)
    _check_output(out)
    with Store() as store:
        path, manifest = resolve_model(store, args.model)
    print(json.dumps(export_model(path, out, manifest), ensure_ascii=False, indent=1))
    return 0


def cmd_models_import(args: argparse.Namespace) -> int:
    """A model zip → a new model folder and store entry (not active), checked and loaded once; JSON on stdout."""
    from core.model_transfer import import_model
    from core.store import Store

    with Store() as store:
        result = import_model(args.zip, store)
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


def _suffix(fmt: str) -> str:
    from core.interchange import SUFFIX

    return SUFFIX[fmt]


def cmd_import(args: argparse.Namespace) -> int:
    """PAGE/ALTO/labels files, folders or zips → new documents of confirmed lines; JSON summary on stdout."""
    from core.interchange import import_path
    from core.store import Store

    with Store() as store:
        summary = import_path(store, args.path)
    print(json.dumps(summary.to_json(), ensure_ascii=False, indent=1))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Stored documents (all, or --document IDs) → one file in the chosen format; JSON summary on stdout."""
    from core.interchange import export_file
    from core.store import Store

    out = Path(args.output)
    _check_output(out)
    with Store() as store:
        result = export_file(store, args.format, out, args.document or None)
    print(json.dumps(result, indent=1))
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    """Start the Streamlit server on this machine (the flags of scripts/start.sh), until Ctrl+C."""
    from core.settings import REPO_ROOT, get_settings

    env = {**os.environ, "INKSCRIBE_THREADS": os.environ.get("INKSCRIBE_THREADS") or "2"}
    argv = [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "app.py"), "--server.address", args.address,
            "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.maxUploadSize", str(get_settings().max_upload_mb), *args.streamlit_args]
    print(f"Inkscribe on http://{args.address}:{args.port} (Ctrl+C stops it)", file=sys.stderr)
    try:  # the folder that holds app.py also holds .streamlit/config.toml, which Streamlit reads from the cwd
        return subprocess.call(argv, cwd=REPO_ROOT, env=env)
    except KeyboardInterrupt:
        return 0


def _spec(spec: str | None, kind: str, store=None) -> str:
    """`active` → the app's active model directory (ModelError when there is none)."""
    from core.catalog import expand_spec

    return expand_spec(spec, kind, store)


def _say_loaded(what: str, resolved: str) -> None:
    """Which model a command read with, on stderr (after its work, so that an error stays a single line)."""
    print(f"{what}: {resolved}", file=sys.stderr)


def cmd_worker(args: argparse.Namespace) -> int:
    from core.jobs import run_job

    return run_job(args.job_id)


class _Parser(argparse.ArgumentParser):
    """argparse with one clear error line (exit 2) instead of a usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


MODEL_HELP = ("'active' (the app's active model), 'default', {builtins}a model directory or the name of one "
              "in INKSCRIBE_HOME/models")


def build_parser() -> argparse.ArgumentParser:
    from core import __version__

    p = _Parser(prog="inkscribe", description="Inkscribe: read handwritten notes, learn the hand. "
                "`inkscribe COMMAND --help` explains each command.")
    p.add_argument("--version", action="version", version=f"inkscribe {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands", parser_class=_Parser)
    _add_reading(sub)
    _add_training(sub)
    _add_models(sub)
    _add_moving(sub)
    w = sub.add_parser("worker")  # started by the app for a background job; left out of the help on purpose
    w.add_argument("job_id", type=int)
    w.set_defaults(func=cmd_worker)
    return p


REC_HELP = MODEL_HELP.format(builtins="'ppocrv5', 'ppocrv6', 'ppocrv4', 'english_g2', ") + \
    ", or (online only) a hub id such as microsoft/trocr-small-handwritten"
DET_HELP = MODEL_HELP.format(builtins="'classical', ")


def _add_reading(sub) -> None:
    """app, digitize, detect."""
    a = sub.add_parser("app", help="start the app in the browser on this machine",
                       description="Start the Streamlit app (http://ADDRESS:PORT). There is no login: keep the "
                                   "address 127.0.0.1 unless everyone who can reach the port may read your notes.")
    a.add_argument("--address", default=os.environ.get("INKSCRIBE_ADDRESS") or "127.0.0.1",
                   help="address to listen on (default 127.0.0.1, or INKSCRIBE_ADDRESS)")
    a.add_argument("--port", type=int, default=int(os.environ.get("INKSCRIBE_PORT") or 8501),
                   help="port (default 8501, or INKSCRIBE_PORT)")
    a.set_defaults(func=cmd_app)  # any other flag (e.g. --server.maxUploadSize 500) goes to `streamlit run`

    d = sub.add_parser("digitize", help="PDFs/images → text (Markdown, plain text, JSON, PAGE-XML, ALTO, PDF)",
                       description="Find the lines on every page, read them, put them in reading order and write "
                                   "Markdown, text, JSON, PAGE-XML, ALTO or a searchable PDF. Every document is also "
                                   "kept in the store (INKSCRIBE_HOME) for review and fine-tuning in the app.")
    d.add_argument("inputs", nargs="+", metavar="INPUT", help="PDF, PNG, JPEG or TIFF files")
    d.add_argument("-o", "--output", help="write here (atomically) instead of stdout; the suffix picks the format")
    d.add_argument("--format", choices=["md", "txt", "json", "page-xml", "alto", "pdf"],
                   help="md: Markdown with a heading per file and page markers; txt: one line per detected line, "
                        "pages separated by a blank line; json: pages with line polygons, text and confidence; "
                        "page-xml: a zip of PAGE 2019 files and page images; alto: one ALTO 4 file; "
                        "pdf: the page images with the text searchable (docs/FORMATS.md)")
    d.add_argument("--detector", default="default", help=DET_HELP)
    d.add_argument("--recognizer", default="default", help=REC_HELP)
    d.add_argument("--no-store", action="store_true", help="do not keep the result in the store")
    d.set_defaults(func=cmd_digitize)

    t = sub.add_parser("detect", help="find text lines on page images")
    t.add_argument("images", nargs="+", metavar="PAGE_IMAGE")
    t.add_argument("--detector", default="default", help=DET_HELP)
    t.add_argument("--json", action="store_true", help="print boxes as JSON")
    t.set_defaults(func=cmd_detect)


def _add_training(sub) -> None:
    """train, train-detector, evaluate, evaluate-detector."""
    tr = sub.add_parser("train", help="fine-tune the recognizer (a new model; the base is never changed)",
                        description="Fine-tune on a labels file, or on the lines you confirmed in the app "
                                    "(--from-store: scored on your held-out lines, listed on the Models page, and "
                                    "made active only when it reads them better than the active model).")
    src = tr.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", help="labels.jsonl (pages with line polygons and texts)")
    src.add_argument("--from-store", action="store_true", help="train on the store's confirmed lines")
    _training_flags(tr, "recognizer", REC_HELP)
    tr.add_argument("--limit-lines", type=int, help="learn from at most this many labelled lines")
    tr.add_argument("--pick", choices=PICKS, default="first",
                    help="with --labels and --limit-lines: the first pages in file order (what a user corrects first; "
                         "default), pages in seeded random order (random: validation pages on top; shuffled: "
                         "validation out of the kept lines, as for the others), the lines the app's what-to-fix-next "
                         "queue asks for (sure-pairs: every page in turn, its line of real text adding most new "
                         "character pairs weighed by confidence squared; pairs: the same unweighed), every page in "
                         "turn by least confidence (spread), or the least confident lines anywhere (fix-next; "
                         "docs/decisions/0013-queue-by-sure-pairs.md)")
    st = tr.add_mutually_exclusive_group()
    st.add_argument("--self-train", dest="self_train", action="store_const", const=True, default=None,
                    help="also learn from unlabelled lines (their boxes, never their texts): a teacher's confident "
                         "readings of them, vetted (docs/decisions/0010-self-training.md). With --labels: the split's "
                         "other lines (off unless given). With --from-store: your unconfirmed lines outside the "
                         "held-out pages (default: on when there are at least 200 of them and at least as many as the "
                         "confirmed lines)")
    st.add_argument("--no-self-train", dest="self_train", action="store_const", const=False,
                    help="with --from-store: do not self-train, whatever the default")
    tr.add_argument("--no-store", action="store_true", help="with --labels: do not list the model in the store")
    tr.set_defaults(func=cmd_train)

    td = sub.add_parser("train-detector", help="fine-tune the line detector (a new model; the base is never changed)")
    td.add_argument("--labels", required=True, help="labels.jsonl (pages with line polygons and texts)")
    _training_flags(td, "detector", DET_HELP)
    td.set_defaults(func=cmd_train_detector)

    e = sub.add_parser("evaluate", help="CER/WER of recognizers on labelled lines (JSON on stdout)")
    e.add_argument("--labels", required=True)
    e.add_argument("--split", default="eval")
    e.add_argument("--recognizer", action="append", help="repeatable; " + REC_HELP)
    e.add_argument("--limit", type=int, help="only the first N lines (quick checks)")
    e.set_defaults(func=cmd_evaluate)

    ed = sub.add_parser("evaluate-detector", help="line detection precision/recall/F1 at IoU 0.5 (JSON on stdout)")
    ed.add_argument("--labels", required=True)
    ed.add_argument("--split", default="eval")
    ed.add_argument("--detector", action="append", help="repeatable; " + DET_HELP)
    ed.set_defaults(func=cmd_evaluate_detector)


def _add_models(sub) -> None:
    """models list | export | import."""
    m = sub.add_parser("models", help="the models you have (list, export, import)")
    msub = m.add_subparsers(dest="models_command", required=True, metavar="ACTION", parser_class=_Parser)
    ml = msub.add_parser("list", help="shipped defaults and the store's models; * marks the active ones")
    ml.add_argument("--json", action="store_true", help="print JSON")
    ml.set_defaults(func=cmd_models_list)
    mx = msub.add_parser("export", help="write a model as a zip (its manifest and files) to move it elsewhere",
                         description="Zip a model: a store id from `inkscribe models list` (its name and scores go "
                                     "along), a model directory, or the name of one. Prints JSON: path, bytes, kind, "
                                     "name, files.")
    mx.add_argument("model", metavar="ID_OR_PATH", help="a model id, a model directory or its name")
    mx.add_argument("-o", "--output", required=True, metavar="OUT.zip", help="the zip to write (atomically)")
    mx.set_defaults(func=cmd_models_export)
    mi = msub.add_parser("import", help="add a model from a zip (checked, a new version, not active)",
                         description="Import a model zip made by `inkscribe models export` or the app: only our "
                                     "manifest with safetensors/JSON/text files (a .pt only as YOLO weights) is "
                                     "accepted; it is saved as a new version, never over another model, listed but "
                                     "not active, and loaded once to check it. Prints JSON: model_id, name, kind, "
                                     "path.")
    mi.add_argument("zip", metavar="ZIP", help="the model zip")
    mi.set_defaults(func=cmd_models_import)


def _add_moving(sub) -> None:
    """import, export: moving documents in and out (docs/FORMATS.md)."""
    im = sub.add_parser("import", help="import PAGE-XML, ALTO or labelled lines into the store (as confirmed lines)",
                        description="Import a PAGE-XML (2013/2019) or ALTO (v2-v4) file, a folder or a zip of them "
                                    "with their page images (as Transkribus and eScriptorium export), a searchable "
                                    "PDF Inkscribe wrote, or a labels file/zip (labels.jsonl, PPOCRLabel, "
                                    "imagefolder, CSV). Prints JSON: documents, pages, lines, and what was skipped "
                                    "and why.")
    im.add_argument("path", metavar="PATH", help="a file, a folder or a zip")
    im.set_defaults(func=cmd_import)

    ex = sub.add_parser("export", help="write stored documents as Markdown, text, PAGE-XML, ALTO, PDF or a dataset",
                        description="Write the stored documents (all, or those given with --document) in one format "
                                    "(docs/FORMATS.md). page-xml, labels, imagefolder and ppocr are zips; alto is one "
                                    "XML file, or a zip with the page images when OUT ends in .zip.")
    ex.add_argument("--format", required=True,
                    choices=["md", "txt", "json", "page-xml", "alto", "pdf", "labels", "imagefolder", "ppocr"])
    ex.add_argument("-o", "--output", required=True, metavar="OUT", help="the file to write (atomically)")
    ex.add_argument("--document", type=int, action="append", metavar="ID", help="repeatable; default: all documents")
    ex.set_defaults(func=cmd_export)


def _training_flags(parser: argparse.ArgumentParser, what: str, model_help: str) -> None:
    parser.add_argument("--split", default="train", help="which split of the labels to train on (default: train)")
    parser.add_argument("--base", default="default", help=f"the {what} to start from: " + model_help)
    parser.add_argument("--max-minutes", type=float, default=15.0, help="stop (keeping the best model) after this long")
    parser.add_argument("--out", help="model directory to create (default: a new version in INKSCRIBE_HOME/models)")
    parser.add_argument("--no-resume", action="store_true", help="start over instead of resuming an interrupted run")


def main(argv: list[str] | None = None) -> int:
    from core.settings import configure_process, get_settings

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "app":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.streamlit_args = extra
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
