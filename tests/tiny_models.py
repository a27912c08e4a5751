"""Tiny models and synthetic data for recognizer tests: no network, seconds to build.

A TrOCR from configs with a character-level tokenizer built locally (see ../shared/recipes.md,
"TrOCR without the hub"), synthetic PIL-rendered text lines, and a labels.jsonl writer.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
]
CHARSET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-+=()→≥"

LINES16 = [
    "hello world", "stack frame", "left char R1", "right addr", "x = y + 2", "loop until done",
    "bft ≥ right", "cache miss", "page table", "a → b", "binary search", "merge sort",
    "heap push", "queue pop", "tree depth", "hash map",
]


def font(size: int = 28) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in FONT_CANDIDATES:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def render_line(text: str, size: int = 28, pad: int = 8) -> Image.Image:
    """Black text on white, tightly cropped with a little margin, RGB like a real crop."""
    f = font(size)
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=f)
    img = Image.new("RGB", (x1 - x0 + 2 * pad, max(size, y1 - y0) + 2 * pad), "white")
    ImageDraw.Draw(img).text((pad - x0, pad - y0), text, fill="black", font=f)
    return img


def write_labels(folder: Path, pages: list[list[str]], split: str = "train", size: int = 28) -> Path:
    """A labels.jsonl with one rendered page per list of lines (lines stacked vertically)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pages").mkdir(exist_ok=True)
    rows = []
    for p, texts in enumerate(pages):
        crops = [render_line(t, size) for t in texts]
        width = max(c.width for c in crops) + 40
        height = sum(c.height + 10 for c in crops) + 40
        page = Image.new("RGB", (width, height), "white")
        y, lines = 20, []
        for t, c in zip(texts, crops, strict=True):
            page.paste(c, (20, y))
            lines.append({"points": [[20, y], [20 + c.width, y], [20 + c.width, y + c.height], [20, y + c.height]],
                          "text": t})
            y += c.height + 10
        name = f"pages/p{p}.png"
        page.save(folder / name)
        rows.append({"page": name, "doc": f"doc{p}", "split": split, "lines": lines})
    path = folder / "labels.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def char_tokenizer(charset: str = CHARSET):
    """A PreTrainedTokenizerFast over single characters (ids 0-3: <pad> <s> </s> <unk>)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials)}
    for ch in dict.fromkeys(charset):
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def tiny_trocr(charset: str = CHARSET, image_size: tuple[int, int] = (32, 256), seed: int = 0):
    """(model, processor) of a ~0.3 M-parameter TrOCR built from configs."""
    import torch
    from transformers import (
        TrOCRConfig,
        TrOCRProcessor,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    torch.manual_seed(seed)
    tok = char_tokenizer(charset)
    enc = ViTConfig(image_size=image_size, patch_size=(image_size[0], 8), num_channels=3, hidden_size=64,
                    num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    dec = TrOCRConfig(vocab_size=len(tok), d_model=64, decoder_layers=2, decoder_attention_heads=2,
                      decoder_ffn_dim=128, max_position_embeddings=96, pad_token_id=0, bos_token_id=1,
                      eos_token_id=2, decoder_start_token_id=1, tie_word_embeddings=False)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = 1, 0, 2
    model = VisionEncoderDecoderModel(config=cfg)
    gen = model.generation_config
    gen.decoder_start_token_id, gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = 1, 0, 2, 1
    gen.max_length = None
    image_processor = ViTImageProcessor(size={"height": image_size[0], "width": image_size[1]}, do_resize=True,
                                        do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = TrOCRProcessor(image_processor=image_processor, tokenizer=tok)
    return model, processor


def tiny_trocr_dir(dest: Path, **kwargs) -> Path:
    """A tiny TrOCR saved as an Inkscribe model directory."""
    from core.modeldir import write_model_dir
    from core.recognize.trocr import TrOCRRecognizer

    model, processor = tiny_trocr(**kwargs)
    rec = TrOCRRecognizer(model, processor, name=dest.name)
    return write_model_dir(dest, {"kind": "recognizer", "engine": "trocr", "name": dest.name, "base": "tiny-config"},
                           rec.save)
