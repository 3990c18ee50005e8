"""stylize(): style selection, batching, blends against hand-interpolated gamma/beta, colour, strength."""

import importlib

import numpy as np
import pytest
from PIL import Image

from image_stylization.model import build_transformer, conv_layers, norm_layers

# By import_module: the package may re-export the `stylize` function under the module's name.
st = importlib.import_module("image_stylization.stylize")
N = 4
NAMES = ["Starry night", "Candy tree", "Stained glass", "Woven grid"]


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    for layer in conv_layers(model):
        layer.kernel.assign(rng.normal(0, 0.2, layer.kernel.shape).astype(np.float32))
    for layer in norm_layers(model):
        layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype(np.float32))
        layer.beta.assign(rng.normal(0, 0.5, layer.beta.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def model():
    m = _randomize(build_transformer(N, preset="android_26"), 0)
    m.style_names = NAMES
    return m


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(1)
    # Smooth colour gradients plus noise: 40x52, not a multiple of 4.
    yy, xx = np.mgrid[0:40, 0:52] / 52.0
    base = np.stack([yy, xx, 1 - xx * yy], axis=2)
    return np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1).astype(np.float32)


def test_list_equals_single_calls_in_one_batch(model, photo, monkeypatch):
    calls = []
    real = st.compiled_forward

    def counting(m, jit_compile=False, precision="float32"):
        f = real(m, jit_compile, precision)
        return lambda x, w: (calls.append((x.shape[0], w.shape[0])), f(x, w))[1]

    monkeypatch.setattr(st, "compiled_forward", counting)
    many = st.stylize(photo, [2, 0, "Woven grid"], model=model)
    # One call: the image once, three style rows (the network shares its start between them).
    assert calls == [(1, 3)]
    singles = [st.stylize(photo, s, model=model) for s in (2, 0, 3)]
    for a, b in zip(many, singles):
        assert a.shape == photo.shape and a.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=2e-5)
    assert np.abs(many[0] - many[1]).mean() > 0.01  # styles differ


@pytest.mark.parametrize("strength", [1.0, 0.0])
def test_float_results_are_writable_arrays_of_their_own(model, photo, strength):
    """Results are the caller's to change: writable, sharing memory with neither the input, nor
    each other, nor TensorFlow's (read-only) output buffer."""
    results = st.stylize(photo, [0, 1], model=model, strength=strength)
    for r in results:
        assert r.flags.writeable and not np.shares_memory(r, photo)
    assert not np.shares_memory(results[0], results[1])
    results[0][0, 0] = 0.5  # must not raise


def test_blend_equals_hand_interpolated_gamma_beta(model, photo):
    out = st.stylize(photo, {0: 1.0, "Stained glass": 3.0}, model=model)
    # Reference: a 1-style network whose gamma/beta are 0.25*style0 + 0.75*style2, by hand.
    ref = build_transformer(1, preset="android_26")
    for src, dst in zip(conv_layers(model), conv_layers(ref)):
        dst.kernel.assign(src.kernel.numpy())
    for src, dst in zip(norm_layers(model), norm_layers(ref)):
        g, b = src.gamma.numpy(), src.beta.numpy()
        dst.gamma.assign((0.25 * g[0] + 0.75 * g[2])[None])
        dst.beta.assign((0.25 * b[0] + 0.75 * b[2])[None])
    expected = ref({"image": photo[None], "style_weights": np.ones((1, 1), np.float32)}).numpy()[0]
    np.testing.assert_allclose(out, expected, atol=2e-5)
    # Weights are normalized: {0: 2, 2: 6} is the same blend.
    np.testing.assert_allclose(st.stylize(photo, {0: 2, 2: 6}, model=model), out, atol=2e-5)


def test_resolve_styles():
    assert st.resolve_styles({0: 1, 2: 3}, NAMES) == {0: 0.25, 2: 0.75}
    assert st.resolve_styles({"starry_night": 1, 0: 1}, NAMES) == {0: 1.0}  # repeats add up
    assert st.resolve_styles("candy tree", NAMES) == [1]
    assert st.resolve_styles("glass", NAMES) == [2]  # a unique part of a name
    with pytest.raises(st.StyleError, match=r"ambiguous: it matches 0 'Starry night', 2 'Stained"):
        st.resolve_styles("s", NAMES)
    assert st.resolve_styles(["3", 1], NAMES) == [3, 1]
    w = st.weight_matrix({1: 0.25, 3: 0.75}, N)
    np.testing.assert_array_equal(w, [[0, 0.25, 0, 0.75]])


