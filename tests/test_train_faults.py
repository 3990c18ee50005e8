"""Faults that training, fine-tuning and evaluation meet on disk and in their data, one test per
class (issue 11): a path that exists as the wrong kind of thing, a directory that cannot be
written, a content stream that yields nothing, a file partially written by an earlier crash, and a
full disk. Each ends in one line naming the flag or file (exit 2 from the command line, 1 for a
run that cannot go on), and nothing written before is lost."""

import csv
import errno
import os
import re
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from image_stylization import checkpoint, data, evaluate, train
from image_stylization.errors import ConfigError, DataError, InputError, TrainingError
from test_train import assets, cli, cli_args, quiet, tiny_config  # noqa: F401  (fixture)

JOBS = ("train", "finetune")
# TensorFlow's C++ start-up lines, printed before our code runs (being quieted on another branch).
TF_STARTUP = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|I0000 .*\] oneDNN custom operations)")


def run(job, config, log=quiet):
    if job == "train":
        return train.train(config, log=log)
    return train.finetune(config, checkpoint=None, mode="append", log=log)  # onto the bundled model


def error_line(proc):
    """The one line our tool printed (after TensorFlow's own start-up lines, if any)."""
    lines = [l for l in proc.stderr.strip().splitlines() if not TF_STARTUP.match(l)]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def eval_config(assets, model_dir, eval_dir, **overrides):
    fields = dict(checkpoint=str(model_dir), style_dataset_file=assets["dataset"], eval_dir=str(eval_dir),
                  content_source=assets["photos"], image_size=32, batch_size=3, grid_max_images=2,
                  content_weights={"conv2": 1.0}, style_weights={"conv1": 1e-4, "conv2": 1e-4})
    fields.update(overrides)
    return evaluate.EvalConfig(**fields)


@pytest.fixture(scope="module")
def trained(assets, tmp_path_factory):
    """A 2-step training run: a model directory to evaluate."""
    root = tmp_path_factory.mktemp("trained")
    return train.train(tiny_config(assets, root / "run", train_steps=2), log=quiet)["model_dir"]


def _unwritable_directory():
    """/sys: a directory no process can create files in (sysfs), root included."""
    try:
        fd, path = tempfile.mkstemp(dir="/sys")
    except OSError:
        return "/sys"
    os.close(fd)
    os.remove(path)
    pytest.skip("/sys is writable here; no directory to test an unwritable one with")


# ----------------------------------------------------------------------------- wrong kind of path


@pytest.mark.parametrize("job", JOBS)
def test_paths_of_the_wrong_kind(assets, tmp_path, job):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    for train_dir, message in ((a_file, "exists and is not a directory"),
                               (a_file / "run", "is a file, not a directory")):
        with pytest.raises(ConfigError, match=f"--train_dir={re.escape(str(train_dir))}: .*{message}"):
            run(job, tiny_config(assets, train_dir))
    with pytest.raises(ConfigError, match="--style_dataset_file: .* is a directory"):
        run(job, tiny_config(assets, tmp_path / "run", style_dataset_file=str(tmp_path)))
    with pytest.raises(DataError, match="no JPEG/PNG/BMP/GIF images"):
        run(job, tiny_config(assets, tmp_path / "run", content_source=str(a_file)))
    assert a_file.read_text() == "not a directory"


def test_evaluate_paths_of_the_wrong_kind(assets, trained, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="--eval_dir=.*: exists and is not a directory"):
        evaluate.evaluate(eval_config(assets, trained, a_file), log=quiet)
    with pytest.raises(ConfigError, match="--eval_dir=.*: .*a_file is a file, not a directory"):
        evaluate.evaluate(eval_config(assets, trained, a_file / "eval"), log=quiet)
    with pytest.raises(InputError, match="--checkpoint"):
        evaluate.evaluate(eval_config(assets, a_file, tmp_path / "eval"), log=quiet)


# ----------------------------------------------------------------------------- unwritable directory


