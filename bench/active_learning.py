"""Which 250 corrections teach most: first pages, random pages (three seeds), each of the app's queues.

Each row fine-tunes the default recognizer on `--size` labelled lines of the notes' train split,
chosen by one pick (core.train.data.PICKS), with and/or without self-training on the split's other
lines, for the same time budget, and scores it on the `eval` split. Validation comes out of the
`--size` lines for every pick but `random`, whose validation pages come on top (the learning
curve's convention): the table says so. With `--rounds K`, a queue pick is replayed as a user
corrects: K rounds of `--size`/K lines, each picked by the model fine-tuned on the rounds before
(the first by the base), that fine-tune (same settings) outside the measured run, which starts from
the base; with `--from-last-round` it starts from the last round's model instead, as the app's
Fine-tune page does by default (the active model), for twice the training time. Rows are appended to
`--results` (JSON lines) as they finish, so a long table can be built one row per call; the table
of every row in that file is printed at the end.

    .venv/bin/python bench/active_learning.py --rows first,random/0,random/1,random/2,fix-next,spread,pairs,sure-pairs \\
        --self-train both --threads 2 --work WORK_DIR --results WORK_DIR/active.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import zlib
from functools import partial
from pathlib import Path

from devdata import NOTES_LABELS as NOTES
from learning_curve import fine_tune_and_score

from core.evaluate import load_line_set
from core.settings import configure_process
from core.train.data import PICKS


def parse_rows(spec: str, self_train: str) -> list[tuple[str, int, bool]]:
    """'first,random/1' and 'off|on|both' → [(pick, seed, self_train), ...]."""
    modes = {"off": [False], "on": [True], "both": [False, True]}[self_train]
    rows = []
    for item in spec.split(","):
        pick, _, seed = item.strip().partition("/")
        if pick not in PICKS:
            raise SystemExit(f"unknown pick {pick!r} (known: {', '.join(PICKS)})")
        rows += [(pick, int(seed or 0), st) for st in modes]
    return rows


def table(results: list[dict]) -> str:
    """Markdown: one line per pick and self-training setting; random's seeds as mean ± spread (max - min)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        key = (r["size"], r["pick"], bool(r["self_training"]), r.get("transductive", False), r.get("recipe", ""),
               len(r.get("rounds", [])) + 1, r.get("from_last_round", False))
        groups.setdefault(key, []).append(r)
    out = ["| lines | pick | self-training | runs | cer_4plus | best path | lines learned (+ pseudo) | validation |",
           "|---|---|---|---|---|---|---|---|"]
    for (size, pick, st, trans, recipe, rounds, from_last), rows in sorted(groups.items()):
        cer = [r["eval_cer_4plus"] for r in rows]
        bp = [r["eval_cer_4plus_best_path"] for r in rows]
        spread = f" ± {(max(cer) - min(cer)) / 2:.4f}" if len(rows) > 1 else ""
        learned = [r["self_training"]["learned"] for r in rows if r["self_training"]]
        labelled = round(statistics.fmean(r["train_lines"] for r in rows)) - (round(statistics.fmean(learned))
                                                                               if learned else 0)
        extra = f" (+{round(statistics.fmean(learned))})" if learned else ""
        mode = ("on, eval pages in the pool" if trans else "on") if st else "off"
        mode += f", recipe {recipe}" if recipe else ""
        val = f"{rows[0].get('val_lines')} lines, {rows[0].get('val_pages')} pages" + (
            " (besides the lines)" if pick == "random" else "")
        pick += f", {rounds} rounds" if rounds > 1 else ""
        pick += ", the last from the round before's model" if from_last else ""
        out.append(f"| {size} | {pick} | {mode} | {len(rows)} | {statistics.fmean(cer):.4f}{spread} | "
                   f"{statistics.fmean(bp):.4f} | {labelled}{extra} | {val} |")
    return "\n".join(out)


def earlier_rounds(run, out: Path, size: int, rounds: int, base: str) -> tuple[list[dict], tuple[str, ...]]:
    """Fine-tune and score the models that pick rounds 2..K: round r's on the first r/K of the lines
    (a round's model kept in `out`-roundR by an earlier row is scored, not trained again).

    Returns their rows and the model that reads each of the K rounds (the base first)."""
    done: list[dict] = []
    models: tuple[str, ...] = (base,)
    for r in range(1, rounds):
        done.append(run(out.with_name(f"{out.name}-round{r}"), limit_lines=size * r // rounds, pick_model=models,
                        reuse=True))
        models += (done[-1]["model"],)
    return done, models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(NOTES))
    ap.add_argument("--size", type=int, default=250, help="labelled lines per run")
    ap.add_argument("--rows", default="first,random/0,random/1,random/2,fix-next,spread,pairs,sure-pairs",
                    help="comma-separated picks, random with /SEED")
    ap.add_argument("--self-train", choices=["off", "on", "both"], default="both")
    ap.add_argument("--transductive", action="store_true", help="self-training pool includes the eval pages")
    ap.add_argument("--rounds", type=int, default=1, help="queue picks: rounds of corrections, each read by the "
                    "model fine-tuned on the rounds before")
    ap.add_argument("--from-last-round", action="store_true", help="with --rounds: the measured fine-tune starts "
                    "from the last round's model, not the base")
    ap.add_argument("--max-minutes", type=float, default=15.0)
    ap.add_argument("--base", default="default")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (2 on a quiet 2-core machine)")
    ap.add_argument("--recipe", default="", help='JSON overrides of the training recipe, e.g. \'{"lr": 5e-4}\'')
    ap.add_argument("--work", required=True, help="where the fine-tuned models go (outside the repository)")
    ap.add_argument("--results", required=True, help="JSON lines file the rows are appended to")
    ap.add_argument("--table-only", action="store_true", help="print the table of --results and stop")
    args = ap.parse_args()
    results_file = Path(args.results)
    if not args.table_only:
        configure_process(threads=args.threads)
        eval_set = load_line_set(args.labels, "eval")
        for pick, seed, st in parse_rows(args.rows, args.self_train):
            name = f"{args.size}-{pick}-s{seed}{'-st' if st else ''}{'-trans' if args.transductive else ''}"
            name += f"-r{zlib.crc32(args.recipe.encode()) % 10**6}" if args.recipe else ""  # one folder per recipe
            name += f"-{args.rounds}rounds" if args.rounds > 1 else ""
            run = partial(fine_tune_and_score, args.labels, eval_set, max_minutes=args.max_minutes, seed=seed,
                          recipe=json.loads(args.recipe or "{}"), pick=pick, self_train=st,
                          transductive=args.transductive)
            rounds, models = earlier_rounds(partial(run, base=args.base), Path(args.work) / name, args.size,
                                            args.rounds, args.base)
            from_last = bool(args.from_last_round and rounds)
            final = run(Path(args.work) / (name + ("-from-last-round" if from_last else "")), limit_lines=args.size,
                        pick_model=models, base=models[-1] if from_last else args.base)
            row = {"size": args.size, "max_minutes": args.max_minutes, **({"recipe": args.recipe} if args.recipe else {}),
                   **final, **({"rounds": rounds} if rounds else {}),
                   **({"from_last_round": True} if from_last else {})}
            with open(results_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), file=sys.stderr, flush=True)
    rows = [json.loads(x) for x in results_file.read_text(encoding="utf-8").splitlines() if x.strip()]
    print(table(rows))


if __name__ == "__main__":
    main()
