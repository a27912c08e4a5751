"""Eval pages of the notes whose labels leave lines of text without a box (a look at all 29).

A detector that finds such a line is scored as wrong twice over: the box counts as a false
positive, and its text as inserted page text. The benches keep their headline numbers on all
pages; with `--complete-pages` they also score only the pages not listed here, to show how much
of a gap is the labels'. Found by drawing every eval page's labelled boxes over the page and
reading it (2026-12-02); criterion: a sentence or heading of the page has no box. Diagram
annotations (a node's letter, a wire's value) are boxed on some pages and not on others, so
they are not a reason to list a page.

Run as a script, it counts the other convention the labels do not keep: an enumerator or bullet
(`2`, `B.`, `①`, `·`, `)`, `Ex:`) boxed apart from the line it starts, against one boxed inside it.

    .venv/bin/python bench/label_gaps.py [--labels …/labels.jsonl]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Sequence

ENUMERATOR = r"(?:\d{1,2}[.):]?|[①-⑩]|[A-Za-z][.):]|[*•·.)\-]|\.\)|Ex:)"
ALONE = re.compile(rf"^{ENUMERATOR}$")  # a box holding only the enumerator
LEADING = re.compile(rf"^{ENUMERATOR}\s*\S.{{2,}}")  # a line box starting with one

UNBOXED_LINES = {
    "computer_organization_exam_note_8.jpg": "·) Change from base 2ⁿ → 2ᵐ : 2ⁿ → 2 → 2ᵐ",
    "computer_organization_exam_note_9.jpg": "· N-type transistor :, · P-type transistor :, · NOT gate :, · NOR gate "
                                             "(and the circuit's annotations: 2,9V, p-type, out → 2,9V, OV, n-type)",
    "computer_organization_exam_note_16.jpg": "·) PC-relative : mem_addr = PC* + offset; ·) Indirect mode : mem_addr = "
                                              "mem [PC* + offset]; mem_addr = R0 + offset = x3001 + 3 = x3004",
    "computer_organization_exam_note_18.jpg": "· Use PC-relative addressing mode : addr = PC + offset",
    "lecture_algorithm_164.jpg": "& pattern s' → length; Output : true if",
    "lecture_algorithm_165.jpg": "·) Boyer Moore : go from right → left; · hash (a1 a2 … an) = a1 B^(n-1) + … + an "
                                 "where B is a prime (only its exponents are boxed)",
    "lecture_algorithm_168.jpg": "the page's first twelve lines (·) Clique … ·) Graph-representation : |V| x |V| matrix "
                                 "… edge connect row vertex with col vertex) and most of the matrix",
}


def complete_pages(pages: Sequence) -> list:
    """The pages whose labels box every line of text (those not in UNBOXED_LINES)."""
    return [p for p in pages if p.image_path.name not in UNBOXED_LINES]


def enumerator_boxes(pages: Sequence) -> Counter:
    """How often an enumerator is boxed apart from its line (a box of text 4+ characters long starts
    within two line heights to its right, on the same row) and how often inside the line's box."""
    from core.geometry import bbox, same_band

    counts: Counter = Counter()
    for page in pages:
        boxes = [bbox(line.points) for line in page.lines]
        for line, box in zip(page.lines, boxes, strict=True):
            text = line.text.strip()
            if LEADING.match(text):
                counts["inside"] += 1
            elif ALONE.match(text) and any(
                same_band(box, b) and 0 <= b[0] - box[2] < 2 * (box[3] - box[1]) and len(other.text.strip()) >= 4
                for other, b in zip(page.lines, boxes, strict=True) if other is not line
            ):
                counts["apart"] += 1
    return counts


def main() -> None:
    from devdata import NOTES_LABELS

    from core.labels import read_labels

    ap = argparse.ArgumentParser(description="enumerators boxed apart from their line vs inside it, per split")
    ap.add_argument("--labels", default=str(NOTES_LABELS))
    args = ap.parse_args()

    pages = read_labels(args.labels)
    print(json.dumps({split: dict(enumerator_boxes([p for p in pages if p.split == split]))
                      for split in sorted({p.split for p in pages})}))


if __name__ == "__main__":
    main()