@pytest.mark.parametrize("job", JOBS)
def test_unwritable_train_dir(assets, job):
    unwritable = _unwritable_directory()
    for train_dir in (unwritable, os.path.join(unwritable, "image_stylization_run")):
        with pytest.raises(ConfigError, match=f"--train_dir={re.escape(train_dir)}: cannot write there"):
            run(job, tiny_config(assets, train_dir))


def test_unwritable_eval_dir(assets, trained):
    unwritable = _unwritable_directory()
    with pytest.raises(ConfigError, match="--eval_dir=/sys: cannot write there"):
        evaluate.evaluate(eval_config(assets, trained, unwritable), log=quiet)


# ----------------------------------------------------------------------------- a stream of nothing


def _corrupt_folder(path):
    path.mkdir()
    (path / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(3000))
    (path / "notes.png").write_text("a text file named .png")
    return path


@pytest.mark.parametrize("job", JOBS)
def test_content_that_cannot_be_read_stops_with_one_line(assets, tmp_path, job):
    corrupt = _corrupt_folder(tmp_path / "corrupt")
    with pytest.raises(DataError, match=f"--content_source={re.escape(str(corrupt))}: none of its 2 image files "
                                        r"could be read \(2 unreadable\)"):
        run(job, tiny_config(assets, tmp_path / "run", content_source=str(corrupt)))
    assert not (tmp_path / "run" / "model").exists()


def test_content_that_cannot_be_read_from_the_command_line(assets, tmp_path):
    """It used to spin forever, deaf to SIGTERM."""
    corrupt = _corrupt_folder(tmp_path / "corrupt")
    proc = cli("train", *cli_args(tiny_config(assets, tmp_path / "run", content_source=str(corrupt))))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "none of its 2 image files could be read (2 unreadable)" in error_line(proc)


