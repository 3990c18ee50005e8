"""Shared test setup: the `slow` marker, the path to ../shared/data, and the environment the
command line tools run in."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: real-data runs of more than a few seconds")
    # Raised inside Keras' own TF backend (keras/src/backend/tensorflow/core.py) under numpy 2.
    config.addinivalue_line(
        "filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    )


# The suite runs on two processes (pytest-xdist: `-n 2 --dist loadscope --no-loadscope-reorder`).
# Each test module runs whole on one process, so its module- and session-scoped fixtures (each
# tool's fault sweep, trained and exported models, servers) are built once, as in a serial run.
# The modules that take longest go first (measured: a serial run spends about half its time in
# these), so the other process fills in with the short ones and both finish together.
# (--dist loadgroup would split modules finer, but xdist 3.8 cannot group under pytest 9: it
# renames item._nodeid, which pytest 9 no longer reads.)
LONGEST_MODULES = ["test_train", "test_tool_faults", "test_train_faults", "test_model", "test_tiled",
                   "test_arbitrary", "test_export", "test_trainer"]


def pytest_collection_modifyitems(config, items):
    def rank(item):
        module = getattr(getattr(item, "module", None), "__name__", "")
        return LONGEST_MODULES.index(module) if module in LONGEST_MODULES else len(LONGEST_MODULES)

    items.sort(key=rank)  # stable: the order within a module, and of the others, is kept


def shared_path(*parts):
    """Path under ../shared/data, or a skip that says why when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (../shared/data is not present beside this checkout)")
    return path


@pytest.fixture
def shared():
    return shared_path


def tool_env(**extra):
    """The environment for a command line tool run in a subprocess: this one without the
    variables that change TensorFlow's C++ logging, as on a newcomer's machine (the tools must be
    quiet by themselves), plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL", "TF_CPP_VMODULE")}
    env.update(extra)
    return env


TINY_STYLE_NAMES = ["Alpha", "Beta", "Gamma"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small 3-style android_26 network with distinct styles (random betas), saved as a model
    directory named with TINY_STYLE_NAMES: fast to run, and each style gives another picture."""
    import numpy as np

    from image_stylization import checkpoint
    from image_stylization.model import build_transformer, norm_layers

    model = build_transformer(3, preset="android_26")
    rng = np.random.default_rng(0)
    for layer in norm_layers(model):
        layer.beta.assign(rng.normal(0, 0.5, layer.beta.shape).astype(np.float32))
    return checkpoint.save_model(model, str(tmp_path_factory.mktemp("ckpt") / "tiny"),
                                 TINY_STYLE_NAMES)
