"""Our model format: model.keras + manifest.json, written atomically, loaded safely."""

import errno
import json
import os
import pathlib

import numpy as np
import pytest

from image_stylization.checkpoint import CheckpointError, StorageError, load_model, save_model
from image_stylization.model import build_transformer, norm_layers


@pytest.fixture(scope="module")
def model():
    m = build_transformer(3, preset="android_26")
    rng = np.random.default_rng(2)
    for layer in norm_layers(m):
        layer.gamma.assign(rng.normal(1, 0.3, layer.gamma.shape).astype("float32"))
    return m


def test_round_trip(model, tmp_path):
    path = pathlib.Path(save_model(model, tmp_path / "m", ["a", "b", "c"], preset="android_26", license="test"))
    assert sorted(os.listdir(path)) == ["manifest.json", "model.keras"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o755"
    loaded = load_model(path)
    assert loaded.style_names == ["a", "b", "c"]
    assert loaded.manifest["preset"] == "android_26" and loaded.manifest["num_styles"] == 3
    x = {"image": np.random.rand(2, 20, 24, 3).astype("float32"),
         "style_weights": np.array([[1, 0, 0], [0.2, 0.3, 0.5]], "float32")}
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(loaded(x)))
    # A bare .keras file loads too, with default names when no manifest is beside it.
    os.rename(path / "manifest.json", tmp_path / "elsewhere.json")
    bare = load_model(path / "model.keras")
    assert bare.style_names == ["style_0", "style_1", "style_2"]


def test_no_vgg_in_checkpoint(model, tmp_path):
    path = pathlib.Path(save_model(model, tmp_path / "m"))
    assert os.path.getsize(path / "model.keras") < 1_000_000  # 140k conv weights + tables


def test_refuses_non_empty_directory(model, tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(CheckpointError, match="not empty"):
        save_model(model, target)
    assert os.listdir(target) == ["keep.txt"]
    # Replacing deletes: a directory holding anything but a model is kept, even with overwrite.
    with pytest.raises(CheckpointError, match=r"holds files a model directory does not \(keep.txt\)"):
        save_model(model, target, overwrite=True)
    assert os.listdir(target) == ["keep.txt"]
    os.remove(target / "keep.txt")
    save_model(model, target)
    save_model(model, target, overwrite=True)  # an earlier model is replaced
    assert sorted(os.listdir(target)) == ["manifest.json", "model.keras"]
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_failed_overwrite_keeps_the_earlier_model(model, tmp_path, monkeypatch):
    target = pathlib.Path(save_model(model, tmp_path / "m", ["a", "b", "c"]))
    before = {f: (target / f).read_bytes() for f in os.listdir(target)}

    def disk_full(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a model")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(model), "save", disk_full)
    with pytest.raises(StorageError, match=r"m: cannot write the model \(No space left on device\)"):
        save_model(model, target, ["x", "y", "z"], overwrite=True)
    assert {f: (target / f).read_bytes() for f in os.listdir(target)} == before
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no temporary directory left


def test_failed_save_leaves_nothing(model, tmp_path):
    with pytest.raises(ValueError, match="style_names has 2 entries, the model has 3"):
        save_model(model, tmp_path / "m", ["a", "b"])
    assert os.listdir(tmp_path) == []


def test_bad_checkpoints(model, tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.keras").write_bytes(b"not a zip")
    (broken / "manifest.json").write_text(json.dumps({"style_names": ["a"]}))
    with pytest.raises(CheckpointError, match="cannot load model"):
        load_model(broken)
    path = pathlib.Path(save_model(model, tmp_path / "m"))
    (path / "manifest.json").write_text(json.dumps({"style_names": ["only one"]}))
    with pytest.raises(CheckpointError, match="manifest names 1 styles, model has 3"):
        load_model(path)


# N-style models; the arbitrary-style pair has its own checks in test_arbitrary.py.
BUNDLED = sorted(p for p in (pathlib.Path(__file__).resolve().parents[1] / "checkpoints").iterdir()
                 if (p / "manifest.json").is_file() and (p / "model.keras").is_file())


@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_bundled_models_load_and_stylize(path):
    """Every model shipped in checkpoints/ loads and gives distinct, non-degenerate pastiches."""
    model = load_model(path)
    n = len(model.style_names)
    assert len(set(model.style_names)) == n
    assert {"license", "preset"} <= set(model.manifest)
    x = np.random.default_rng(3).random((1, 64, 48, 3), dtype="float32")
    outs = np.asarray(model({"image": np.repeat(x, n, axis=0), "style_weights": np.eye(n, dtype="float32")}))
    assert np.all(np.isfinite(outs)) and outs.shape == (n, 64, 48, 3)
    assert outs.reshape(n, -1).std(axis=1).min() > 0.02  # no flat (black/grey) style
    assert min(np.abs(outs[i] - outs[j]).mean() for i in range(n) for j in range(i)) > 1e-3
