"""Tiled execution (tiled.py): statistics against numpy, tiled output against the whole-image
network and the float64 numpy forward pass, the planner's budget, a network of another shape."""

import numpy as np
import pytest

import keras

import numpy_reference
from image_stylization import tiled
from image_stylization.errors import MemoryBudgetError
from image_stylization.layers import (
    ConditionalInstanceNormalization,
    CropToReference,
    ImageInputCheck,
    NearestUpsampling2D,
    PadToMultiple,
    ReflectionPadConv2D,
    moments,
)
from image_stylization.model import build_transformer, magenta_name

rng = np.random.default_rng(3)
MB = tiled.MB


@pytest.fixture(scope="module", params=["android_26", "paper"])
def network(request):
    return numpy_reference.randomize(build_transformer(3, preset=request.param), 11)


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of at most 12 KB per tensor: a 53x71 image takes several tiles in most passes."""
    monkeypatch.setattr(tiled, "MAX_TILE_TENSOR", 12 * 1024)


def _run(model, image, rows, budget_mb, **kw):
    runner = tiled.TiledRunner(model, image, budget_mb * MB, **kw)
    outs = []
    for row in np.asarray(rows, np.float32):
        out = np.full(image.shape[:2] + (3,), np.nan, np.float32)

        def emit(region, tile):
            r0, r1, c0, c1 = region
            assert np.isnan(out[r0:r1, c0:c1]).all()  # each pixel once
            out[r0:r1, c0:c1] = tile

        runner.run(row[None], emit)
        outs.append(out)
    return runner, np.stack(outs)


def _tiles(runner):
    """(plan, tiles of each pass)."""
    result = runner.plan()
    counts = []
    for p in result.passes:
        h, w = result.sizes[p.target]
        counts.append(-(-h // p.tile[0]) * -(-w // p.tile[1]))
    return result, counts


def test_moments_combine_tiles_exactly():
    """Chan's combination of per-tile (count, mean, variance) is the whole array's, in float64,
    even for data far from zero (where sums of squares in float32 would cancel)."""
    x = rng.normal(1000.0, 0.01, (1000, 5))
    acc = tiled.Moments(5)
    for lo, hi in [(0, 1), (1, 300), (300, 310), (310, 1000)]:
        part = x[lo:hi]
        acc.add(hi - lo, part.mean(axis=0), part.var(axis=0))
    assert acc.count == 1000
    np.testing.assert_allclose(acc.mean, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(acc.variance, x.var(axis=0), rtol=1e-9)
    # With float32 tiles through the layers' own `moments`, as the executor gathers them.
    x32 = rng.normal(50.0, 2.0, (1, 96, 70, 4)).astype(np.float32)
    acc = tiled.Moments(4)
    for r0, r1 in [(0, 17), (17, 60), (60, 96)]:
        for c0, c1 in [(0, 33), (33, 70)]:
            mean, var = moments(x32[:, r0:r1, c0:c1])
            acc.add((r1 - r0) * (c1 - c0), np.asarray(mean), np.asarray(var))
    x64 = x32.astype(np.float64)
    np.testing.assert_allclose(acc.mean, x64.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(acc.variance, x64.var(axis=(0, 1, 2)), rtol=1e-5)


def test_statistics_pass_matches_numpy(small_tiles):
    """The statistics the tiled passes gather for the first two norms equal numpy's float64
    statistics of the whole (padded) image's activations."""
    model = numpy_reference.randomize(build_transformer(2, preset="android_26"), 5)
    image = rng.random((53, 71, 3), dtype=np.float32)
    weights = np.array([[0.3, 0.7]], np.float32)
    runner, _ = _run(model, image, weights, 1.5)
    assert min(_tiles(runner)[1][:2]) >= 6
    w = {magenta_name(v): np.asarray(v, np.float64) for v in model.weights}
    x = numpy_reference.reflect_pad(image[None].astype(np.float64), 0, -53 % 4, 0, -71 % 4)
    conv1 = numpy_reference.conv(x, w["transformer/contract/conv1/weights"])
    mean, var = runner.statistics["contract.conv1.InstanceNorm"]
    np.testing.assert_allclose(mean, conv1.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, conv1.var(axis=(0, 1, 2)), rtol=1e-5)
    g, b = (weights.astype(np.float64) @ w[f"transformer/contract/conv1/InstanceNorm/{v}"]
            for v in ("gamma", "beta"))
    h = np.maximum(numpy_reference.instance_norm(conv1, g, b), 0)
    conv2 = numpy_reference.conv(h, w["transformer/contract/conv2/weights"], stride=2)
    mean, var = runner.statistics["contract.conv2.InstanceNorm"]
    np.testing.assert_allclose(mean, conv2.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, conv2.var(axis=(0, 1, 2)), rtol=1e-5)


