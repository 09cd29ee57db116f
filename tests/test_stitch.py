"""Latency graphs stitched from cached per-block exports (hardware/stitch.py): the same operators as the
whole export, the model's function where the pieces came from it, reuse across subnets, and the fallback."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from shiftnas.hardware import LatencyProfiler, export_onnx
from shiftnas.hardware.quantize import deployed_onnx
from shiftnas.hardware.stitch import (
    BlockExports,
    SubnetRecipe,
    config_structures,
    network_pieces,
    piece_key,
    piece_structure,
    subnet_recipe,
)
from shiftnas.search_spaces import get_space


def _ops(data: bytes) -> list[tuple]:
    """The graph's operators in order with their attributes (kernel shapes, strides, groups, ...), without the
    Identity nodes the whole export adds for shared constants."""
    graph = onnx.load_from_string(data).graph
    return [
        (n.op_type, sorted((a.name, str(onnx.helper.get_attribute_value(a))) for a in n.attribute))
        for n in graph.node
        if n.op_type != "Identity"
    ]


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _expected(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """What a graph stitched with a fresh cache computes: each piece as the first piece of its key (identical
    blocks of one network share one export, and so its weights)."""
    first: dict = {}
    y = torch.from_numpy(x)
    with torch.no_grad():
        for piece in network_pieces(model):
            key = piece_key(piece, (1, y.shape[1]))  # exported for any height and width
            y = first.setdefault(key, piece).eval()(y)
    return y.numpy()


@pytest.mark.parametrize("name", ["compact-mbv3", "ofa-mbv3", "ofa-proxyless", "ofa-resnet50"])
def test_stitched_graph_is_the_whole_export_op_for_op(name):
    space = get_space(name)
    torch.manual_seed(0)
    supernet = space.build_supernet(10).eval()
    shared = BlockExports()
    first = space.sample(np.random.default_rng(0))
    genome = space.encode(first)
    lo, hi = space.bounds
    genome[-1] = lo[-1] if genome[-1] != lo[-1] else hi[-1]
    second = space.decode(space.repair(genome))  # the first with its last gene changed: they share early pieces
    assert second.key() != first.key() and space.input_size(second) == space.input_size(first)
    for i, arch in enumerate((first, second)):
        sub = space.extract(supernet, arch)
        chw = tuple(space.input_size(arch))
        assert network_pieces(sub) is not None, f"{type(sub).__name__} is exported whole"
        whole = export_onnx(sub, (1, *chw))
        stitched = BlockExports().export(sub, (1, *chw))
        onnx.checker.check_model(onnx.load_from_string(stitched))
        assert _ops(stitched) == _ops(whole)
        x = np.random.default_rng(i).standard_normal((2, *chw)).astype(np.float32)  # batch 2: the batch axis is dynamic
        np.testing.assert_allclose(_run(stitched, x), _expected(sub, x), atol=1e-5, rtol=1e-4)
        alone = BlockExports()
        alone.export(sub, (1, *chw))  # the pieces this subnet needs, from no cache
        before = shared.exported
        assert _ops(shared.export(sub, (1, *chw))) == _ops(whole)
        if i == 1:  # the second subnet takes some of its pieces (the stem at least) from the first's
            assert shared.exported - before < alone.exported
        exported = shared.exported
        shared.export(sub, (1, *chw))  # the same subnet again: every piece from the cache
        assert shared.exported == exported


@pytest.mark.parametrize("name", ["compact-mbv3", "ofa-mbv3", "ofa-proxyless", "ofa-resnet50"])
def test_a_subnet_at_another_resolution_is_stitched_from_the_same_pieces(name):
    space = get_space(name)
    torch.manual_seed(0)
    supernet = space.build_supernet(10).eval()
    arch = space.sample(np.random.default_rng(3))
    low, high = min(space.resolutions), max(space.resolutions)
    blocks = BlockExports()
    blocks.export(space.extract(supernet, dataclasses.replace(arch, resolution=low)), (1, 3, low, low))
    exported = blocks.exported
    sub = space.extract(supernet, dataclasses.replace(arch, resolution=high))
    chw = tuple(space.input_size(dataclasses.replace(arch, resolution=high)))
    stitched = blocks.export(sub, (1, *chw))
    assert blocks.exported == exported  # every piece from the cache, exported at the other resolution
    assert _ops(stitched) == _ops(export_onnx(sub, (1, *chw)))
    dims = onnx.load_from_string(stitched).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == list(chw) and dims[0].dim_param == "batch"
    x = np.random.default_rng(0).standard_normal((2, *chw)).astype(np.float32)
    np.testing.assert_allclose(_run(stitched, x), _expected(sub, x), atol=1e-5, rtol=1e-4)  # one supernet's weights
    with pytest.raises(Exception, match="(?i)dim|shape|invalid"):  # the graph is fixed at the subnet's size
        _run(stitched, x[:, :, :low, :low])


def test_any_other_model_is_exported_whole():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    assert network_pieces(model) is None
    blocks = BlockExports()
    data = blocks.export(model, (1, 1, 8, 8))
    assert len(blocks) == 0 and _ops(data) == _ops(export_onnx(model, (1, 1, 8, 8)))
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(_run(data, x), model.eval()(torch.from_numpy(x)).numpy(), atol=1e-6)


def test_the_cache_stays_within_its_size(compact_space, trained_supernet):
    budget = 3_000_000  # about one compact subnet's pieces (2 kB - 1.2 MB each)
    blocks = BlockExports(max_bytes=budget)
    rng = np.random.default_rng(1)
    for _ in range(3):
        arch = compact_space.sample(rng)
        sub = compact_space.extract(trained_supernet[0], arch)
        chw = tuple(compact_space.input_size(arch))
        assert _ops(blocks.export(sub, (1, *chw))) == _ops(export_onnx(sub, (1, *chw)))
        kept = sum(entry[2] for entry in blocks._pieces.values())
        assert blocks._bytes == kept <= budget
    assert 1 < len(blocks) < blocks.exported  # several kept, older ones dropped


def test_the_profiler_measures_stitched_graphs_also_in_int8(compact_space, trained_supernet):
    arch = compact_space.sample(np.random.default_rng(2))
    sub = compact_space.extract(trained_supernet[0], arch)
    chw = tuple(compact_space.input_size(arch))
    profiler = LatencyProfiler()
    fp32 = onnx.load_from_string(profiler.export(sub, chw))
    assert fp32.producer_name == "shiftnas-stitched" and len(profiler.blocks) > 0
    blocks = BlockExports()
    int8 = deployed_onnx(sub, (1, *chw), "int8", blocks=blocks)
    ops = [op for op, _ in _ops(int8)]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and len(blocks) > 0
    whole_int8 = deployed_onnx(sub, (1, *chw), "int8")
    assert sorted(ops) == sorted(op for op, _ in _ops(whole_int8))


class _CountingRecipe:
    """A real recipe of ``arch`` whose builds are counted."""

    def __init__(self, space, supernet, arch) -> None:
        self.builds = 0
        recipe = subnet_recipe(space, supernet, arch)
        assert isinstance(recipe, SubnetRecipe)

        def build() -> nn.Module:
            self.builds += 1
            return recipe.build()

        self.recipe = SubnetRecipe(recipe.config, build)


@pytest.mark.parametrize("name", ["compact-mbv3", "ofa-mbv3", "ofa-proxyless", "ofa-resnet50"])
def test_a_recipe_is_stitched_from_its_config_and_built_only_for_a_missing_piece(name):
    space = get_space(name)
    torch.manual_seed(0)
    supernet = space.build_supernet(10).eval()
    rng = np.random.default_rng(5)
    archs = [space.sample(rng) for _ in range(6)]
    config_keys, module_keys = [], []
    for arch in archs:  # the config's pieces group exactly as the extracted subnet's modules do
        sub = space.extract(supernet, arch)
        config_keys += config_structures(subnet_recipe(space, supernet, arch).config)
        module_keys += [piece_structure(p) for p in network_pieces(sub)]
    assert len(config_keys) == len(module_keys)
    for i in range(len(config_keys)):
        for j in range(i):
            assert (config_keys[i] == config_keys[j]) == (module_keys[i] == module_keys[j]), (i, j)
    blocks = BlockExports()
    for arch in archs[:2]:
        chw = tuple(space.input_size(arch))
        counting = _CountingRecipe(space, supernet, arch)
        stitched = blocks.export(counting.recipe, (1, *chw))
        assert counting.builds == 1 and _ops(stitched) == _ops(export_onnx(space.extract(supernet, arch), (1, *chw)))
        again = _CountingRecipe(space, supernet, arch)
        exported = blocks.exported
        assert blocks.export(again.recipe, (1, *chw)) == stitched  # every piece cached: nothing built or exported
        assert again.builds == 0 and blocks.exported == exported
    arch = dataclasses.replace(archs[0], resolution=min(space.resolutions))  # cached pieces at another size
    counting = _CountingRecipe(space, supernet, arch)
    chw = tuple(space.input_size(arch))
    stitched = blocks.export(counting.recipe, (1, *chw))
    assert counting.builds == 0 and _ops(stitched) == _ops(export_onnx(space.extract(supernet, arch), (1, *chw)))


def test_a_recipe_whose_model_does_not_match_its_config_is_exported_whole(compact_space, trained_supernet):
    supernet = trained_supernet[0]
    shallow, deep = compact_space.smallest(), compact_space.largest()
    chw = tuple(compact_space.input_size(deep))
    config = subnet_recipe(compact_space, supernet, shallow).config  # fewer blocks than the model built
    recipe = SubnetRecipe(config, lambda: compact_space.extract(supernet, deep))
    blocks = BlockExports()
    data = blocks.export(recipe, (1, *chw))
    assert onnx.load_from_string(data).producer_name != "shiftnas-stitched" and blocks.exported == 0
    assert _ops(data) == _ops(export_onnx(compact_space.extract(supernet, deep), (1, *chw)))


def test_recipes_made_for_a_population_before_any_export_each_give_their_own_graph(compact_space, trained_supernet):
    """The Dask latency path makes a population's recipes first (the supernet's active subnet moves on with each),
    then exports them: each recipe keeps its own config, and a build activates its own architecture again."""
    supernet = trained_supernet[0]
    rng = np.random.default_rng(11)
    archs = [compact_space.sample(rng) for _ in range(3)]
    recipes = [subnet_recipe(compact_space, supernet, a) for a in archs]
    blocks = BlockExports()
    wholes = []
    for arch, recipe in zip(reversed(archs), reversed(recipes)):
        chw = tuple(compact_space.input_size(arch))
        wholes.append(_ops(export_onnx(compact_space.extract(supernet, arch), (1, *chw))))
        assert _ops(blocks.export(recipe, (1, *chw))) == wholes[-1]
    assert len({str(w) for w in wholes}) == 3  # three different graphs: a recipe taking another's would fail
