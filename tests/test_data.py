"""The content pipeline (image_stylization.data): every source feeds it, crops are right, unreadable
images are counted, sharding splits the files, and the iterator resumes exactly."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from image_stylization import data

# Distinct solid colors: the mean color of a crop tells which file it came from.
COLORS = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (250, 250, 10), (10, 250, 250), (250, 10, 250)]


def _solid(path, color, size=(40, 24)):
    Image.new("RGB", size, color).save(path)


@pytest.fixture
def color_folder(tmp_path):
    root = tmp_path / "photos"
    (root / "a" / "b").mkdir(parents=True)
    for i, color in enumerate(COLORS):
        folder = root if i < 2 else (root / "a" if i < 4 else root / "a" / "b")
        _solid(folder / f"img{i}.{'png' if i % 2 else 'jpg'}", color, size=(40 + 7 * i, 24 + 3 * i))
    return root


def _color_index(image):
    mean = np.asarray(image).reshape(-1, 3).mean(0) * 255
    return int(np.argmin([np.abs(mean - np.array(c)).sum() for c in COLORS]))


def test_folder_source_is_recursive_and_shaped(color_folder):
    ds = data.content_dataset(str(color_folder), 16, 3, training=True, seed=3)
    batch = next(iter(ds))
    assert batch["image"].shape == (3, 16, 16, 3) and batch["image"].dtype == tf.float32
    assert float(tf.reduce_min(batch["image"])) >= 0.0 and float(tf.reduce_max(batch["image"])) <= 1.0
    # One epoch in eval order visits every file once, in sorted path order (recursive).
    seen = [_color_index(im) for b in data.content_dataset(str(color_folder), 16, 4, training=False)
            for im in b["image"]]
    assert sorted(seen) == list(range(len(COLORS)))
    assert len(data.list_image_files(str(color_folder))) == 6
    # A glob works as well.
    assert len(data.describe_source(str(color_folder / "**" / "*.png"))[1]) == 3


def test_central_crop_and_aspect_preserving_resize():
    # Horizontal ramp 0..255 over a 96x32 image: an aspect-preserving resize to short side 18
    # and a central 16 crop keeps the middle columns, so the crop's mean is ~ the ramp's middle.
    ramp = np.tile(np.linspace(0, 255, 96, dtype=np.float32)[None, :, None], (32, 1, 3))
    out = data.preprocess(tf.constant(ramp.astype(np.uint8)), 16, training=False).numpy()
    assert out.shape == (16, 16, 3)
    # 18/32 scale -> width 54; the crop spans columns 19..34 of 54, i.e. ramp fractions ~0.36..0.64.
    assert abs(out.mean() - 0.5) < 0.02
    assert out[:, 0].mean() < 0.40 < 0.60 < out[:, -1].mean()
    # Rows are constant: a resize that did not keep the aspect would still pass above, but a
    # crop taken across the short side would not be 16 px of a 18 px side.
    tiny = data.preprocess(tf.zeros([5, 3, 3], tf.uint8), 16, training=True, seed=tf.constant([1, 2], tf.int64))
    assert tiny.shape == (16, 16, 3)  # tfds mock images are this small


def test_random_crops_are_seeded(color_folder):
    def first(seed):
        return next(iter(data.content_dataset(str(color_folder), 16, 6, seed=seed)))["image"].numpy()

    a, b, c = first(1), first(1), first(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    for i in range(4):
        _solid(root / f"good{i}.jpg", COLORS[i])
    (root / "garbage.jpg").write_bytes(b"not an image at all")
    good = (root / "good0.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    ds = data.content_dataset(str(root), 16, 3, training=True, seed=0)
    (root / "good3.jpg").unlink()  # vanishes after the listing: counted as well
    it = iter(ds)
    batches = [next(it) for _ in range(4)]  # 4 epochs of the 3 good images
    assert all(b["image"].shape == (3, 16, 16, 3) for b in batches)
    counts = [data.skipped_count(b) for b in batches]
    # 3 unreadable per epoch; the first 3 epochs are complete by the 4th batch's last image.
    assert counts == sorted(counts) and counts[0] <= 3 and 9 <= counts[-1] <= 12
    images, names, bad = data.load_images(str(root), 16)
    assert images.shape == (3, 16, 16, 3) and len(bad) == 2
    assert {p.split("/")[-1] for p, _ in bad} == {"garbage.jpg", "truncated.jpg"}
    assert all("{{" not in message and message for _, message in bad)


def test_per_pipeline_sharding_is_disjoint(color_folder):
    seen = []
    for pipeline in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        ds = data.content_dataset(str(color_folder), 16, 1, training=True, repeat=False, seed=5, input_context=ctx)
        seen.append({_color_index(b["image"][0]) for b in ds})
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(len(COLORS)))


def test_iterator_checkpoint_resumes_exactly(color_folder, tmp_path):
    it = iter(data.content_dataset(str(color_folder), 16, 2, seed=7))
    for _ in range(4):  # past the first epoch: the file order is reshuffled per epoch
        next(it)
    path = tf.train.Checkpoint(iterator=it).save(str(tmp_path / "it" / "ckpt"))
    expected = [next(it)["image"].numpy() for _ in range(3)]
    fresh = iter(data.content_dataset(str(color_folder), 16, 2, seed=7))
    tf.train.Checkpoint(iterator=fresh).restore(path).assert_consumed()
    for e in expected:
        np.testing.assert_array_equal(next(fresh)["image"].numpy(), e)


def _write_inception_records(path, encoded_images):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i, encoded in enumerate(encoded_images):
            feature = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def test_tfrecord_source(tmp_path, color_folder):
    shards = tmp_path / "imagenet"
    shards.mkdir()
    encoded = [p.read_bytes() for p in sorted(color_folder.rglob("*.jpg"))] + [b"corrupt"]
    _write_inception_records(shards / "train-00000-of-00002", encoded[:2])
    _write_inception_records(shards / "train-00001-of-00002", encoded[2:])
    (shards / "validation-00000-of-00001").write_bytes(b"")  # not a train shard: ignored
    kind, files = data.describe_source(str(shards))
    assert kind == "tfrecord" and len(files) == 2
    batches = list(data.content_dataset(str(shards), 16, 1, training=False))
    assert sorted(_color_index(b["image"][0]) for b in batches) == [0, 2, 4]
    it = iter(data.content_dataset("tfrecord:" + str(shards / "train-*"), 16, 2, training=True, seed=1))
    assert [next(it)["image"].shape for _ in range(3)] == [(2, 16, 16, 3)] * 3
    assert data.skipped_count(next(it)) >= 1  # the corrupt record was dropped and counted


def test_tfds_mock_imagenet2012():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=8):
        ds = data.content_dataset("tfds:imagenet2012", 32, 4, training=True, seed=0)
        batches = list(ds.take(3))  # repeats past the 8 tiny random mock images
    assert [b["image"].shape for b in batches] == [(4, 32, 32, 3)] * 3
    assert all(np.isfinite(b["image"].numpy()).all() for b in batches)


def test_bad_sources(tmp_path):
    with pytest.raises(data.DataError, match="no such file"):
        data.content_dataset(str(tmp_path / "missing"), 16, 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="no JPEG"):
        data.content_dataset(str(tmp_path / "empty"), 16, 2)
    with pytest.raises(data.DataError, match="image_size"):
        data.content_dataset(str(tmp_path), 8, 2)


def test_a_stream_with_nothing_readable_ends_instead_of_spinning(tmp_path):
    """Every file corrupt: a repeating (training) stream ends after max_unreadable_in_a_row
    failures in a row (it used to spin inside ignore_errors forever, deaf to SIGTERM); so does a
    stream whose files become unreadable after a while. One good file among bad ones keeps going."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    (bad / "text.png").write_text("not a picture")
    assert data.max_unreadable_in_a_row(str(bad)) == 10 * 2 + 1000
    with pytest.raises(StopIteration):  # the iterator's OutOfRangeError, in Python
        next(iter(data.content_dataset(str(bad), 16, 1, training=True)))

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _solid(mixed / "good.jpg", COLORS[0])
    for i in range(5):
        (mixed / f"bad{i}.jpg").write_bytes(b"garbage")
    it = iter(data.content_dataset(str(mixed), 16, 2, training=True))
    batches = [next(it) for _ in range(3)]  # six crops of the one good photo
    assert all(_color_index(b["image"][k]) == 0 for b in batches for k in range(2))
    assert data.skipped_count(batches[-1]) >= 5 * 2  # at least two epochs of the five bad files

    (mixed / "good.jpg").write_bytes(b"gone bad")  # e.g. a disk that went away mid-run
    with pytest.raises(StopIteration):
        for _ in range(10_000):
            next(it)
