"""Fill a PyTorch model from an ONNX graph of the same network, by execution order, checked by kind and shape.

Exported PaddleOCR graphs carry automatic parameter names (``conv2d_136.w_0``) and no module paths, and
onnx2torch cannot rebuild them trainably, so the weights are matched the way the two programs run: the graph's
weighted operations in graph (= forward) order are zipped with the model's weighted leaf modules in the order a
forward pass calls them, and every pair must agree in kind and shape. A numerical check against ONNX Runtime
(``pretrained/ppocr.py``) then catches what shapes alone cannot (several identically shaped convs).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..models.pplcnet import LearnableAffine

WEIGHTED_LEAVES = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.LayerNorm, nn.Linear, LearnableAffine)


@dataclass
class Record:
    """One weighted operation of the graph: ``kind`` is conv, conv_transpose, batch_norm, layer_norm, linear or
    affine (a scalar multiply then a scalar add)."""

    kind: str
    tensors: dict[str, np.ndarray]
    eps: float | None = None
    nodes: list[int] = field(default_factory=list)  # id() of the graph nodes it covers


def _kind_of(module: nn.Module) -> str:
    return {nn.Conv2d: "conv", nn.ConvTranspose2d: "conv_transpose", nn.BatchNorm2d: "batch_norm",
            nn.LayerNorm: "layer_norm", nn.Linear: "linear", LearnableAffine: "affine"}[type(module)]


class _Graph:
    def __init__(self, model) -> None:
        from onnx import numpy_helper

        self.nodes = list(model.graph.node)
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.consumers: dict[str, list] = defaultdict(list)
        self.producer: dict[str, object] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers[name].append(node)
            for name in node.output:
                self.producer[name] = node
            self._fold(node, numpy_helper)

    def _fold(self, node, numpy_helper) -> None:
        """Constants, and Identity/Reshape/Unsqueeze/Squeeze of constants (how Paddle's exporter spells
        parameters: a LayerNorm weight is ``Reshape(Constant)``, a transposed-conv bias sits behind an Identity)."""
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    self.consts[node.output[0]] = numpy_helper.to_array(attr.t)
            return
        if not node.input or node.input[0] not in self.consts:
            return
        x = self.consts[node.input[0]]
        if node.op_type == "Identity":
            self.consts[node.output[0]] = x
        elif node.op_type == "Reshape" and node.input[1] in self.consts:
            shape = [int(s) for s in self.consts[node.input[1]]]
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
            self.consts[node.output[0]] = x.reshape(shape)
        elif node.op_type in ("Unsqueeze", "Squeeze"):
            self.consts[node.output[0]] = x.reshape(-1) if x.size == 1 else np.squeeze(x)

    def const_input(self, node, index: int) -> np.ndarray | None:
        return self.consts.get(node.input[index]) if len(node.input) > index else None

    def other_const(self, node, name: str) -> np.ndarray | None:
        """The constant operand of a binary ``node`` whose other operand is ``name``."""
        others = [i for i in node.input if i != name]
        return self.consts.get(others[0]) if len(others) == 1 else None

    def single_consumer(self, name: str, op: str):
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None


def _trailing_bias(graph: _Graph, node, channels: int) -> tuple[np.ndarray | None, object]:
    """A bias written as a separate ``Add`` of a constant with ``channels`` elements after ``node`` (behind
    Identity nodes after PP-OCRv6's transposed convs)."""
    out = node.output[0]
    while (identity := graph.single_consumer(out, "Identity")) is not None:
        out = identity.output[0]
    add = graph.single_consumer(out, "Add")
    if add is None:
        return None, None
    bias = graph.other_const(add, out)
    if bias is None or bias.size != channels:
        return None, None
    return bias.reshape(channels), add


def read_records(path: str | Path) -> list[Record]:
    """The graph's weighted operations in graph order; raises CheckpointError for a file ONNX cannot parse."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not a model
        raise CheckpointError(f"{path} is not a readable ONNX model: {exc.__class__.__name__}: {exc}") from None
    graph = _Graph(model)
    records: list[Record] = []
    used: set[int] = set()
    for node in graph.nodes:
        if id(node) in used or node.op_type == "Constant":
            continue
        record = _record(graph, node)
        if record is not None:
            used.update(record.nodes)
            records.append(record)
    return records


def _record(graph: _Graph, node) -> Record | None:
    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        weight = graph.const_input(node, 1)
        if weight is None:
            return None
        channels = weight.shape[0] if op == "Conv" else weight.shape[1] * _group(node)
        bias, add = graph.const_input(node, 2), None
        if bias is None:
            bias, add = _trailing_bias(graph, node, channels)
        tensors = {"weight": weight} | ({"bias": bias} if bias is not None else {})
        return Record("conv" if op == "Conv" else "conv_transpose", tensors,
                      nodes=[id(node)] + ([id(add)] if add is not None else []))
    if op == "BatchNormalization":
        scale, bias, mean, var = (graph.const_input(node, i) for i in range(1, 5))
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        return Record("batch_norm", {"weight": scale, "bias": bias, "running_mean": mean, "running_var": var},
                      eps=float(eps), nodes=[id(node)])
    if op == "MatMul":
        weight = graph.const_input(node, 1)
        if weight is None or weight.ndim != 2:
            return None
        bias, add = _trailing_bias(graph, node, weight.shape[1])
        tensors = {"weight": weight.T} | ({"bias": bias} if bias is not None else {})
        return Record("linear", tensors, nodes=[id(node)] + ([id(add)] if add is not None else []))
    if op == "Div":
        return _layer_norm(graph, node)
    if op == "LayerNormalization":
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        return Record("layer_norm", {"weight": graph.const_input(node, 1), "bias": graph.const_input(node, 2)},
                      eps=float(eps), nodes=[id(node)])
    if op == "Mul":
        scale = next((graph.consts[i] for i in node.input if i in graph.consts), None)
        add = graph.single_consumer(node.output[0], "Add")
        if scale is None or scale.size != 1 or add is None:
            return None
        shift = graph.other_const(add, node.output[0])
        if shift is None or shift.size != 1:
            return None
        return Record("affine", {"scale": scale.reshape(1), "bias": shift.reshape(1)}, nodes=[id(node), id(add)])
    return None


def _group(node) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "group"), 1)


def _layer_norm(graph: _Graph, div) -> Record | None:
    """LayerNorm spelled out: (x - mean) / sqrt(var + eps) * gamma + beta (opsets before 17)."""
    sub, sqrt = graph.producer.get(div.input[0]), graph.producer.get(div.input[1])
    if sub is None or sqrt is None or sub.op_type != "Sub" or sqrt.op_type != "Sqrt":
        return None
    eps_add = graph.producer.get(sqrt.input[0])
    eps = graph.other_const(eps_add, eps_add.input[0]) if eps_add is not None and eps_add.op_type == "Add" else None
    mul = graph.single_consumer(div.output[0], "Mul")
    gamma = graph.other_const(mul, div.output[0]) if mul is not None else None
    add = graph.single_consumer(mul.output[0], "Add") if mul is not None else None
    beta = graph.other_const(add, mul.output[0]) if add is not None else None
    if gamma is None or beta is None or eps is None:
        return None
    return Record("layer_norm", {"weight": gamma.reshape(-1), "bias": beta.reshape(-1)}, eps=float(eps.reshape(-1)[0]),
                  nodes=[id(div), id(mul), id(add)])


def execution_order(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The model's weighted leaf modules in the order one forward pass calls them (each once)."""
    order: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, WEIGHTED_LEAVES):
            def hook(mod, _inputs, _output, name=name):
                if id(mod) not in seen:
                    seen.add(id(mod))
                    order.append((name, mod))
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return order


