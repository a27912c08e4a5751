"""Training throughput: line crops per second through one fine-tuning step (forward, CTC, backward, AdamW).

Times the trainer's own `CTCAdapter.loss` on width-bucketed batches of the notes' train lines,
after two warm-up batches, for each recipe variant given. Prints one JSON object.

    OMP_NUM_THREADS=1 .venv/bin/python bench/train_speed.py --variants '{}' '{"freeze_convs": 10}'
    .venv/bin/python bench/train_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from devdata import NOTES_LABELS as NOTES

from core.settings import configure_process


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(NOTES))
    ap.add_argument("--base", default="default")
    ap.add_argument("--lines", type=int, default=600, help="train lines to draw batches from")
    ap.add_argument("--batches", type=int, default=14, help="timed batches (after 2 warm-up ones)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", nargs="*", default=["{}"], help="JSON recipe overrides, one per variant")
    ap.add_argument("--bf16", action="store_true", help="also time each variant under CPU bfloat16 autocast")
    args = ap.parse_args()
    configure_process(threads=args.threads)
    import torch

    from core.recognize.registry import resolve
    from core.train.ctc import CTCAdapter
    from core.train_recognizer import default_recipe, load_samples

    resolved = resolve(args.base)
    data = load_samples(args.labels, "train", 0.1, args.lines, 0)
    results = []
    for variant in args.variants:
        for bf16 in ([False, True] if args.bf16 else [False]):
            recipe = {**default_recipe(resolved), **json.loads(variant)}
            torch.manual_seed(0)
            adapter = CTCAdapter(resolved, recipe, [s.text for s in data.train])
            adapter.train_mode()
            optim = torch.optim.AdamW(adapter.params(), lr=1e-4)
            rng = random.Random(0)
            batches = adapter.batches(data.train, rng)[: args.batches + 2]
            lines, start = 0, 0.0
            for i, batch in enumerate(batches):
                if i == 2:
                    lines, start = 0, time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = adapter.loss([data.train[j] for j in batch], rng)
                optim.zero_grad(set_to_none=True)
                loss.float().backward()
                optim.step()
                lines += len(batch)
            seconds = time.perf_counter() - start
            results.append({"variant": json.loads(variant), "bf16": bf16, "lines": lines,
                            "lines_per_s": round(lines / seconds, 2),
                            "trainable_params": sum(p.numel() for p in adapter.params())})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"base": resolved, "threads": torch.get_num_threads(), "batch_size": recipe["batch_size"],
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
