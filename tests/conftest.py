"""Shared test setup: the `slow` marker, the path to ../shared/data, and the environment the
command line tools run in."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: real-data runs of more than a few seconds")
    config.addinivalue_line("markers", "xdist_group(name): tests that run on one pytest-xdist process")
    # Raised inside Keras' own TF backend (keras/src/backend/tensorflow/core.py) under numpy 2.
    config.addinivalue_line(
        "filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    )


# The suite runs on two processes (pytest-xdist, `-n 2 --dist loadgroup`). A test is sent to
# either one, except that tests sharing an expensive module-scoped result stay on one process, so
# it is built once: the fault sweep of one tool (one driver process per tool) and the modules
# below, whose fixtures train, export or start servers.
ONE_PROCESS_MODULES = {"test_app", "test_app_browser", "test_export", "test_train_faults"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        module = getattr(getattr(item, "module", None), "__name__", "")
        callspec = getattr(item, "callspec", None)
        tool = callspec.params.get("name") if callspec else None
        if module == "test_tool_faults" and tool:
            item.add_marker(pytest.mark.xdist_group(f"tool_faults:{tool}"))
        elif module in ONE_PROCESS_MODULES:
            item.add_marker(pytest.mark.xdist_group(module))


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