def fill_from_records(model: nn.Module, records: list[Record], example: torch.Tensor,
                      source: str = "the ONNX graph") -> dict[str, int]:
    """Copy ``records`` into ``model`` (see the module docstring). A scalar multiply-add the model has no affine
    layer for (e.g. an attention scale written as Mul + Add(0)) is skipped; any other disagreement raises
    CheckpointError naming the module. Returns counts per kind."""
    modules = execution_order(model, example)
    counts: dict[str, int] = defaultdict(int)
    pending = list(records)
    for name, module in modules:
        kind = _kind_of(module)
        while pending and pending[0].kind == "affine" and kind != "affine":
            pending.pop(0)
        if not pending:
            raise CheckpointError(f"{source} has fewer weighted operations than the model: nothing left for "
                                  f"'{name}' ({kind})")
        record = pending.pop(0)
        if record.kind != kind:
            raise CheckpointError(f"{source} does not match the model at '{name}': the graph has a {record.kind} "
                                  f"where the model has a {kind} (wrong model name or architecture?)")
        _copy(name, module, record, source)
        counts[kind] += 1
    leftover = [r.kind for r in pending if r.kind != "affine"]
    if leftover:
        raise CheckpointError(f"{source} has {len(leftover)} weighted operations the model lacks "
                              f"(first: {leftover[0]}); wrong model name or architecture?")
    return dict(counts)


def _copy(name: str, module: nn.Module, record: Record, source: str) -> None:
    own = dict(module.named_parameters(recurse=False)) | dict(module.named_buffers(recurse=False))
    own.pop("num_batches_tracked", None)
    if set(own) != set(record.tensors):
        raise CheckpointError(f"{source} does not match the model at '{name}': the graph's {record.kind} has "
                              f"{sorted(record.tensors)}, the model's {sorted(own)}")
    for key, value in record.tensors.items():
        if tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{source} does not match the model at '{name}.{key}': graph shape "
                                  f"{tuple(value.shape)}, model shape {tuple(own[key].shape)}")
        with torch.no_grad():
            own[key].copy_(torch.from_numpy(np.array(value, dtype=np.float32)))
    if record.eps is not None:
        module.eps = record.eps