def test_content_that_stops_being_readable_mid_run(assets, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in os.listdir(assets["photos"]):
        (photos / name).write_bytes(open(os.path.join(assets["photos"], name), "rb").read())
    messages = []

    def log(message):
        messages.append(message)
        if message.startswith("step 2/"):  # the disk goes away
            for p in photos.iterdir():
                p.write_bytes(b"")

    config = tiny_config(assets, tmp_path / "run", content_source=str(photos), train_steps=1000,
                         save_interval_steps=2)
    with pytest.raises(DataError, match=r"the images stopped being readable at step \d+ .*the last checkpoint is "
                                        r".*ckpt-\d+"):
        train.train(config, log=log)
    assert tf.train.latest_checkpoint(str(tmp_path / "run"))


def test_evaluate_content_that_cannot_be_read(assets, trained, tmp_path):
    corrupt = _corrupt_folder(tmp_path / "corrupt")
    with pytest.raises(InputError, match=re.escape(str(corrupt))):
        evaluate.evaluate(eval_config(assets, trained, tmp_path / "eval", content_source=str(corrupt)), log=quiet)
    assert not (tmp_path / "eval" / evaluate.CSV_FILE).exists()


# ----------------------------------------------------------------------------- partially written files


def test_resume_skips_truncated_and_corrupt_checkpoints(assets, tmp_path):
    """The newest checkpoint truncated (a full disk, an interrupted copy): the run resumes from the
    newest one that reads, with a warning naming the bad one; a corrupt index likewise, listing
    the intact checkpoints. A model directory half-written by a crashed save is no obstacle."""
    run_dir = tmp_path / "run"
    config = tiny_config(assets, run_dir, train_steps=4, save_interval_steps=2)
    train.train(config, log=quiet)
    with open(run_dir / "ckpt-4.data-00000-of-00001", "r+b") as f:
        f.truncate(100)
    (run_dir / ".tmp-crashed").mkdir()  # what an interrupted checkpoint.save_model leaves
    (run_dir / ".tmp-crashed" / "model.keras").write_bytes(b"PK\x03\x04")
    messages = []
    result = train.train(tiny_config(assets, run_dir, train_steps=6, save_interval_steps=2), log=messages.append)
    assert messages[0].startswith("warning: cannot read ckpt-4 (") and "resuming from ckpt-2" in messages[0], messages[:2]
    assert "resumed from" in messages[1] and "at step 2" in messages[1]
    assert result["step"] == 6 and len(result["history"]) == 4

    (run_dir / "ckpt-6.index").write_bytes(b"\x00garbage index" * 10)
    messages = []
    result = train.train(tiny_config(assets, run_dir, train_steps=7, save_interval_steps=2), log=messages.append)
    assert messages[0].startswith("warning: cannot read ckpt-6 (") and "(intact: ckpt-2, ckpt-4)" in messages[0], \
        messages[:2]
    assert result["step"] == 7 and len(result["history"]) == 3

    for name in os.listdir(run_dir):
        if name.startswith("ckpt-"):
            with open(run_dir / name, "r+b") as f:
                f.truncate(10)
    with pytest.raises(ConfigError, match=r"--train_dir=.*: no checkpoint there can be read: ckpt-7 \(.*ckpt-\d+ "):
        train.train(tiny_config(assets, run_dir, train_steps=8), log=quiet)


def test_finetune_from_a_truncated_model(assets, trained, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in os.listdir(trained):
        (broken / name).write_bytes(open(os.path.join(trained, name), "rb").read())
    with open(broken / checkpoint.MODEL_FILE, "r+b") as f:
        f.truncate(200)
    with pytest.raises(ConfigError, match=r"--checkpoint: .*model.keras: cannot load model"):
        train.finetune(tiny_config(assets, tmp_path / "ft"), checkpoint=str(broken), mode="append", log=quiet)
    assert not (tmp_path / "ft" / "model").exists()


def test_evaluate_over_leftovers_of_a_crashed_run(assets, trained, tmp_path):
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / evaluate.CSV_FILE).write_text("style_index,model_style_ind")  # cut off mid-write
    (eval_dir / ".losses-abc.tmp").write_text("stale")
    result = evaluate.evaluate(eval_config(assets, trained, eval_dir), log=quiet)
    with open(result["csv"]) as f:
        assert len(list(csv.DictReader(f))) == 2


# ----------------------------------------------------------------------------- a full disk


def test_full_disk_keeps_the_previous_checkpoint(assets, tmp_path, monkeypatch, job="train"):
    # finetune saves through the same loop code; train alone keeps the suite's time down.
    run_dir = tmp_path / "run"
    run(job, tiny_config(assets, run_dir, train_steps=2, save_interval_steps=2))
    before = {name: (run_dir / name).read_bytes() for name in os.listdir(run_dir) if name.startswith("ckpt-")}
    real_save = tf.train.CheckpointManager.save

    def full_disk(manager, *args, **kwargs):
        # What TensorFlow's writer leaves when the disk fills: a partial temporary shard.
        temp = run_dir / "ckpt-4_temp"
        temp.mkdir(exist_ok=True)
        (temp / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\x00" * 64)
        raise tf.errors.ResourceExhaustedError(None, None, f"{temp}/part-00000-of-00001: No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
    with pytest.raises(TrainingError, match=r"cannot write the checkpoint for step 4 in .*run \(.*No space left on "
                                            r"device\); the last checkpoint written is .*ckpt-2$"):
        run(job, tiny_config(assets, run_dir, train_steps=4, save_interval_steps=2))
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    assert before == {name: (run_dir / name).read_bytes() for name in before}
    messages = []
    run(job, tiny_config(assets, run_dir, train_steps=4, save_interval_steps=2), log=messages.append)
    assert any(m.startswith("resumed from") and m.endswith("at step 2") for m in messages), messages


def test_evaluate_full_disk_keeps_the_previous_csv(assets, trained, tmp_path, monkeypatch):
    eval_dir = tmp_path / "eval"
    first = evaluate.evaluate(eval_config(assets, trained, eval_dir), log=quiet)["csv"]
    before = open(first, "rb").read()

    def full_disk(self, rows):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(csv.DictWriter, "writerows", full_disk)
    with pytest.raises(ConfigError, match=r"--eval_dir=.*: cannot write .*losses.csv \(No space left on device\)"):
        evaluate.evaluate(eval_config(assets, trained, eval_dir), log=quiet)
    assert open(first, "rb").read() == before
    assert not [n for n in os.listdir(eval_dir) if n.endswith(".tmp")]
