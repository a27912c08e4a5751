"""Train the shipped line detector (models/detector-yolo) from scratch on CPU.

Training data: synthetic note pages (core.synth) + the CC-BY handwriting pages of
../shared/data/lines-ccby (line polygons → boxes). Never the notes data set.
Rerunnable: the data set is kept in --work and only missing files are made; an interrupted
training resumes from its last epoch (ultralytics last.pt).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_detector_base.py --minutes 60
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from core.labels import read_labels
from core.modeldir import read_manifest, write_model_dir
from core.settings import REPO_ROOT, configure_process, get_settings
from core.synth import write_yolo_pages
from core.train_detector import HYP, SCRATCH, p2_detector_from, pages_to_yolo, run_yolo, write_data_yaml

# Explicit: ultralytics' "auto" picks MuSGD when epochs x batches > 10,000 (our --epochs bound is
# high because --minutes decides), and MuSGD's Newton-Schulz steps are several times slower on a CPU.
OPTIM = {"optimizer": "AdamW", "lr0": 0.002}


def build_data(work: Path, n_synth: list[int], n_val: int, seeds: list[int], max_side: int,
               ccby_max: int, ccby_root: Path, squeeze_x: float = 1.0) -> tuple[Path, dict]:
    data_dir = work / "data"
    t = time.time()
    synth = []
    for n, seed in zip(n_synth, seeds, strict=True):
        synth += write_yolo_pages(data_dir, n, seed=seed, max_side=max_side, squeeze_x=squeeze_x)
    val = write_yolo_pages(data_dir, n_val, seed=seeds[0] + 1000, max_side=max_side, prefix="val", squeeze_x=squeeze_x)
    ccby = []
    counts = {}
    for labels in sorted(ccby_root.glob("*/labels.jsonl")):  # one folder per CC BY 4.0 set
        name = labels.parent.name
        # imp_* pages carry a printed paragraph that is not labelled: skip them, our fonts look printed.
        pages = [p for p in read_labels(labels) if p.lines and not p.image_path.name.startswith("imp_")]
        pages = pages[:: max(1, -(-len(pages) // max(1, ccby_max)))] if ccby_max < len(pages) else pages
        ccby += pages_to_yolo(pages, data_dir, prefix=f"{name}_", squeeze_x=squeeze_x)
        counts[name] = len(pages)
    data = write_data_yaml(work, synth + ccby, val)
    info = {"synthetic_pages": len(synth), "synthetic_seeds": dict(zip(seeds, n_synth, strict=True)),
            "val_synthetic_pages": len(val),
            "lines_ccby_pages": counts, "build_seconds": round(time.time() - t, 1)}
    return data, info


def package(src: Path, out: Path, imgsz: int | None, conf: float, history: Path | None = None,
            squeeze_x: float | None = None, small_read: str | None = None, margins_every: int = 0,
            labels: Path | None = None) -> int:
    """Ship a trained model with inference settings chosen afterwards (on the notes' train split).

    The size and narrowing it was trained at are kept as train_imgsz/train_squeeze_x: the app's
    fine-tune trains at those, however the model is read. `small_read` ("squeeze,imgsz,conf,width
    share") adds a second, larger read kept for small boxes; `margins_every` N fits the box margins
    (`core.evaluate.fit_box_margins`) on every Nth page of `labels`' train split, read as shipped.
    """
    manifest = read_manifest(src)
    manifest.pop("created", None)
    if history:  # earlier stages of a multi-run recipe (the run this one started from)
        manifest["history"] = json.loads(history.read_text())
    recipe = manifest.get("recipe", {})
    manifest.update({"name": out.name, "conf": conf, "train_imgsz": int(recipe.get("imgsz", manifest["imgsz"])),
                     **({"imgsz": imgsz} if imgsz else {}),
                     "inference_tuned_on": "notes train split (imgsz/squeeze/conf only; weights never saw notes)"})
    trained_squeeze = float(recipe.get("squeeze_x", manifest.get("squeeze_x", 1.0)))
    if squeeze_x and squeeze_x != trained_squeeze:
        manifest.update(squeeze_x=squeeze_x, train_squeeze_x=trained_squeeze)
    if small_read:
        sq, size, sconf, share = (float(v) for v in small_read.split(","))
        manifest["small_read"] = {"squeeze_x": sq, "imgsz": int(size), "conf": sconf, "max_width_share": share,
                                  "overlap": 0.3}
    if margins_every:
        from core.detect.yolo import YoloDetector
        from core.evaluate import fit_box_margins

        pages = read_labels(labels, split="train")[::margins_every]
        fit = fit_box_margins(YoloDetector(src, {**manifest, "weights": "weights.pt"}), pages)
        manifest.update(box_margins=fit["margins"], box_margins_fit={**fit, "pages": len(pages),
                                                                     "labels": f"notes train split, every {margins_every}"})
        print(json.dumps(fit))
    write_model_dir(out, manifest, lambda tmp: shutil.copyfile(src / "weights.pt", tmp / "weights.pt"))
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None, help="data + run dir (default: <home>/work/detector-base)")
    ap.add_argument("--synth", type=int, nargs="+", default=[600], help="synthetic pages (per seed)")
    ap.add_argument("--val", type=int, default=12, help="synthetic validation pages")
    ap.add_argument("--seed", type=int, nargs="+", default=[1], help="synthetic page seeds (one per --synth)")
    ap.add_argument("--ccby-max", type=int, default=150, help="at most this many pages of each lines-ccby set")
    ap.add_argument("--max-side", type=int, default=1280, help="longer side of saved synthetic pages")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--predict-imgsz", type=int, default=None, help="imgsz written to the manifest")
    ap.add_argument("--predict-squeeze", type=float, default=None, help="with --package: squeeze_x to read pages at")
    ap.add_argument("--conf", type=float, default=0.25, help="confidence written to the manifest")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--squeeze", type=float, default=1.0,
                    help="narrow pages by this factor before the detector sees them (long lines within reach)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads while training")
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--epochs", type=int, default=300, help="upper bound; --minutes decides")
    ap.add_argument("--warmup", type=float, default=0.5, help="warm-up epochs")
    ap.add_argument("--close-mosaic", type=int, default=1, help="last epochs without mosaic")
    ap.add_argument("--init", default=SCRATCH, help="start from these weights (.pt) instead of yolo11n.yaml")
    ap.add_argument("--p2-from", type=Path, default=None,
                    help="train a stride-4 (P2) detector (yolo11n-p2.yaml) starting from these yolo11n weights")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "detector-yolo")
    ap.add_argument("--fresh", action="store_true", help="do not resume an interrupted run")
    ap.add_argument("--package", type=Path, default=None,
                    help="no training: copy this trained model dir to --out with --predict-imgsz/--conf")
    ap.add_argument("--history", type=Path, default=None, help="with --package: JSON of earlier training stages")
    ap.add_argument("--small-read", default=None,
                    help="with --package: 'squeeze,imgsz,conf,width_share' of a second read kept for small boxes")
    ap.add_argument("--fit-margins-every", type=int, default=0,
                    help="with --package: fit box margins on every Nth page of --labels' train split")
    ap.add_argument("--labels", type=Path, default=Path("../shared/data/notes/labels.jsonl"),
                    help="labelled pages to fit box margins on (default: the notes data set beside the checkout)")
    ap.add_argument("--lines-ccby", type=Path, default=Path("../shared/data/lines-ccby"),
                    help="the CC BY 4.0 line sets, one folder per set with labels.jsonl (default: beside the checkout)")
    args = ap.parse_args(argv)
    if args.package:
        return package(args.package, args.out, args.predict_imgsz, args.conf, args.history, args.predict_squeeze,
                       args.small_read, args.fit_margins_every, args.labels)

    configure_process(threads=args.threads)
    work = args.work or get_settings().home / "work" / "detector-base"
    if args.out.exists():
        print(f"{args.out} exists; models are never overwritten: move it away first", file=sys.stderr)
        return 2
    if args.fresh and (work / "run").exists():
        shutil.rmtree(work / "run")
    data, data_info = build_data(work, args.synth, args.val, args.seed, args.max_side, args.ccby_max, args.lines_ccby, args.squeeze)
    print(json.dumps(data_info), flush=True)

    def progress(info: dict) -> None:
        print(json.dumps(info), flush=True)

    init = args.init
    if args.p2_from:
        grown = p2_detector_from(args.p2_from, work / "p2-init.pt")
        print(json.dumps(grown), flush=True)
        init = grown["weights"]
    best, info = run_yolo(init, data, work, imgsz=args.imgsz, epochs=args.epochs, minutes=args.minutes,
                          batch=args.batch, progress=progress, resume=not args.fresh, cache="ram", threads=args.threads,
                          hyp={"warmup_epochs": args.warmup, "close_mosaic": args.close_mosaic, **OPTIM})
    manifest = {
        "kind": "detector",
        "engine": "yolo",
        "name": args.out.name,
        "base": Path(args.p2_from or args.init).name,
        "weights": "weights.pt",
        "imgsz": args.predict_imgsz or args.imgsz,
        "conf": args.conf,
        "iou": 0.5,
        **({"squeeze_x": args.squeeze} if args.squeeze > 1.0 else {}),
        "trained_on": {**data_info, "notes": "never (evaluation only)"},
        "recipe": {"model": "YOLO11n-P2" if args.p2_from else "YOLO11n", "init": str(args.p2_from or args.init),
                   "imgsz": args.imgsz, "batch": args.batch,
                   "minutes": args.minutes, "threads": args.threads, "squeeze_x": args.squeeze, "device": "cpu", "nbs": args.batch,
                   **HYP, "warmup_epochs": args.warmup, "close_mosaic": args.close_mosaic, **OPTIM,
                   "command": "scripts/train_detector_base.py " + " ".join(argv if argv is not None else sys.argv[1:])},
        "train_seconds": info["seconds"],
        "resumed": info["resumed"],
        "license_note": "trained on synthetic pages and CC BY 4.0 data, see models/README.md",
    }
    write_model_dir(args.out, manifest, lambda tmp: shutil.copyfile(best, tmp / "weights.pt"))
    print(f"wrote {args.out} ({(args.out / 'weights.pt').stat().st_size / 1e6:.1f} MB) in {info['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
