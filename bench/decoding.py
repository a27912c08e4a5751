"""What beam search with the writer's character model buys a fine-tuned CRNN, on the notes.

Rebuilds the character model from the training lines of the model's own train/validation
page split (seeded as `core.train_recognizer` splits; `--limit-lines` as the model was trained),
chooses the decoding settings on the validation pages (`core.recognize.crnn.fit_character_model`,
as fine-tuning does), with and without the general-text prior, then scores the eval split by
best path and by beam search at several beam widths (and, when the validation pages chose a
word bonus, without it). Prints one JSON object.

    OMP_NUM_THREADS=1 .venv/bin/python bench/decoding.py --recognizer MODEL_DIR [--limit-lines 250]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from devdata import NOTES_LABELS as NOTES

from core.evaluate import load_line_set, score_lines
from core.settings import configure_process


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(NOTES))
    ap.add_argument("--recognizer", required=True, help="a fine-tuned CRNN model directory")
    ap.add_argument("--beams", default="4,8,16")
    ap.add_argument("--limit-lines", type=int, default=None, help="the model was trained on this many train lines")
    ap.add_argument("--seed", type=int, default=0, help="the seed the model was trained with (its page split)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", default=None,
                    help="also write a copy of the model that reads with the prior (a new model dir, for bench/digitize.py)")
    args = ap.parse_args()
    configure_process(threads=args.threads)
    from core.recognize.charlm import text_prior
    from core.recognize.crnn import fit_character_model, load_crnn_dir
    from core.train_recognizer import RECIPE, load_samples, validation_lines

    rec = load_crnn_dir(args.recognizer)
    data = load_samples(args.labels, "train", 0.1, args.limit_lines, args.seed)
    val = validation_lines(data, int(RECIPE["val_lines"]), args.seed)  # as fine-tuning scores it
    crops, texts = load_line_set(args.labels, "eval")
    frames = rec.all_frame_probs(crops)
    out: dict = {"recognizer": args.recognizer, "train_lines": len(data.train), "val_lines": len(val),
                 "eval_lines": len(texts),
                 "eval_best_path": score_lines(texts, [rec.decode(f, {"beam": 0}).text for f in frames]), "runs": []}
    for prior_name, prior in (("none", None), ("stdlib-docstrings", text_prior())):
        rec.lm, chosen = fit_character_model(rec, [s.text for s in data.train], [s.text for s in data.val],
                                             [(s.crop, s.text) for s in val], prior)
        for beam in (int(b) for b in args.beams.split(",")):
            start = time.perf_counter()
            hyps = [rec.decode(f, {**chosen, "beam": beam}).text for f in frames]
            ms = (time.perf_counter() - start) / len(frames) * 1000
            run = {"prior": prior_name, "beam": beam, "writer_share": chosen["writer_share"],
                   "lm_weight": chosen["lm_weight"], "char_bonus": chosen["char_bonus"],
                   "word_bonus": chosen["word_bonus"],
                   "val_cer_best_path": chosen["val_cer_greedy"], "val_cer_beam": chosen["val_cer_beam"],
                   "eval": score_lines(texts, hyps), "decode_ms_per_line": round(ms, 1)}
            if chosen["word_bonus"]:  # what the word list bought, at the same settings
                run["eval_no_word_bonus"] = score_lines(
                    texts, [rec.decode(f, {**chosen, "beam": beam, "word_bonus": 0.0}).text for f in frames])
            out["runs"].append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
        out.setdefault("grid", {})[prior_name] = chosen["tried"]
        if args.save and prior is not None:
            from core.modeldir import read_manifest, write_model_dir

            manifest = {**read_manifest(args.recognizer), "name": Path(args.save).name,
                        "decoding": {k: v for k, v in chosen.items() if k != "tried"},
                        "decoder_refit": f"bench/decoding.py on {args.recognizer} (same weights)"}
            rec.decoding = manifest["decoding"]
            write_model_dir(args.save, manifest, rec.save)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