@pytest.mark.parametrize("budget_mb", [1.5, 4, 64])
def test_tiled_equals_whole_image_and_float64(network, small_tiles, budget_mb):
    """Many tiles (1.5 MB: everything recomputed from the image; 64 MB: the trunk stored and
    merged in place) give the whole-image network's output, and the float64 reference's."""
    image = rng.random((53, 71, 3), dtype=np.float32)
    rows = np.array([[1, 0, 0], [0.2, 0.5, 0.3]], np.float32)  # one-hot and a blend
    runner, out = _run(network, image, rows, budget_mb, max_recompute=float("inf"))
    result, counts = _tiles(runner)
    assert counts[0] >= 6 and sum(c > 1 for c in counts) > len(counts) / 2
    if budget_mb == 64:
        assert any(p.kind == "merge" and p.into is not None for p in result.passes)
    whole = network({"image": image[None], "style_weights": rows[:1]}).numpy()
    assert np.abs(out[0] - whole[0]).max() <= 2e-5
    w = {magenta_name(v): np.asarray(v) for v in network.weights}
    expected = numpy_reference.forward(w, image[None], rows)
    assert np.abs(out - expected).max() <= 2e-5


def test_later_rows_reuse_style_independent_statistics(small_tiles):
    model = numpy_reference.randomize(build_transformer(3, preset="android_26"), 2)
    image = rng.random((40, 36, 3), dtype=np.float32)
    runner = tiled.TiledRunner(model, image, 2 * MB)
    first, later = runner.plan(True), runner.plan(False)
    assert [p.norm.name for p in first.passes if p.kind == "stats"][0] == "contract.conv1.InstanceNorm"
    assert "contract.conv1.InstanceNorm" not in [p.norm.name for p in later.passes if p.norm]
    assert len(later.passes) == len(first.passes) - 1


def test_uint8_content_is_converted_as_image_io_does(small_tiles):
    model = numpy_reference.randomize(build_transformer(2, preset="android_26"), 4)
    u8 = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    _, a = _run(model, u8, [[1, 0]], 2)
    _, b = _run(model, u8.astype(np.float32) / 255.0, [[1, 0]], 2)
    np.testing.assert_array_equal(a, b)


def _arbitrary_like():
    """A network shaped like the arbitrary-style transformer: encoder convs without norms, a
    residual trunk and decoder normalized from a conditioning vector, one upsampling left as
    its own layer and one folded into its conv."""
    image = keras.Input((None, None, 3), name="image")
    cond = keras.Input((4,), name="cond")
    x = ImageInputCheck()(image)
    x = PadToMultiple(4)(x)
    x = keras.layers.ReLU()(ReflectionPadConv2D(8, 5)(x))
    x = keras.layers.ReLU()(ReflectionPadConv2D(8, 3, 2)(x))
    x = keras.layers.ReLU()(ReflectionPadConv2D(12, 3, 2)(x))
    h = ConditionalInstanceNormalization(4)([ReflectionPadConv2D(12, 3)(x), cond])
    h = ConditionalInstanceNormalization(4)([ReflectionPadConv2D(12, 3)(keras.layers.ReLU()(h)), cond])
    x = keras.layers.Add()([x, h])
    x = NearestUpsampling2D(2)(x)
    x = ConditionalInstanceNormalization(4)([ReflectionPadConv2D(6, 3)(x), cond])
    x = keras.layers.ReLU()(x)
    x = ConditionalInstanceNormalization(4)(
        [ReflectionPadConv2D(4, 3, upsample=2)(keras.layers.Activation("tanh")(x)), cond])
    x = ConditionalInstanceNormalization(4)([ReflectionPadConv2D(3, 7)(x), cond])
    x = CropToReference()([x, image])
    out = keras.layers.Activation("sigmoid")(x)
    model = keras.Model({"image": image, "cond": cond}, out)
    r = np.random.default_rng(0)
    for layer in model.layers:
        for v in layer.weights:
            v.assign(r.normal(0.5 if "gamma" in v.path else 0, 0.3, v.shape).astype("float32"))
    return model


def test_generic_network(small_tiles):
    """Any network of these layers: convs without norms, an unfused upsampling, tanh."""
    model = _arbitrary_like()
    graph = tiled.Graph(model)
    assert {n.kind for n in graph.nodes} >= {"upsample", "conv", "norm", "pointwise", "pad", "crop"}
    image = rng.random((45, 58, 3), dtype=np.float32)
    cond = rng.normal(size=(2, 4)).astype(np.float32)
    runner, out = _run(model, image, cond, 1, max_recompute=float("inf"))
    assert sum(_tiles(runner)[1]) > 20
    for i in range(2):
        whole = model({"image": image[None], "cond": cond[i:i + 1]}).numpy()[0]
        assert np.abs(out[i] - whole).max() <= 2e-5


