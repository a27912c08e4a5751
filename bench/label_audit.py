"""How much of a recognizer's eval CER is the labels' own: a random audit of its wrong lines.

Looking at the worst lines (docs/decisions/0006-label-audit.md) shows where errors pile up, not
how much of the whole CER the labels explain. This draws a seeded random sample of the eval
lines (4+ characters) where the model and the label disagree, and writes them as sheets: the
crop, the label, the model's reading. A person reads each crop and writes what the page says
into `truth` (starting from the label and changing only what contradicts the page, so the
labeller's conventions for spaces and bullets stay). `score` then estimates the model's
cer_4plus against corrected labels (a ratio estimate: the sample's edits to the truth over its
edits to the label, times all the model's edits), with a bootstrap interval.

    OMP_NUM_THREADS=1 .venv/bin/python bench/label_audit.py sheets --recognizer MODEL_DIR --sample 60 --out AUDIT_DIR
    # fill AUDIT_DIR/audit.json's "truth" fields by reading AUDIT_DIR/sheet-*.png (set "judged": true), then
    .venv/bin/python bench/label_audit.py score AUDIT_DIR/audit.json

`--reuse` an earlier audit file to carry its judged lines over (what a line says does not
depend on the model); the sheets then show only the lines still to judge.

The filled file holds transcriptions of the notes, so it stays outside the repository.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from devdata import NOTES_LABELS as NOTES

from core.metrics import char_edits

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # wide coverage for arrows and subscripts
PER_SHEET = 10


def _sheet(items: list[dict], crops: dict, path: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONT), 22) if FONT.is_file() else ImageFont.load_default()
    width = 1400
    rows = []
    for item in items:
        crop = crops[item["key"]]
        scale = min(1.0, (width - 20) / crop.width, 110 / crop.height)
        rows.append(crop.resize((max(1, int(crop.width * scale)), max(1, int(crop.height * scale)))))
    height = sum(r.height + 80 for r in rows) + 10
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = 5
    for item, row in zip(items, rows, strict=True):
        draw.text((10, y), f"#{item['n']}  label: {item['label']}", fill=(0, 90, 0), font=font)
        sheet.paste(row, (10, y + 28))
        draw.text((10, y + 32 + row.height), f"model: {item['model']}", fill=(170, 0, 0), font=font)
        y += row.height + 80
    sheet.save(path)


def make_sheets(args) -> None:
    from core.evaluate import evaluate_recognizer
    from core.labels import iter_line_crops, read_labels
    from core.recognize import load_recognizer
    from core.settings import configure_process

    configure_process(threads=args.threads)
    keys, crops, texts = [], {}, []
    for page, index_line, crop in _numbered(iter_line_crops(read_labels(args.labels, split=args.split))):
        key = f"{page.image_path.name}#{index_line}"
        keys.append(key)
        crops[key] = crop
        texts.append(page.lines[index_line].text)
    result = evaluate_recognizer(load_recognizer(args.recognizer), [crops[k] for k in keys], texts, keep_lines=True)
    hyps = [ln["hypothesis"] for ln in result["per_line"]]
    long = [i for i, t in enumerate(texts) if len(t.strip()) >= 4]
    wrong = [i for i in long if hyps[i] != texts[i]]
    picked = sorted(random.Random(args.seed).sample(wrong, min(args.sample, len(wrong))))
    judged = {}
    for earlier in args.reuse:
        judged |= {it["key"]: {k: v for k, v in it.items() if k.startswith("truth")}
                   for it in json.loads(Path(earlier).read_text(encoding="utf-8"))["items"] if it.get("judged")}
    items = [{"n": n, "key": keys[i], "label": texts[i], "model": hyps[i], "truth": texts[i],
              **judged.get(keys[i], {}), "judged": keys[i] in judged} for n, i in enumerate(picked, 1)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    to_judge = [it for it in items if not it["judged"]]
    for start in range(0, len(to_judge), PER_SHEET):
        _sheet(to_judge[start:start + PER_SHEET], crops, out / f"sheet-{start // PER_SHEET + 1:02d}.png")
    audit = {
        "recognizer": args.recognizer, "split": args.split, "seed": args.seed,
        "lines_4plus": len(long), "wrong_lines_4plus": len(wrong),
        "label_chars_4plus": sum(len(texts[i]) for i in long),
        "model_edits_4plus": sum(char_edits(texts[i], hyps[i]) for i in long),
        "cer_4plus": result["cer_4plus"],
        "items": items,
    }
    (out / "audit.json").write_text(json.dumps(audit, indent=1, ensure_ascii=False), encoding="utf-8")
    print(json.dumps({k: v for k, v in audit.items() if k != "items"}
                     | {"sampled": len(items), "to_judge": len(to_judge), "out": str(out)}))


def _numbered(triples):
    """(page, index of the line on its page, crop): iter_line_crops skips empty boxes, so count by identity."""
    for page, line, crop in triples:
        yield page, next(i for i, candidate in enumerate(page.lines) if candidate is line), crop


def estimate(audit: dict, resamples: int = 2000, seed: int = 0) -> dict:
    """The model's cer_4plus against corrected labels, and how much of its CER the labels explain.

    Two readings of "corrected": `truth` is what the page says (the writer's abbreviations and
    spellings kept); `truth_keeping_expansions`, where given, keeps the labeller's expanded
    abbreviations and corrected spellings and fixes only mistakes (missing or wrong words,
    characters, case, symbols).
    """
    items = [it for it in audit["items"] if it.get("judged")]
    if not items:
        raise SystemExit("no judged lines: set each item's truth and \"judged\": true first")
    chars = audit["label_chars_4plus"]
    n = len(items)
    to_label = [char_edits(it["label"], it["model"]) for it in items]
    out = {"recognizer": audit["recognizer"], "judged": n, "not_judged": len(audit["items"]) - n,
           "of_wrong_lines": audit["wrong_lines_4plus"],
           "cer_4plus_against_labels": round(audit["model_edits_4plus"] / chars, 4)}
    for name, field in (("page", "truth"), ("keeping_expansions", "truth_keeping_expansions")):
        truths = [it.get(field, it["truth"]) for it in items]
        to_truth = [char_edits(t, it["model"]) for t, it in zip(truths, items, strict=True)]
        label_wrong = [char_edits(t, it["label"]) for t, it in zip(truths, items, strict=True)]

        def corrected_cer(idx: list[int], to_truth=to_truth) -> float:
            ratio = sum(to_truth[i] for i in idx) / max(1, sum(to_label[i] for i in idx))
            return audit["model_edits_4plus"] * ratio / chars

        def label_cer(idx: list[int], label_wrong=label_wrong) -> float:
            """The labels' own errors on the lines this model gets wrong, over all 4+ lines: a lower bound."""
            return sum(label_wrong[i] for i in idx) * audit["wrong_lines_4plus"] / len(idx) / chars

        rng = random.Random(seed)
        draws = [[rng.randrange(n) for _ in range(n)] for _ in range(resamples)]
        out[name] = {
            "cer_4plus_against_corrected_labels": round(corrected_cer(list(range(n))), 4),
            "interval_95": _interval([corrected_cer(d) for d in draws]),
            "sampled_lines_with_a_wrong_label": sum(1 for e in label_wrong if e),
            "label_cer_4plus_at_least": round(label_cer(list(range(n))), 4),
            "label_cer_interval_95": _interval([label_cer(d) for d in draws]),
            "share_of_model_edits_that_are_label_errors": round(1 - sum(to_truth) / max(1, sum(to_label)), 3),
        }
    out["note"] = "lines where model and label agree are taken as right (both wrong the same way is not counted)"
    return out


def _interval(values: list[float]) -> list[float]:
    ordered = sorted(values)
    return [round(ordered[int(0.025 * len(ordered))], 4), round(ordered[int(0.975 * len(ordered)) - 1], 4)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sh = sub.add_parser("sheets", help="sample the wrong lines and draw them for reading")
    sh.add_argument("--labels", default=str(NOTES))
    sh.add_argument("--split", default="eval")
    sh.add_argument("--recognizer", default="default")
    sh.add_argument("--sample", type=int, default=60)
    sh.add_argument("--seed", type=int, default=0)
    sh.add_argument("--threads", type=int, default=1)
    sh.add_argument("--reuse", nargs="*", default=[], help="earlier audit files whose judged lines carry over")
    sh.add_argument("--out", required=True)
    sc = sub.add_parser("score", help="estimate the CER against the corrected labels")
    sc.add_argument("audit")
    args = ap.parse_args()
    if args.command == "sheets":
        make_sheets(args)
    else:
        print(json.dumps(estimate(json.loads(Path(args.audit).read_text(encoding="utf-8"))), indent=1))


if __name__ == "__main__":
    main()
