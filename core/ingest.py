"""Ingest: PDFs and images in, RGB page images out, one page at a time so memory stays flat.

Everything is checked before work starts (`inspect_source`), so a bad file fails with one
clear sentence before anything is written anywhere.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from core.errors import BadInputError
from core.settings import get_settings

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
PDF_MAGIC = b"%PDF-"
IMAGE_MAGICS = {
    b"\x89PNG": "png",
    b"\xff\xd8\xff": "jpeg",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
    b"BM": "bmp",
    b"RIFF": "webp",
}


@dataclass(frozen=True)
class SourceInfo:
    path: Path
    kind: str  # "pdf" or "image"
    pages: int


@dataclass
class PageImage:
    source: str
    index: int  # 1-based page number within the source
    image: Image.Image | None  # None for a page skipped on purpose (see iter_pages)


def sniff(path: Path) -> str:
    """'pdf' or 'image' by content, never by file name."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if not head:
        raise BadInputError(f"{path.name}: the file is empty")
    if PDF_MAGIC in head[:1024]:
        return "pdf"
    for magic in IMAGE_MAGICS:
        if head.startswith(magic):
            return "image"
    raise BadInputError(f"{path.name}: not a PDF or an image (PNG, JPEG, TIFF, BMP, WebP)")


def inspect_source(path: str | Path) -> SourceInfo:
    """Check that a file can be read and count its pages, without rendering anything."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: no such file")
    if not p.is_file():
        raise BadInputError(f"{p}: not a file")
    kind = sniff(p)
    if kind == "pdf":
        return SourceInfo(p, "pdf", _pdf_page_count(p))
    with _open_image(p) as img:
        frames = getattr(img, "n_frames", 1)
        limit = get_settings().max_pdf_pages
        if frames > limit:
            raise BadInputError(f"{p.name}: {frames} frames is more than the limit of {limit} (INKSCRIBE_MAX_PDF_PAGES)")
        for n in range(1, frames):  # every frame has its own size: check them all before decoding any
            _seek_checked(img, n, p)
    return SourceInfo(p, "image", frames)


def _seek_checked(img: Image.Image, n: int, path: Path) -> None:
    """Go to frame `n` (no decoding yet) and refuse it when it is too large to decode safely."""
    try:
        img.seek(n)
    except Exception as exc:
        raise BadInputError(f"{path.name}: the image is damaged or truncated") from exc
    if img.width * img.height > get_settings().max_image_pixels:
        raise BadInputError(f"{path.name}: frame {n + 1} is {img.width}×{img.height} pixels, too large to decode safely")


def _pdf_info(path: Path, last_page: int | None = None) -> dict:
    from pdf2image import pdfinfo_from_path
    from pdf2image.exceptions import PDFInfoNotInstalledError, PDFPageCountError, PDFSyntaxError

    try:
        # An absolute path: a file named "-something.pdf" must not reach poppler as an option.
        return pdfinfo_from_path(str(path.absolute()), timeout=30, first_page=1 if last_page else None,
                                 last_page=last_page)
    except PDFInfoNotInstalledError as exc:
        raise BadInputError("poppler is not installed (pdfinfo/pdftoppm missing): see README") from exc
    except (PDFPageCountError, PDFSyntaxError, ValueError, UnicodeDecodeError) as exc:
        msg = str(exc).lower()
        if "password" in msg or "encrypt" in msg:
            raise BadInputError(f"{path.name}: the PDF is password-protected; remove the password and try again") from exc
        if "page count 0" in msg or "wrong page range" in msg:
            raise BadInputError(f"{path.name}: the PDF has no pages") from exc
        raise BadInputError(f"{path.name}: the PDF is damaged or unreadable") from exc
    except Exception as exc:  # poppler timeouts surface as assorted errors
        raise BadInputError(f"{path.name}: the PDF could not be read ({type(exc).__name__})") from exc


def _pdf_page_count(path: Path) -> int:
    settings = get_settings()
    info = _pdf_info(path)
    pages = int(info.get("Pages", 0) or 0)
    if pages <= 0:
        raise BadInputError(f"{path.name}: the PDF has no pages")
    if pages > settings.max_pdf_pages:
        raise BadInputError(
            f"{path.name}: {pages} pages is more than the limit of {settings.max_pdf_pages} "
            "(INKSCRIBE_MAX_PDF_PAGES); split the PDF"
        )
    # `Page size` is page 1 only; every page can have its own size, so ask for all of them.
    sizes = [str(v) for k, v in _pdf_info(path, last_page=pages).items() if k.startswith("Page") and k.endswith("size")]
    for n, size in enumerate(sizes or [str(info.get("Page size", ""))], 1):
        try:
            w_pt, h_pt = (float(v) for v in size.split(" pts")[0].split(" x "))
        except ValueError:
            w_pt = h_pt = 0.0
        pixels = (w_pt / 72 * settings.pdf_dpi) * (h_pt / 72 * settings.pdf_dpi)
        if pixels > settings.max_image_pixels:
            raise BadInputError(
                f"{path.name}: page {n} is {w_pt:.0f}×{h_pt:.0f} pt, too large to render safely at {settings.pdf_dpi} dpi"
            )
    return pages


def _open_image(path: Path) -> Image.Image:
    limit = get_settings().max_image_pixels
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if img.width * img.height > limit:
                raise BadInputError(f"{path.name}: {img.width}×{img.height} pixels is too large to decode safely")
            return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInputError(f"{path.name}: the image is too large to decode safely") from exc
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(f"{path.name}: the image is damaged or not supported") from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """Upright 8-bit RGB whatever came in: EXIF rotation, CMYK, 16-bit, palette, alpha on white."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray((arr / top * 255).clip(0, 255).astype("uint8"), "L")
    if img.mode == "F":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def iter_pages(path: str | Path, info: SourceInfo | None = None, skip: Collection[int] = ()) -> Iterator[PageImage]:
    """Yield the pages of one source as RGB images, rendering one PDF page at a time.

    Page numbers in `skip` are yielded with `image=None` and not rendered (a resumed run).
    """
    info = info or inspect_source(path)
    p = info.path
    if info.kind == "pdf":
        from pdf2image import convert_from_path

        dpi = get_settings().pdf_dpi
        for n in range(1, info.pages + 1):
            if n in skip:
                yield PageImage(p.name, n, None)
                continue
            try:
                rendered = convert_from_path(str(p.absolute()), dpi=dpi, first_page=n, last_page=n, timeout=120)
            except Exception as exc:
                raise BadInputError(f"{p.name}: page {n} could not be rendered ({type(exc).__name__})") from exc
            if not rendered:
                raise BadInputError(f"{p.name}: page {n} could not be rendered")
            yield PageImage(p.name, n, to_rgb(rendered[0]))
        return
    with _open_image(p) as img:
        for n in range(info.pages):
            if n + 1 in skip:
                yield PageImage(p.name, n + 1, None)
                continue
            _seek_checked(img, n, p)
            try:
                img.load()
                page = to_rgb(img.copy())
            except Exception as exc:
                raise BadInputError(f"{p.name}: the image is damaged or truncated") from exc
            yield PageImage(p.name, n + 1, page)


def load_image(path: str | Path) -> Image.Image:
    """The first page of a source as upright RGB: the one loader of page images.

    Training, evaluation, review, dataset crops and imports all open pages here, so a phone
    photo's EXIF rotation and the size limits apply everywhere and every stage cuts the same pixels.
    """
    return next(iter_pages(path)).image