def test_parse_which_styles():
    assert st.parse_which_styles("[0,3,2]", NAMES) == [0, 3, 2]
    assert st.parse_which_styles("{0:0.3,3:0.7}", NAMES) == pytest.approx({0: 0.3, 3: 0.7})
    assert st.parse_which_styles("{'Starry night': 1, 'Woven grid': 1}", NAMES) == {0: 0.5, 3: 0.5}
    assert st.parse_which_styles("2", NAMES) == [2]
    assert st.parse_which_styles("Candy tree", NAMES) == [1]
    assert st.parse_which_styles("1,2", NAMES) == [1, 2]


@pytest.mark.parametrize(
    "styles, message",
    [
        (4, r"style index 4 is out of range: this model has 4 styles \(0..3\)"),
        (-1, "out of range"),
        ("Mona Lisa", "unknown style name 'Mona Lisa'"),
        ({0: -0.5, 1: 1}, "weight of style 0 must be >= 0"),
        ({0: float("nan")}, "must be finite"),
        ({0: float("inf"), 1: 1}, "must be finite"),
        ({0: 0, 1: 0.0}, "sum to 0"),
        ({}, "empty"),
        ([], "empty"),
        (True, "index or a name"),
        (1.5, "index or a name"),
        ({0: "x"}, "must be a number"),
    ],
)
def test_bad_styles(styles, message):
    with pytest.raises(st.StyleError, match=message):
        st.resolve_styles(styles, NAMES)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[0,9]", "style index 9 is out of range"),
        ("{0:0.3,", "cannot parse which_styles"),
        ("__import__('os').system('false')", "unknown style name"),  # never evaluated
        ("[__import__('os')]", "cannot parse"),
        ("{1: nan}", "cannot parse"),  # nan is not a literal
        ("{1: float('nan')}", "cannot parse"),
        ("", "empty"),
        ("3.5", "must be a list or a dict"),
    ],
)
def test_bad_which_styles(text, message):
    with pytest.raises(st.StyleError, match=message):
        st.parse_which_styles(text, NAMES)


def test_bad_styles_fail_before_running(model):
    with pytest.raises(ValueError, match="out of range"):
        st.stylize("/nonexistent.png", 7, model=model)  # the style is checked first
    with pytest.raises(ValueError, match="strength"):
        st.stylize(np.zeros((20, 20, 3), np.uint8), 0, model=model, strength=1.5)
    with pytest.raises(ValueError, match=r"8x30 px.*>= 16"):
        st.stylize(np.zeros((30, 8, 3), np.uint8), 0, model=model)


def _ycbcr_pil(rgb_uint8):
    return np.asarray(Image.fromarray(rgb_uint8).convert("YCbCr"), np.float32)


def test_preserve_color_keeps_chroma(model, photo):
    plain = st.stylize(photo, 1, model=model)
    kept = st.stylize(photo, 1, model=model, preserve_color=True)
    # Independent reference: Pillow's JPEG YCbCr conversion on 8-bit images.
    ours, inp, sty = (_ycbcr_pil((np.clip(a, 0, 1) * 255).round().astype(np.uint8))
                      for a in (kept, photo, plain))
    # Clipping to [0, 1] after the inverse transform changes a few pixels; compare the others.
    ok = (kept > 0.002).all(axis=2) & (kept < 0.998).all(axis=2)
    assert ok.mean() > 0.5
    np.testing.assert_allclose(ours[..., 1:][ok], inp[..., 1:][ok], atol=2.0)  # chroma from input
    np.testing.assert_allclose(ours[..., 0][ok], sty[..., 0][ok], atol=2.0)  # luma from stylized
    assert np.abs(ours[..., 1:] - sty[..., 1:]).mean() > 2  # and it did change something


def test_strength(model, photo):
    np.testing.assert_array_equal(st.stylize(photo, 2, model=model, strength=0.0), photo)
    full = st.stylize(photo, 2, model=model)
    half = st.stylize(photo, 2, model=model, strength=0.5)
    np.testing.assert_allclose(half, 0.5 * full + 0.5 * photo, atol=1e-5)


def test_kinds_and_max_size(model, photo, tmp_path):
    u8 = (photo * 255).round().astype(np.uint8)
    out = st.stylize(u8, 0, model=model)
    assert out.dtype == np.uint8 and out.shape == u8.shape
    path = tmp_path / "p.png"
    Image.fromarray(u8).save(path)
    pil = st.stylize(str(path), 0, model=model, max_size=26)
    assert isinstance(pil, Image.Image) and pil.size == (26, 20)  # 52x40 -> longest side 26
    pils = st.stylize(Image.fromarray(u8[:, :, 0]), [0, 1], model=model, max_size=4096)
    assert [p.size for p in pils] == [(52, 40)] * 2  # never upscaled; grayscale handled


