"""Latency graphs stitched from cached per-block ONNX exports.

Exporting a whole subnet with ``torch.onnx`` (tracing, ~0.1-0.2 s for a compact subnet) was the largest
share of a latency measurement (bench/results/latency_cost.md). The subnets of a search share their
blocks, so :class:`BlockExports` exports each piece of an OFA network (the stem, every block, the
layers after the last block) once per structure, for any input height and width, and joins the cached
pieces into the subnet's graph, whose input is given the subnet's size: the same operators in the same
order as the whole export (tested), a few ms once the pieces are cached. A piece is keyed by its
structure, not its weights: a cached piece keeps the weights of the model it was first exported from, so
a stitched graph is for timing only (a graph's latency does not depend on its weight values); never
deploy it. A model that is not one of OFA's network classes is exported whole. Measured on compact-mbv3;
on ofa-resnet50 the pieces are megabytes and the default budget evicts many of them before reuse."""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import nn

from .export import INPUT_NAME, OUTPUT_NAME, export_onnx


class _Tail(nn.Module):
    """The layers after the last block, run as the network's own ``forward`` runs them (a ``view`` flatten
    after layer ``flatten_after``, where it has one)."""

    def __init__(self, layers: Sequence[nn.Module], flatten_after: int | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.flatten_after = flatten_after

    def extra_repr(self) -> str:
        return f"flatten_after={self.flatten_after}"

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == self.flatten_after:
                x = x.view(x.size(0), -1)
        return x


def network_pieces(model: nn.Module) -> list[nn.Module] | None:
    """``model`` as a chain of pieces whose composition is its ``forward``, for OFA's MobileNetV3,
    ProxylessNASNets and ResNets (checked by identity of the ``forward`` they run); None for any other model."""
    try:
        from ofa.imagenet_classification.networks import MobileNetV3, ProxylessNASNets, ResNets
    except ImportError:
        return None
    forward = type(model).forward
    if forward is MobileNetV3.forward:
        tail = [model.final_expand_layer, model.global_avg_pool, model.feature_mix_layer, model.classifier]
        return [model.first_conv, *model.blocks, _Tail(tail, flatten_after=2)]
    if forward is ProxylessNASNets.forward:
        mix = [model.feature_mix_layer] if model.feature_mix_layer is not None else []
        return [model.first_conv, *model.blocks, _Tail([*mix, model.global_avg_pool, model.classifier])]
    if forward is ResNets.forward:
        return [*model.input_stem, model.max_pooling, *model.blocks, _Tail([model.global_avg_pool, model.classifier])]
    return None


def piece_key(piece: nn.Module, input_shape: tuple[int, ...]) -> tuple:
    """What a piece's graph depends on: its structure (modules, hyperparameters, tensor shapes) and ``input_shape``
    (N and C for a piece exported for any height and width, else N, C, H, W)."""
    shapes = tuple((name, tuple(t.shape)) for name, t in (*piece.named_parameters(), *piece.named_buffers()))
    return (type(piece).__qualname__, repr(piece), shapes, input_shape)


def _fixed_input(graph, nchw: tuple[int, ...]):
    """``graph``'s input with the height and width of ``nchw`` (the batch axis stays as exported)."""
    import onnx

    value = onnx.ValueInfoProto()
    value.CopyFrom(graph.input[0])
    dims = value.type.tensor_type.shape.dim
    for axis in (2, 3):
        dims[axis].Clear()
        dims[axis].dim_value = int(nchw[axis])
    return value


class _UnknownShape(Exception):
    """ONNX shape inference could not give a piece's output shape (the subnet is then exported whole)."""


def _output_shape(proto, nchw: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape of a piece's graph at input ``nchw`` (ONNX shape inference on its nodes, with the
    weights given as typed inputs rather than copied)."""
    import onnx

    graph = proto.graph
    weights = [onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in graph.initializer]
    light = onnx.helper.make_graph(graph.node, "shape", [_fixed_input(graph, nchw), *weights], graph.output)
    model = onnx.helper.make_model(light, opset_imports=proto.opset_import, ir_version=proto.ir_version)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:  # onnx raises its own InferenceError, and others for graphs it cannot read
        raise _UnknownShape from exc
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    if len(dims) != len(nchw) or min(dims[1:]) <= 0:
        raise _UnknownShape
    return (nchw[0], *dims[1:])


class BlockExports:
    """Per-piece ONNX exports, kept while their serialized size stays within ``max_bytes`` (least recently
    used dropped first), and the subnet graphs stitched from them.

    A piece is exported for any input height and width (where the TorchScript exporter is used), so the same
    block at another resolution is taken from the cache too; the stitched graph's input is then given the
    subnet's height and width."""

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = int(max_bytes)
        # key -> (ModelProto, output shape of a fixed-size piece | None, bytes, {input shape: output shape})
        self._pieces: OrderedDict[tuple, tuple] = OrderedDict()
        self._bytes = 0
        self.exported = 0  # pieces exported (cache misses)
        self.reused = 0  # pieces taken from the cache

    def __len__(self) -> int:
        return len(self._pieces)

    def _piece(self, piece: nn.Module, input_shape: tuple[int, ...]):
        """(graph, output shape) of ``piece`` at NCHW ``input_shape``, from the cache where it holds the piece
        for any height and width or for this shape, else exported."""
        import onnx

        any_size = piece_key(piece, input_shape[:2])  # repr and shapes of the piece, taken once:
        exact = (*any_size[:-1], input_shape)  # the same key with the whole input shape last
        key = any_size if any_size in self._pieces else exact
        hit = self._pieces.get(key)
        if hit is not None:
            self._pieces.move_to_end(key)
            self.reused += 1
        else:
            proto = onnx.load_from_string(export_onnx(piece, input_shape, any_size=True))
            dims = proto.graph.output[0].type.tensor_type.shape.dim
            fixed = all(d.HasField("dim_value") for d in dims[1:])
            sized = proto.graph.input[0].type.tensor_type.shape.dim[2].HasField("dim_value")
            key = exact if sized else any_size  # the dynamo fallback exports at this size only
            out = (input_shape[0], *(int(d.dim_value) for d in dims[1:])) if fixed else None
            hit = (proto, out, proto.ByteSize(), {})
            self._pieces[key] = hit
            self._bytes += hit[2]
            self.exported += 1
            while self._bytes > self.max_bytes and len(self._pieces) > 1:
                _, (_, _, size, _) = self._pieces.popitem(last=False)
                self._bytes -= size
        proto, out_shape, _, shapes = hit  # the output shapes met so far go with the piece when it is dropped
        if out_shape is None:
            out_shape = shapes.get(input_shape)
            if out_shape is None:
                out_shape = shapes[input_shape] = _output_shape(proto, input_shape)
        return proto, out_shape

    def export(self, model: nn.Module, input_shape: Sequence[int]) -> bytes:
        """The ONNX graph (bytes) whose latency stands for ``model``'s at NCHW ``input_shape``: stitched from
        cached pieces for an OFA network, else :func:`export_onnx` of the whole model."""
        nchw = tuple(int(d) for d in input_shape)
        pieces = network_pieces(model)
        if pieces is None:
            return export_onnx(model, nchw)
        import onnx

        graph = onnx.GraphProto(name="stitched")
        first = None
        previous, shape = INPUT_NAME, nchw
        for i, piece in enumerate(pieces):
            try:
                proto, shape = self._piece(piece, shape)  # the next piece's input shape is this one's output's
            except _UnknownShape:
                return export_onnx(model, nchw)
            first = proto if first is None else first
            if proto.opset_import != first.opset_import:  # pieces from two exporters (one fell back to dynamo)
                return export_onnx(model, nchw)
            last = i == len(pieces) - 1
            links = {INPUT_NAME: previous, OUTPUT_NAME: OUTPUT_NAME if last else f"p{i}.{OUTPUT_NAME}"}

            def rename(name: str, i: int = i, links: dict = links) -> str:
                return name if not name else links.get(name, f"p{i}.{name}")

            for tensor in proto.graph.initializer:
                copy = graph.initializer.add()
                copy.CopyFrom(tensor)
                copy.name = rename(tensor.name)
            for node in proto.graph.node:
                copy = graph.node.add()
                copy.CopyFrom(node)
                copy.name = f"p{i}.{node.name}"
                copy.input[:] = [rename(n) for n in node.input]
                copy.output[:] = [rename(n) for n in node.output]
            if last:
                graph.output.extend(proto.graph.output)
            previous = links[OUTPUT_NAME]
        graph.input.append(_fixed_input(first.graph, nchw))
        model_proto = onnx.helper.make_model(
            graph, opset_imports=first.opset_import, ir_version=first.ir_version, producer_name="shiftnas-stitched"
        )
        return model_proto.SerializeToString()
