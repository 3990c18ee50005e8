"""What every command line tool shares (image_stylization.cli): TensorFlow's C++ log level and
the stderr filter that applies it to the lines TensorFlow prints regardless of that level.

The tools' own behaviour (one line per failure, no TensorFlow start-up lines in a fresh process)
is tested through every tool in test_tool_faults.py.
"""

import os
import re
import signal
import subprocess
import sys

import pytest
from absl import flags
from absl.testing import flagsaver

from conftest import REPO, tool_env
from image_stylization import cli, tf_log_filter

BANNER = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
RECORDS = {  # severity -> a line in absl's format (as TensorFlow 2.21 prints it) and TF's old one
    0: b"I0000 00:00:1795871288.296168    8291 port.cc:153] oneDNN custom operations are on.\n",
    1: b"2024-01-11 05:40:05.061907: W tensorflow/core/x.cc:12] a warning\n",
    2: b"E0000 00:00:1795871288.296168    8291 cuda_dnn.cc:8] an error\n",
    3: b"F0102 10:11:12.123456    8291 cpu_feature_guard.cc:90] compiled to use AVX\n",
}
OURS = b"image_stylization_transform: error: --which_styles: style index 3 is out of range\n"


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_filter_drops_records_below_the_level(level):
    data = BANNER + b"".join(RECORDS.values()) + OURS + b"W: not a record\n"
    kept = tf_log_filter.filter_bytes(data, level)
    expected = [RECORDS[s] for s in range(4) if s >= level or s == 3]
    if level == 0:
        expected = [BANNER] + expected
    assert kept == b"".join(expected) + OURS + b"W: not a record\n"


def _filter_process(data, level):
    proc = subprocess.run([sys.executable, "-S", "-I", tf_log_filter.__file__, str(level)],
                          input=data, capture_output=True, timeout=60)
    return proc.stdout


def test_filter_process_passes_partial_lines_and_carriage_returns():
    # A progress bar redrawn with \r, and a last line without a newline, come through unchanged.
    data = b"\r 10%|#\r 50%|#####\r100%|##########\n" + RECORDS[0] + b"no newline at the end"
    assert _filter_process(data, 2) == data.replace(RECORDS[0], b"")


def test_fatal_record_gets_out_before_abort(tmp_path):
    """Why the filter is a process: the line explaining an abort() still reaches the user."""
    code = (
        "import os\n"
        "from image_stylization import cli\n"
        "with cli.filtered_stderr(2):\n"
        f"    os.write(2, {RECORDS[0] + RECORDS[3]!r})\n"
        "    os.abort()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                          env=tool_env(PYTHONPATH=str(REPO)))
    assert proc.returncode == -signal.SIGABRT
    assert proc.stderr == RECORDS[3]


@pytest.mark.parametrize("verbosity,env,expected", [
    (None, None, 3),     # the default: TensorFlow's fatal errors only
    (None, "0", 0),      # a level the user set is kept
    (None, "3", 3),
    (None, "yes", 0),    # TensorFlow reads a non-number as 0
    ("0", "3", 0),       # --verbosity (INFO) wins over the variable
    ("-1", None, 1),     # WARNING
    ("-2", "0", 2),      # ERROR
    ("-3", None, 3),     # FATAL
    ("1", None, 0),      # DEBUG
])
def test_log_level(verbosity, env, expected, monkeypatch):
    if env is None:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", env)
    with flagsaver.flagsaver():
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["tool"] + ([f"--verbosity={verbosity}"] if verbosity is not None else []))
        assert cli.tf_log_level() == expected


def _record_tags(stderr):
    """The `file.cc:line]` of each C++ log record in `stderr`."""
    return {m for line in stderr.splitlines() if not tf_log_filter.keep(line.encode(), 1)
            for m in re.findall(r"\S+\.cc:\d+\]", line)}


@pytest.mark.slow
def test_asking_for_tensorflow_lines_shows_them(tmp_path):
    """TF_CPP_MIN_LOG_LEVEL=0 or --verbosity=0: the tool hides nothing TensorFlow prints."""
    plain = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True,
                           text=True, timeout=300, env=tool_env(TF_CPP_MIN_LOG_LEVEL="0"))
    tags = _record_tags(plain.stderr)
    if not tags:
        pytest.skip("this TensorFlow build prints no C++ lines at import")
    tool = [sys.executable, "-m", "image_stylization.image_stylization_transform",
            f"--input_image={REPO / 'image_stylization' / 'assets' / 'astronaut.jpg'}",
            f"--output_dir={tmp_path / 'out'}", "--which_styles=[99]"]
    for extra, env in [([], {"TF_CPP_MIN_LOG_LEVEL": "0"}), (["--verbosity=0"], {})]:
        r = subprocess.run(tool + extra, capture_output=True, text=True, timeout=300,
                           env=tool_env(PYTHONPATH=str(REPO), **env))
        assert r.returncode == 2, r.stderr
        assert tags <= _record_tags(r.stderr), r.stderr
        assert r.stderr.splitlines()[-1].endswith("this model has 26 styles (0..25)")
    assert not os.path.exists(tmp_path / "out")


def test_file_failure_names_the_file_once():
    from image_stylization.errors import ImageError, file_failure

    assert file_failure("a.png", ImageError("a.png: not an image file")) == "a.png: not an image file"
    assert file_failure("a.png", ValueError("image is 8x8 px\nmore")) == "a.png: image is 8x8 px"
