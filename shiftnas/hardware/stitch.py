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
on ofa-resnet50 the pieces are megabytes and the default budget evicts many of them before reuse.

A :class:`SubnetRecipe` (:func:`subnet_recipe`: the supernet's active net config, no module built) keys the
pieces by their OFA layer configs instead, so a subnet whose pieces are all cached is stitched without
being extracted (extraction builds every module of the subnet anew: ~18-30 ms, the largest cost left in a
measurement once its pieces are cached); the subnet is built only when a piece is missing."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

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


def piece_structure(piece: nn.Module) -> tuple:
    """What a piece's graph depends on besides its input shape: its modules, hyperparameters and tensor shapes."""
    shapes = tuple((name, tuple(t.shape)) for name, t in (*piece.named_parameters(), *piece.named_buffers()))
    return (type(piece).__qualname__, repr(piece), shapes)


def piece_key(piece: nn.Module, input_shape: tuple[int, ...]) -> tuple:
    """:func:`piece_structure` and ``input_shape`` (N and C for a piece exported for any height and width, else
    N, C, H, W)."""
    return (*piece_structure(piece), input_shape)


@dataclass(frozen=True)
class SubnetRecipe:
    """A subnet as OFA's net config (``get_active_net_config()``: layer configs, no modules) and ``build``, which
    makes the subnet itself; :class:`BlockExports` builds it only when a piece is not cached."""

    config: dict[str, Any]
    build: Callable[[], nn.Module]


Subnet = nn.Module | SubnetRecipe  # what the latency exports take


def subnet_recipe(space: Any, supernet: nn.Module, arch: Any) -> Subnet:
    """``arch``'s subnet of ``supernet`` as a :class:`SubnetRecipe` (``space.extract`` on a cache miss), or the
    extracted subnet where the supernet gives no net config."""
    if not callable(getattr(supernet, "get_active_net_config", None)):
        return space.extract(supernet, arch)
    space.activate(supernet, arch)
    return SubnetRecipe(supernet.get_active_net_config(), lambda: space.extract(supernet, arch))


def config_structures(config: dict[str, Any]) -> list[tuple] | None:
    """The structure of each piece :func:`network_pieces` gives for the network built from OFA net ``config``,
    from the layer configs (which determine the modules: OFA builds its networks from them); None for a
    network ``network_pieces`` does not split. A ``tail`` piece holds the layers after the last block."""
    name = config.get("name")
    try:
        if name == "MobileNetV3":
            tail = [config["final_expand_layer"], config["feature_mix_layer"], config["classifier"]]
            pieces = [config["first_conv"], *config["blocks"]]
        elif name == "ProxylessNASNets":
            tail = [config.get("feature_mix_layer"), config["classifier"]]
            pieces = [config["first_conv"], *config["blocks"]]
        elif name == "ResNets":
            tail = [config["classifier"]]
            pieces = [*config["input_stem"], "max_pooling", *config["blocks"]]
        else:
            return None
    except KeyError:
        return None
    common = ("ofa-config", name, repr(config.get("bn")))
    return [(*common, "piece", repr(p)) for p in pieces] + [(*common, "tail", repr(tail))]


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


class _ExportWhole(Exception):
    """The subnet is exported whole: ONNX shape inference could not give a piece's output shape, or a built
    recipe's pieces are not as many as its config's."""


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
        raise _ExportWhole from exc
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    if len(dims) != len(nchw) or min(dims[1:]) <= 0:
        raise _ExportWhole
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

    def _piece(self, structure: tuple, module: Callable[[], nn.Module], input_shape: tuple[int, ...]):
        """(graph, output shape) of the piece of ``structure`` at NCHW ``input_shape``, from the cache where it holds
        the piece for any height and width or for this shape, else exported from ``module()``."""
        import onnx

        any_size = (*structure, input_shape[:2])
        exact = (*structure, input_shape)
        key = any_size if any_size in self._pieces else exact
        hit = self._pieces.get(key)
        if hit is not None:
            self._pieces.move_to_end(key)
            self.reused += 1
        else:
            proto = onnx.load_from_string(export_onnx(module(), input_shape, any_size=True))
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

    def export(self, subnet: Subnet, input_shape: Sequence[int]) -> bytes:
        """The ONNX graph (bytes) whose latency stands for ``subnet``'s at NCHW ``input_shape``: stitched from
        cached pieces for an OFA network (a :class:`SubnetRecipe` is built only if a piece is missing or the graph is
        exported whole), else :func:`export_onnx` of the whole model."""
        nchw = tuple(int(d) for d in input_shape)
        built = _Built(subnet)
        structures = config_structures(subnet.config) if isinstance(subnet, SubnetRecipe) else None
        if structures is None:
            pieces = built.pieces()
            if not pieces:
                return export_onnx(built.model(), nchw)
            structures = [piece_structure(p) for p in pieces]
        try:
            return self._stitch(structures, built, nchw)
        except _ExportWhole:
            return export_onnx(built.model(), nchw)

    def _stitch(self, structures: list[tuple], built: _Built, nchw: tuple[int, ...]) -> bytes:
        """The graph joined from the pieces of ``structures`` (exported from ``built``'s where not cached)."""
        import onnx

        graph = onnx.GraphProto(name="stitched")
        first = None
        previous, shape = INPUT_NAME, nchw
        for i, structure in enumerate(structures):
            # the next piece's input shape is this one's output's
            proto, shape = self._piece(structure, lambda i=i: built.piece(i, len(structures)), shape)
            first = proto if first is None else first
            if proto.opset_import != first.opset_import:  # pieces from two exporters (one fell back to dynamo)
                raise _ExportWhole
            last = i == len(structures) - 1
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


class _Built:
    """A subnet's model and pieces, built from a :class:`SubnetRecipe` on first need (a model is taken as is)."""

    def __init__(self, subnet: Subnet) -> None:
        self.recipe = subnet if isinstance(subnet, SubnetRecipe) else None
        self._model = None if isinstance(subnet, SubnetRecipe) else subnet
        self._pieces: list[nn.Module] | None = None

    def model(self) -> nn.Module:
        if self._model is None:
            self._model = self.recipe.build()
        return self._model

    def pieces(self) -> list[nn.Module]:
        """:func:`network_pieces` of the model, taken once (empty for a model it does not split)."""
        if self._pieces is None:
            self._pieces = network_pieces(self.model()) or []
        return self._pieces

    def piece(self, i: int, count: int) -> nn.Module:
        """The ``i``-th of the model's ``count`` pieces (a count other than the config's: exported whole)."""
        if len(self.pieces()) != count:
            raise _ExportWhole
        return self._pieces[i]