def test_unsupported_layer_is_named():
    image = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(3, 3, padding="same", name="plain_conv")(image)
    with pytest.raises(tiled.UnsupportedNetwork, match="plain_conv: Conv2D"):
        tiled.Graph(keras.Model(image, x))


def test_plan_at_48_mpix_fits_the_default_budget():
    """The bundled network's plan for 8000x6000 (no pixels: planning only): within the budget,
    the trunk stored and merged in place, at most ~2x the whole-image work."""
    graph = tiled.Graph(build_transformer(26, preset="android_26"))
    budget = tiled.DEFAULT_MEMORY_BUDGET_MB * MB
    result = tiled.plan(graph, 6000, 8000, budget)
    assert result.peak_bytes <= budget
    assert result.recompute <= 2.2
    merges = [p for p in result.passes if p.kind == "merge"]
    assert len(merges) == 6 and all(p.into is not None for p in merges)
    assert max(p.live_bytes for p in result.passes) <= budget
    # The whole image would need ~30 GB.
    assert graph.whole_image_bytes(6000, 8000) > 20 * 1024 * MB


def test_too_small_a_budget_says_which_would_do():
    model = build_transformer(2, preset="android_26")
    runner = tiled.TiledRunner(model, np.zeros((3000, 4000, 3), np.uint8), 8 * MB)
    with pytest.raises(MemoryBudgetError, match=r"4000x3000 image .* needs a memory budget of "
                                                r"about \d+ MB .*--memory_budget_mb"):
        runner.plan()


@pytest.mark.slow
@pytest.mark.parametrize("name, budget_mb", [("tf_stylize_26", 64), ("paper_6styles", 256)])
def test_bundled_models_tiled_equal_whole_on_a_real_photo(shared, name, budget_mb):
    """A real photo at an odd size (1601x1203, upscaled from ../shared/data), both bundled
    models, a style and a blend: a small budget (dozens of tiles in the full-resolution
    passes) gives the whole-image pictures within 2/255."""
    from PIL import Image

    from image_stylization.checkpoint import bundled_checkpoint_dir, load_model
    from image_stylization.stylize import run_model

    with Image.open(shared("content", "n01530575_brambling.jpg")) as im:
        photo = np.asarray(im.convert("RGB").resize((1601, 1203), Image.Resampling.BICUBIC))
    model = load_model(bundled_checkpoint_dir(name))
    n = len(model.style_names)
    rows = np.eye(n, dtype=np.float32)[[n - 1, 0]]
    rows[1] = 0.6 * rows[1] + 0.4 * np.eye(n, dtype=np.float32)[2]
    whole = run_model(model, photo.astype(np.float32) / 255.0, rows)
    runner, out = _run(model, photo, rows, budget_mb)
    assert _tiles(runner)[1][0] >= 6
    diff = np.abs(np.rint(out * 255) - np.rint(whole * 255))
    assert diff.max() <= 2, diff.max()
    assert np.abs(out - whole).max() <= 1e-3


def test_bundled_arbitrary_network_tiled_equals_whole_image(small_tiles):
    """The bundled arbitrary-style network (encoder convolutions with biases, norms conditioned
    on a painting's embedding), through the public API: a budget too small for one pass runs
    tiled (many tiles) and gives the whole-image picture, for one painting and a blend."""
    from image_stylization import arbitrary

    model = arbitrary.load_arbitrary_model()
    photo = rng.random((101, 131, 3), dtype=np.float32)  # 2.6 MB of activations in one pass
    paintings = [rng.random((40, 50, 3), dtype=np.float32), rng.random((60, 30, 3), dtype=np.float32)]
    runs = []
    real = tiled.TiledRunner.run
    tiled.TiledRunner.run = lambda self, *a: (runs.append(len(_tiles(self)[1])), real(self, *a))[1]
    try:
        for style, weights in ((paintings[0], None), (paintings, [0.3, 0.7])):
            whole = arbitrary.stylize(photo, style, weights, model=model, memory_budget_mb=None)
            fractions = []
            tiled_ = arbitrary.stylize(photo, style, weights, model=model, memory_budget_mb=1,
                                       progress=fractions.append)
            assert whole.shape == tiled_.shape == (101, 131, 3)
            assert np.abs(whole - tiled_).max() <= 2e-5
            assert fractions[-1] == 1.0
    finally:
        tiled.TiledRunner.run = real
    assert len(runs) == 2 and min(runs) > 10
