"""Where torch work runs: the one place that turns the `device` setting (INKSCRIBE_DEVICE) into a device.

`resolve_device` gives 'cpu', 'cuda', 'cuda:N' or 'mps' ('auto' picks CUDA, then MPS, else the CPU)
and refuses, with one sentence naming what this machine has, a device that is not here. Recognizers
move their network there (`core.recognize.BaseRecognizer`), the YOLO engine and trainer pass it to
ultralytics (`ultralytics_device`), and the recognizer trainer gets an `accelerate.Accelerator` for it
(`training_accelerator`). Mixed precision (float16) is used on CUDA only: on the CPU it would change
the numbers the recipes were measured with, and MPS runs in float32.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from core.errors import InkscribeError

DEVICE_WORDS = "auto, cpu, cuda, cuda:N or mps"
_CUDA = re.compile(r"cuda(:\d+)?")


class DeviceError(InkscribeError):
    """A device setting this machine cannot honour."""


def present_devices() -> list[str]:
    """Every device this machine could run on, CPU first (for messages)."""
    import torch
    from accelerate.utils import is_mps_available

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if is_mps_available():
        found.append("mps")
    return found


def _refuse(pref: str, why: str) -> DeviceError:
    return DeviceError(f"the device setting {pref!r} {why}; this machine has {', '.join(present_devices())}, "
                       "so set INKSCRIBE_DEVICE to auto or one of those")


def resolve_device(preference: str | None = None) -> str:
    """'cpu', 'cuda', 'cuda:N' or 'mps' for `preference` (None: the `device` setting; 'auto': best present)."""
    if preference is None:
        from core.settings import get_settings

        preference = get_settings().device
    pref = (preference or "auto").strip().lower()
    if pref == "cpu":
        return "cpu"  # no torch import: the CPU is always there
    if pref not in ("auto", "mps") and not _CUDA.fullmatch(pref):
        raise _refuse(pref, f"is not a device name ({DEVICE_WORDS})")
    present = present_devices()
    if pref == "auto":
        return "cuda" if "cuda:0" in present else "mps" if "mps" in present else "cpu"
    if pref in present or (pref == "cuda" and "cuda:0" in present):
        return pref
    raise _refuse(pref, "is not available")


def device_type(device: str) -> str:
    """'cuda' for 'cuda:1', else the device itself."""
    return device.split(":", 1)[0]


def mixed_precision(device: str) -> str:
    """accelerate's word for the precision used on `device`: 'fp16' on CUDA, 'no' elsewhere."""
    return "fp16" if device_type(device) == "cuda" else "no"


@contextlib.contextmanager
def autocast(device: str) -> Iterator[None]:
    """float16 autocast on CUDA; a no-op elsewhere, so CPU numbers stay exactly as they were."""
    if mixed_precision(device) == "no":
        yield
        return
    import torch

    with torch.autocast(device_type="cuda", dtype=torch.float16):
        yield


def ultralytics_device(device: str) -> str:
    """The same device as ultralytics spells it: 'cpu', 'mps' or a CUDA index ('0')."""
    if device_type(device) != "cuda":
        return device
    return device.split(":", 1)[1] if ":" in device else "0"


def training_accelerator(device: str):
    """An `accelerate.Accelerator` on `device` with its mixed precision (fp16 on CUDA, none elsewhere).

    One process only: the trainer's time budget, early stopping and checkpoints are decided by one
    process, so an `accelerate launch` over several GPUs (ranks that stop at different steps would
    hang) is refused rather than run wrongly.
    """
    from accelerate import Accelerator

    if device_type(device) == "cuda" and ":" in device:
        import torch

        torch.cuda.set_device(int(device.split(":", 1)[1]))  # an index-less "cuda" then lands there
    try:
        accelerator = Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision(device))
    except ValueError as exc:  # accelerate's state is per process and was set for another device
        raise DeviceError(f"this process already trained on another device; start a new one to train on "
                          f"{device} ({exc})") from exc
    if accelerator.num_processes > 1:
        raise DeviceError("recognizer training runs in one process; start it without `accelerate launch` "
                          "(it uses one GPU)")
    if accelerator.device.type != device_type(device):
        raise DeviceError(f"accelerate chose {accelerator.device} instead of {device}; set INKSCRIBE_DEVICE to "
                          f"{accelerator.device.type} or cpu")
    return accelerator


def to_cpu(obj):
    """`obj` (a tensor, or dicts/lists of them, such as a state dict) with every tensor on the CPU.

    Checkpoints and best-weight snapshots are stored this way so they load on a machine without the
    training device; tensors already on the CPU are returned as they are.
    """
    if hasattr(obj, "detach") and hasattr(obj, "device"):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        out = type(obj)((k, to_cpu(v)) for k, v in obj.items())  # a state dict stays an OrderedDict
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata  # layer versions load_state_dict reads
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj
