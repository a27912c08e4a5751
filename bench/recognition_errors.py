"""Where a recognizer's remaining errors come from, on the notes' eval split.

Rescores one model's eval transcriptions under relaxed comparisons (spaces ignored, leading
bullet marks ignored, case folded, all three at once, lines with characters the model cannot write left out) and
lists the worst lines, so a recipe change can be aimed at the error that is left. With `--compare`, a second model
reads the same lines, scored alone, line by line the more confident of the two, and the better of the two by
the label (an oracle no combination of the two can beat): if even the oracle stays far from the labels, the two
models make the same errors and a different recipe will not remove them. Prints one JSON object.

    OMP_NUM_THREADS=1 .venv/bin/python bench/recognition_errors.py --recognizer MODEL_DIR [--compare OTHER_MODEL_DIR]
"""

from __future__ import annotations

import argparse
import json
import re

from devdata import NOTES_LABELS as NOTES

from core.evaluate import evaluate_recognizer, load_line_set, score_lines
from core.metrics import cer, char_edits
from core.settings import configure_process

LEADING_MARK = re.compile(r"^[\s.·•)\-]+")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(NOTES))
    ap.add_argument("--split", default="eval")
    ap.add_argument("--recognizer", default="default")
    ap.add_argument("--worst", type=int, default=25, help="list this many worst lines")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compare", help="a second recognizer: scored alone, the more confident reading per line, and the per-line oracle")
    args = ap.parse_args()
    configure_process(threads=args.threads)
    from core.recognize import load_recognizer

    crops, texts = load_line_set(args.labels, args.split)
    recognizer = load_recognizer(args.recognizer)
    result = {**evaluate_recognizer(recognizer, crops, texts, keep_lines=True), "recognizer": args.recognizer}
    lines = result.pop("per_line")
    refs = [ln["reference"] for ln in lines]
    hyps = [ln["hypothesis"] for ln in lines]
    alphabet = set(getattr(recognizer, "alphabet", "") or "")

    def no_space(s: str) -> str:
        return "".join(s.split())

    def no_leading_mark(s: str) -> str:
        """The line without its bullet: the transcriptions write a drawn `·)` as `.`, `)`, `.)` or nothing."""
        return LEADING_MARK.sub("", s)

    def relaxed(s: str) -> str:
        return no_space(no_leading_mark(s)).casefold()

    long = [i for i, r in enumerate(refs) if len(r.strip()) >= 4]
    writable = [i for i in long if not alphabet or set(refs[i]) - {" "} <= alphabet]
    out = {
        **result,
        "cer_4plus_no_spaces": round(cer([no_space(refs[i]) for i in long], [no_space(hyps[i]) for i in long]), 4),
        "cer_4plus_no_leading_marks": round(cer([no_leading_mark(refs[i]) for i in long],
                                                [no_leading_mark(hyps[i]) for i in long]), 4),
        "cer_4plus_casefold": round(cer([refs[i].casefold() for i in long], [hyps[i].casefold() for i in long]), 4),
        "cer_4plus_relaxed": round(cer([relaxed(refs[i]) for i in long], [relaxed(hyps[i]) for i in long]), 4),
        "cer_4plus_writable": round(cer([refs[i] for i in writable], [hyps[i] for i in writable]), 4),
        "lines_4plus": len(long),
        "lines_4plus_with_unwritable_chars": len(long) - len(writable),
        "by_length": {
            name: score_lines([refs[i] for i in idx], [hyps[i] for i in idx])
            for name, idx in (
                ("1-3", [i for i, r in enumerate(refs) if len(r.strip()) < 4]),
                ("4-15", [i for i in long if len(refs[i].strip()) < 16]),
                ("16+", [i for i in long if len(refs[i].strip()) >= 16]),
            )
        },
    }
    if args.compare:
        read = load_recognizer(args.compare).recognize(crops)
        other = [r.text for r in read]
        best = [min((hyps[i], other[i]), key=lambda h, i=i: char_edits(refs[i], h)) for i in range(len(refs))]
        surer = [other[i] if read[i].confidence > lines[i]["confidence"] else hyps[i] for i in range(len(refs))]
        out["compare"] = {"recognizer": args.compare, **score_lines(refs, other),
                          "more_confident": score_lines(refs, surer), "line_oracle": score_lines(refs, best)}
    edits = sorted(range(len(refs)), key=lambda i: -cer([refs[i]], [hyps[i]]) * len(refs[i]))
    out["worst"] = [{"ref": refs[i], "hyp": hyps[i], "conf": lines[i]["confidence"]} for i in edits[: args.worst]]
    print(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