def test_contact_sheet(model, photo):
    sheet = st.contact_sheet((photo * 255).astype(np.uint8), model=model, tile_size=40, columns=3)
    assert isinstance(sheet, Image.Image)
    # 5 tiles (input + 4 styles) in 3 columns: 2 rows of 40x31 tiles with labels below.
    assert sheet.width == 3 * (40 + 2) + 2
    a = np.asarray(sheet)
    assert (a[-3:] == 255).all()  # the empty 6th cell and margins are white


def test_batches_split_by_pixel_budget(model, photo, monkeypatch):
    monkeypatch.setattr(st, "MAX_BATCH_PIXELS", 2 * photo.shape[0] * photo.shape[1])
    out = st.run_model(model, photo, np.eye(N, dtype=np.float32)[[0, 1, 2, 3, 1]])
    assert out.shape == (5,) + photo.shape
    np.testing.assert_allclose(out[4], out[1], atol=1e-5)
    single = st.run_model(model, photo, np.eye(N, dtype=np.float32)[[3]])
    np.testing.assert_allclose(out[3], single[0], atol=1e-5)


def test_forward_is_the_model_graph(model, photo):
    """compiled_forward runs the Keras model's own graph (what the exports run), with XLA too."""
    x = photo[None]
    w = np.array([[0.2, 0.3, 0.5, 0.0]], np.float32)
    expected = model({"image": x, "style_weights": w}).numpy()
    np.testing.assert_allclose(st.compiled_forward(model)(x, w).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(st.compiled_forward(model, jit_compile=True)(x, w).numpy(),
                               expected, atol=1e-5)


def test_bfloat16_precision_close_to_float32(model, photo):
    """The opt-in bfloat16 path: the bundled model's picture within rounding (0.4 uint8 levels
    on average at 512 px over its 26 styles; BUILD_NOTES), float32 out; float32 untouched."""
    bundled = st.load_model()
    x = (photo * 255).round().astype(np.uint8)
    full = st.stylize(x, [1, 19], model=bundled, max_size=None)
    half = st.stylize(x, [1, 19], model=bundled, max_size=None, precision="bfloat16")
    for a, b in zip(full, half):
        assert b.dtype == np.uint8 and b.shape == a.shape
        assert 0 < np.abs(a.astype(int) - b).mean() < 2
    np.testing.assert_array_equal(st.stylize(x, 1, model=bundled, max_size=None), full[0])
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16"):
        st.stylize(photo, 1, model=model, precision="int8")


def test_memory_budget_tiles_with_the_same_result(model, photo, monkeypatch):
    """A budget too small for the whole image runs tiled (here ~20 tiles a pass) and gives the
    whole-image result, for one style, a list, a blend with strength and colour kept, and each
    kind of input; progress goes up to 1."""
    monkeypatch.setattr(st.tiled, "MAX_TILE_TENSOR", 16 * 1024)
    runs = []
    real = st.tiled.TiledRunner.run
    monkeypatch.setattr(st.tiled.TiledRunner, "run",
                        lambda self, *a: (runs.append(1), real(self, *a))[1])
    u8 = (photo * 255).round().astype(np.uint8)
    cases = [(u8, 1, {}), (u8, [3, 0], {}), (photo, {0: 0.4, 2: 0.6}, dict(strength=0.6)),
             (Image.fromarray(u8), 2, dict(preserve_color=True))]
    for image, styles, kw in cases:
        fractions = []
        whole = st.stylize(image, styles, model=model, memory_budget_mb=None, **kw)
        tiled_ = st.stylize(image, styles, model=model, memory_budget_mb=1, progress=fractions.append,
                            **kw)
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
        for a, b in zip(*(r if isinstance(r, list) else [r] for r in (whole, tiled_))):
            a, b = np.asarray(a), np.asarray(b)
            assert a.dtype == b.dtype and a.shape == b.shape
            tolerance = 1 if a.dtype == np.uint8 else 1e-5
            assert np.abs(a.astype(np.float64) - b).max() <= tolerance
    assert len(runs) == 5  # every tiled call went through the tiled runner, one row at a time


def test_budget_too_small_is_an_input_error(model, photo):
    with pytest.raises(st.MemoryBudgetError, match="--memory_budget_mb"):
        st.stylize(photo, 0, model=model, memory_budget_mb=0.01)
    with pytest.raises(ValueError, match="memory_budget_mb must be a number > 0"):
        st.stylize(photo, 0, model=model, memory_budget_mb=0)


def test_rows_per_call_follow_the_budget(model):
    assert st.rows_per_call(model, 512, 512, 26) == 16  # MAX_BATCH_PIXELS alone
    fits = st.rows_per_call(model, 512, 512, 26, memory_budget_mb=1536)
    assert 1 <= fits < 16
    assert st.rows_per_call(model, 8000, 6000, 1, memory_budget_mb=1536) == 0  # must tile
