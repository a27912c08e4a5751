"""Recognizer speed: the CTC networks on real crops, and a TrOCR-small-SIZED model.

The TrOCR model is built from configs with random weights (no hub): its speed, not its
output, is what is measured. Generation is forced to a fixed number of tokens so the numbers
compare batch sizes and the KV cache fairly. Prints one JSON object.

    OMP_NUM_THREADS=1 .venv/bin/python bench/recognizer_speed.py --limit 300 --trocr-lines 8
    .venv/bin/python bench/recognizer_speed.py --networks default --batches 1,4,8,16 --threads 2 --skip-trocr

By default every CTC network of the table (`core.recognize.networks`) and `default` are timed,
each network at its input height and a model directory (or `default`) at its own; --heights times
english_g2 at other heights instead (it was trained at 64 px and reads at 48; the PP-OCR networks
read only at the height they were trained at).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from devdata import NOTES_LABELS as NOTES

from core.recognize.networks import CTC, names, network
from core.settings import configure_process


def crnn_speed(crops, spec: str, heights, batch_sizes) -> list[dict]:
    """Lines/s of a CTC recognizer (a built-in network, `default` or a model dir) per input height
    (built-in networks only; a model dir reads at its own) and lines per forward pass."""
    from core.recognize.crnn import CRNNRecognizer, load_pretrained
    from core.recognize.registry import load

    if spec in names(CTC):
        model, alphabet = load_pretrained(spec)
        readers = [(h, CRNNRecognizer(model, alphabet, h)) for h in heights]
    else:
        rec = load(spec)
        readers = [(rec.img_height, rec)]
    rows = []
    for h, rec in readers:
        for bs in batch_sizes:
            rec.batch_size = bs
            rec.recognize(crops[:4])  # warm-up
            start = time.perf_counter()
            rec.recognize(crops)
            dt = time.perf_counter() - start
            rows.append({"engine": f"ctc {spec}", "img_height": h, "batch": bs, "lines": len(crops),
                         "lines_per_s": round(len(crops) / dt, 2)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def trocr_small_sized():
    """Random-weight VisionEncoderDecoder with trocr-small-handwritten's shapes (~62 M params)."""
    import torch
    from transformers import (
        TrOCRConfig,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
    )

    torch.manual_seed(0)
    enc = ViTConfig(image_size=network("trocr").input_height, patch_size=16, hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                    intermediate_size=1536, qkv_bias=True)
    dec = TrOCRConfig(vocab_size=64044, d_model=256, decoder_layers=6, decoder_attention_heads=8,
                      decoder_ffn_dim=1024, max_position_embeddings=512, pad_token_id=1, bos_token_id=0,
                      eos_token_id=2, decoder_start_token_id=2, tie_word_embeddings=False)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = 2, 1, 2
    model = VisionEncoderDecoderModel(config=cfg).eval()
    return model


def trocr_speed(n_lines: int, tokens: int, batch_sizes) -> list[dict]:
    import torch

    from core.recognize.trocr import quantize_int8

    model = trocr_small_sized()
    params = sum(p.numel() for p in model.parameters())
    size = network("trocr").input_height
    pixels = torch.randn(n_lines, 3, size, size)
    rows = []
    variants = [(True, bs, False) for bs in batch_sizes] + [(False, batch_sizes[0], False)]
    variants += [(True, bs, True) for bs in batch_sizes]  # int8 dynamic quantisation of the Linear layers
    for cache, bs, int8 in variants:
        run = quantize_int8(model) if int8 else model
        start = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, n_lines, bs):
                run.generate(pixels[i : i + bs], max_new_tokens=tokens, min_new_tokens=tokens, num_beams=1,
                             do_sample=False, use_cache=cache, decoder_start_token_id=2, pad_token_id=1,
                             eos_token_id=2)
        dt = time.perf_counter() - start
        rows.append({"engine": "trocr-small-sized (random init)", "params_m": round(params / 1e6, 1),
                     "batch": bs, "kv_cache": cache, "int8": int8, "tokens": tokens, "lines": n_lines,
                     "s_per_line": round(dt / n_lines, 3), "lines_per_s": round(n_lines / dt, 2)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(NOTES))
    ap.add_argument("--limit", type=int, default=300, help="eval lines for the CTC networks")
    ap.add_argument("--networks", default=",".join(["default", *names(CTC)]),
                    help="CTC recognizers to time: built-in networks, default or model dirs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--heights", default=None, help="e.g. 48,64: time english_g2 at these heights instead of its own")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--trocr-lines", type=int, default=8)
    ap.add_argument("--trocr-tokens", type=int, default=30)
    ap.add_argument("--trocr-batches", default="1,8")
    ap.add_argument("--skip-trocr", action="store_true")
    args = ap.parse_args()
    configure_process(threads=args.threads)
    import torch

    from core.evaluate import load_line_set
    from core.recognize.crnn import EASYOCR_GRAPH

    crops, _ = load_line_set(args.labels, "eval", args.limit)
    batches = [int(b) for b in args.batches.split(",")]
    out = {"threads": torch.get_num_threads(), "ctc": []}
    for spec in args.networks.split(","):
        entry = network(spec) if spec in names(CTC) else None
        heights = [entry.input_height] if entry else []
        if entry and entry.graph == EASYOCR_GRAPH and args.heights:
            heights = [int(h) for h in args.heights.split(",")]
        out["ctc"] += crnn_speed(crops, spec, heights, batches)
    if not args.skip_trocr:
        out["trocr"] = trocr_speed(args.trocr_lines, args.trocr_tokens, [int(b) for b in args.trocr_batches.split(",")])
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
