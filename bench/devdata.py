"""Where the development data sets lie: beside the checkout, never inside it (see CONTRIBUTING.md).

Benchmarks default to the notes data set's labels; pass `--labels LABELS` to use another.
"""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
NOTES = SHARED_DATA / "notes"  # one writer's notes: benchmarks only, never shipped weights
NOTES_LABELS = NOTES / "labels.jsonl"
NOTES_PDFS = NOTES / "pdfs"
