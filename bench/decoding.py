"""What beam search with the writer's character model buys a fine-tuned CRNN, on the notes.

Rebuilds the character model from the training lines of the model's own train/validation
page split (seeded as `core.train_recognizer` splits), chooses lm_weight/char_bonus on the
validation pages (`core.recognize.crnn.tune_decoding`, as fine-tuning does), then scores the
eval split by best path and by beam search at several beam widths. Prints one JSON object.

    OMP_NUM_THREADS=1 .venv/bin/python bench/decoding.py --recognizer /tmp/model-dir
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.evaluate import load_line_set, score_lines  # noqa: E402
from core.settings import configure_process  # noqa: E402

NOTES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "notes" / "labels.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(NOTES))
    ap.add_argument("--recognizer", required=True, help="a fine-tuned CRNN model directory")
    ap.add_argument("--orders", default="5", help="character model orders to try, comma-separated")
    ap.add_argument("--beams", default="4,8,16")
    ap.add_argument("--seed", type=int, default=0, help="the seed the model was trained with (its page split)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    configure_process(threads=args.threads)
    from core.recognize.charlm import CharNgramLM
    from core.recognize.crnn import load_crnn_dir, tune_decoding
    from core.train_recognizer import load_samples

    rec = load_crnn_dir(args.recognizer)
    data = load_samples(args.labels, "train", 0.1, None, args.seed)
    train_texts = [s.text for s in data.train]
    crops, texts = load_line_set(args.labels, "eval")
    frames = rec.all_frame_probs(crops)
    out: dict = {"recognizer": args.recognizer, "val_lines": len(data.val), "eval_lines": len(texts),
                 "eval_best_path": score_lines(texts, [rec.decode(f, {"beam": 0}).text for f in frames]), "runs": []}
    for order in (int(o) for o in args.orders.split(",")):
        lm = CharNgramLM.train(train_texts, order)
        chosen = tune_decoding(rec, [s.crop for s in data.val], [s.text for s in data.val], lm)
        rec.lm = CharNgramLM.train(train_texts + [s.text for s in data.val], order)
        for beam in (int(b) for b in args.beams.split(",")):
            start = time.perf_counter()
            hyps = [rec.decode(f, {**chosen, "beam": beam}).text for f in frames]
            ms = (time.perf_counter() - start) / len(frames) * 1000
            run = {"order": order, "beam": beam, "lm_weight": chosen["lm_weight"], "char_bonus": chosen["char_bonus"],
                   "val_cer_best_path": chosen["val_cer_greedy"], "val_cer_beam": chosen["val_cer_beam"],
                   "eval": score_lines(texts, hyps), "decode_ms_per_line": round(ms, 1)}
            out["runs"].append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
        out.setdefault("grid", {})[order] = chosen["tried"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
