"""The same faults through every command line tool: one test per class of fault, parametrized
over the tools in TOOLS, so a new tool is covered by adding its entry (test_every_tool_is_here
fails until it is).

Classes: an output path that exists as the wrong kind of thing, or under a file, or in a
directory that cannot be written; an input that is empty (a stream that yields nothing), the
wrong kind of thing, or truncated; the partial outputs of a run killed mid-way; a disk that
fills up during a run (RLIMIT_FSIZE everywhere; a real tmpfs where this machine may mount one).
What every case expects: no traceback, one line on stderr naming the file or flag, exit status
2 for bad input (1 for a full disk), nothing written, earlier outputs unchanged. And the
first failing run of each tool, in a fresh process with no TF_* variables, prints exactly that
one line: none of TensorFlow's start-up lines.

Everything runs on tiny self-made assets (a random 2-style network, a random VGG-16 cut after
block 2, 40x32 photos), so none of this needs ../shared. Each tool's cases run in one process
(tests/tool_driver.py) so TensorFlow is imported once per tool.
"""

import ast
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, tool_env

DRIVER = REPO / "tests" / "tool_driver.py"
FSIZE = 1024  # bytes: every output of every tool is larger
# Cases that fail on this branch for code being rewritten elsewhere (issue 11, items 1-4).


# ------------------------------------------------------------------------------------- assets


def _photo(path, size=(40, 32), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return str(path)


def _tiny_vgg16(path):
    """A random VGG-16 cut after block 2, in the 8-bit .npz format (SOURCES.md section 4)."""
    rng = np.random.default_rng(1)
    arrays = {}
    for name, cin, cout in [("block1_conv1", 3, 64), ("block1_conv2", 64, 64),
                            ("block2_conv1", 64, 128), ("block2_conv2", 128, 128)]:
        arrays[f"{name}_W_q"] = rng.integers(0, 256, (cout, cin, 3, 3), dtype=np.uint8)
        arrays[f"{name}_W_table"] = np.linspace(-0.05, 0.05, 256, dtype=np.float32)
        arrays[f"{name}_b"] = np.zeros(cout, np.float32)
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from image_stylization import checkpoint, style_dataset
    from image_stylization.model import build_transformer, magenta_name, norm_layers

    import tensorflow as tf

    root = tmp_path_factory.mktemp("assets")
    a = {"root": str(root)}
    a["photo"] = _photo(root / "photo.jpg")
    (root / "photos").mkdir()
    for i in range(3):
        _photo(root / "photos" / f"p{i}.jpg", (48, 40), seed=10 + i)
    a["photos"] = str(root / "photos")
    (root / "styles").mkdir()
    for i in range(2):
        _photo(root / "styles" / f"style{i}.png", (40, 40), seed=20 + i)
    a["styles"] = str(root / "styles")
    a["weights"] = _tiny_vgg16(root / "vgg16_tiny.npz")
    a["dataset"] = str(root / "styles.tfrecord")
    style_dataset.write_style_dataset(a["styles"], a["dataset"], "vgg16", a["weights"], "avg", 32,
                                      ["conv1", "conv2"])
    model = build_transformer(2, preset="android_26", alpha=0.25)
    rng = np.random.default_rng(2)
    for layer in norm_layers(model):
        layer.beta.assign(rng.normal(0, 0.5, layer.beta.shape).astype(np.float32))
    a["model"] = checkpoint.save_model(model, str(root / "model"), ["one", "two"])
    # The same weights as a frozen TF1 GraphDef (float constants under Magenta's names).
    graph = tf.compat.v1.GraphDef()
    for v in model.weights:
        node = graph.node.add(name=magenta_name(v), op="Const")
        node.attr["dtype"].type = tf.float32.as_datatype_enum
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.asarray(v.numpy())))
    a["graphdef"] = str(root / "tiny.pb")
    with open(a["graphdef"], "wb") as f:
        f.write(graph.SerializeToString())
    return a


# ---------------------------------------------------------------------------------- the tools

TRAIN_FLAGS = {"content_weights": '{"conv2": 1.0}', "style_weights": '{"conv1": 1e-4, "conv2": 1e-4}',
               "batch_size": "1", "image_size": "32"}


def _check_transform(out):
    with Image.open(os.path.join(out, "photo_1.png")) as im:
        assert im.format == "PNG" and im.size == (40, 32)


def _check_dataset(out):
    from image_stylization import style_dataset

    assert style_dataset.read_style_dataset(out).names == ["style0", "style1"]


def _check_export(out):
    import tensorflow as tf

    loaded = tf.saved_model.load(os.path.join(out, "saved_model"))
    names = loaded.signatures["style_names"]()["style_names"].numpy()
    assert [n.decode() for n in names] == ["one", "two"]


def _check_model_dir(out):
    from image_stylization import checkpoint

    assert len(checkpoint.load_model(out).style_names) == 2


def _check_trained(out):
    _check_model_dir(os.path.join(out, "model"))


def _check_evaluated(out):
    assert os.path.getsize(os.path.join(out, "losses.csv")) > 0
    with Image.open(os.path.join(out, "style_grid.png")) as im:
        im.load()


@dataclasses.dataclass
class Tool:
    """How to run one tool on the tiny assets.

    `args(assets, out)`: the flags of a run that works, writing to `out`. `output`: the flag
    that names what it writes and whether that is a "dir" or a "file". `inputs`: flag -> kind of
    input (see `_variants`). `again`: flags for a second run over the first one's outputs (the
    tool must replace them, or resume). `check(out)`: asserts that the outputs are complete.
    `isolated`: input flags whose truncated variant may hang (unreadable photos: run in a
    separate process with a timeout). `logs`: name prefixes of append-only logs a run may start even when it then fails
    (TensorBoard event files). `fresh_input`: the input the fresh-process case names wrongly
    (default: the last one). `pending`: case names that fail on this branch, with the reason.
    `resumes`: a second run resumes from the first one's checkpoints.
    """

    module: str
    args: callable
    output: tuple
    inputs: dict
    again: dict
    check: callable
    isolated: tuple = ()
    logs: tuple = ()
    fresh_input: str = None
    pending: dict = dataclasses.field(default_factory=dict)
    resumes: bool = False  # a second run resumes from the first one's checkpoints


TOOLS = {
    "image_stylization_transform": Tool(
        module="image_stylization.image_stylization_transform",
        args=lambda a, out: {"checkpoint": a["model"], "input_image": a["photo"],
                             "output_dir": out, "which_styles": "[1]"},
        output=("output_dir", "dir"),
        inputs={"input_image": "image", "checkpoint": "model"},
        again={}, check=_check_transform),
    "image_stylization_create_dataset": Tool(
        module="image_stylization.image_stylization_create_dataset",
        args=lambda a, out: {"style_files": a["styles"], "output_file": out,
                             "vgg_weights": a["weights"], "loss_network": "vgg16",
                             "end_points": "conv1,conv2", "style_image_size": "32"},
        output=("output_file", "file"),
        inputs={"style_files": "images", "vgg_weights": "weights"},
        again={"overwrite": "true"}, check=_check_dataset),
    "image_stylization_export": Tool(
        module="image_stylization.image_stylization_export",
        args=lambda a, out: {"checkpoint": a["model"], "export_dir": out},
        output=("export_dir", "dir"),
        inputs={"checkpoint": "model"},
        again={"overwrite": "true"}, check=_check_export),
    "image_stylization_convert": Tool(
        module="image_stylization.image_stylization_convert",
        args=lambda a, out: {"input": a["graphdef"], "output_dir": out},
        output=("output_dir", "dir"),
        inputs={"input": "graphdef"},
        again={"overwrite": "true"}, check=_check_model_dir),
    "image_stylization_train": Tool(
        module="image_stylization.image_stylization_train",
        args=lambda a, out: {"train_dir": out, "style_dataset_file": a["dataset"],
                             "content_source": a["photos"], "train_steps": "2",
                             "preset": "android_26", "alpha": "0.25", **TRAIN_FLAGS},
        output=("train_dir", "dir"),
        inputs={"style_dataset_file": "dataset", "content_source": "images",
                "vgg_weights": "weights"},
        again={"train_steps": "4"}, check=_check_trained,
        isolated=("content_source",), logs=("events.out.tfevents.",), resumes=True),
    "image_stylization_finetune": Tool(
        module="image_stylization.image_stylization_finetune",
        args=lambda a, out: {"checkpoint": a["model"], "train_dir": out,
                             "style_dataset_file": a["dataset"], "content_source": a["photos"],
                             "train_steps": "2", **TRAIN_FLAGS},
        output=("train_dir", "dir"),
        inputs={"checkpoint": "model", "style_dataset_file": "dataset",
                "content_source": "images"},
        again={"train_steps": "4"}, check=_check_trained,
        isolated=("content_source",), logs=("events.out.tfevents.",), resumes=True),
    "image_stylization_evaluate": Tool(
        module="image_stylization.image_stylization_evaluate",
        args=lambda a, out: {"checkpoint": a["model"], "style_dataset_file": a["dataset"],
                             "content_source": a["photos"], "eval_dir": out,
                             "grid_max_images": "2", **TRAIN_FLAGS},
        output=("eval_dir", "dir"),
        inputs={"checkpoint": "model", "style_dataset_file": "dataset",
                "content_source": "images"},
        again={}, check=_check_evaluated,
        isolated=("content_source",), logs=("events.out.tfevents.",)),
}


# Tools that write no files: a server runs until stopped, so the output and run-twice classes do
# not apply. Its own tests cover the rest (a bad flag and a missing extra: one line and exit 2
# from a fresh process; a taken port); its --checkpoint goes through the loader that the
# transform tool's "model" input cases above exercise.
SERVERS = {"image_stylization_app": "tests/test_app.py::test_entry_point"}


def test_every_tool_is_here():
    tree = ast.parse((REPO / "setup.py").read_text())
    entry_points = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                        if isinstance(node, ast.Assign)
                        and getattr(node.targets[0], "id", None) == "ENTRY_POINTS")
    assert sorted(entry_points) == sorted([*TOOLS, *SERVERS])


# ---------------------------------------------------------------------------------- the cases

# What an input of each kind looks like when it is empty, the wrong kind of thing, or truncated.
_FILE_KINDS = {"image": ".jpg", "weights": ".npz", "dataset": ".tfrecord", "graphdef": ".pb"}
_DIR_KINDS = ("model", "images")


def _asset_of(kind, assets):
    return {"image": assets["photo"], "weights": assets["weights"], "dataset": assets["dataset"],
            "graphdef": assets["graphdef"], "model": assets["model"],
            "images": assets["photos"]}[kind]


def _make_input(kind, fault, root, assets):
    """Creates the faulty input under `root` and returns its path."""
    if kind in _FILE_KINDS:
        path = os.path.join(root, "input" + _FILE_KINDS[kind])
        if fault == "empty":
            open(path, "wb").close()
        elif fault == "wrong_kind":
            os.mkdir(path)  # a directory with a file's name
        else:
            with open(_asset_of(kind, assets), "rb") as f:
                data = f.read()
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
        return path
    path = os.path.join(root, "input")
    if fault == "empty":
        os.mkdir(path)
    elif fault == "wrong_kind":
        with open(path, "w") as f:
            f.write("a text file where a folder belongs\n")
    else:
        shutil.copytree(_asset_of(kind, assets), path)
        for d, _, names in os.walk(path):
            for name in names:
                p = os.path.join(d, name)
                if name != "manifest.json":
                    os.truncate(p, os.path.getsize(p) // 2)
    return path


def _argv(flags_):
    return [f"--{k}={v}" for k, v in flags_.items()]


def _listing(root):
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, dirs, files in os.walk(root) for n in dirs + files)


class _Mounts:
    """tmpfs mounts made for the tests (root only), unmounted at the end."""

    def __init__(self):
        self.paths = []

    def mount(self, path, options):
        os.makedirs(path, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return False
        self.paths.append(path)
        return True

    def unmount_all(self):
        for path in reversed(self.paths):
            subprocess.run(["umount", path], capture_output=True)


def _can_mount():
    return sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("mount")


def _unwritable_dir(root, mounts):
    """A directory nobody may create anything in: read-only for a user; for root, a read-only
    tmpfs (or /sys, which refuses new files even to root)."""
    path = os.path.join(root, "readonly")
    if os.geteuid() != 0:
        os.mkdir(path)
        os.chmod(path, 0o555)
        return path
    if _can_mount() and mounts.mount(path, "ro,size=64k"):
        return path
    return "/sys"


def build_cases(name, tool, assets, root, mounts):
    """{case: (steps, info)} for every class of fault, for one tool."""
    flag, kind = tool.output
    cases = {}

    def new_root(case):
        r = os.path.join(root, case)
        os.makedirs(r)
        return r

    def out_path(r):
        return os.path.join(r, "out.tfrecord" if kind == "file" else "out")

    # 0. Fresh process: the last input names nothing (the last: the checks of the others need no
    # TensorFlow). Runs first, so TensorFlow's import is part of it.
    r = new_root("fresh")
    first = tool.fresh_input or list(tool.inputs)[-1]
    args = tool.args(assets, out_path(r))
    args[first] = os.path.join(r, "missing" + _FILE_KINDS.get(tool.inputs[first], ""))
    cases["fresh"] = ([{"argv": _argv(args)}], {"root": r, "names": args[first]})

    # 1. Output: the wrong kind of thing, under a file, in an unwritable directory.
    r = new_root("output_wrong_kind")
    out = out_path(r)
    if kind == "dir":
        with open(out, "w") as f:
            f.write("keep me\n")
    else:
        os.mkdir(out)
        with open(os.path.join(out, "keep.txt"), "w") as f:
            f.write("keep me\n")
    cases["output_wrong_kind"] = ([{"argv": _argv(tool.args(assets, out))}],
                                  {"root": r, "names": out})
    r = new_root("output_under_file")
    with open(os.path.join(r, "afile"), "w") as f:
        f.write("keep me\n")
    out = os.path.join(r, "afile", os.path.basename(out_path(r)))
    cases["output_under_file"] = ([{"argv": _argv(tool.args(assets, out))}],
                                  {"root": r, "names": os.path.join(r, "afile")})
    r = new_root("output_unwritable")
    ro = _unwritable_dir(r, mounts)
    out = os.path.join(ro, "image_stylization_test_out" + (".tfrecord" if kind == "file" else ""))
    cases["output_unwritable"] = ([{"argv": _argv(tool.args(assets, out))}],
                                  {"root": r, "names": ro, "unwritable": ro})

    # 2. Inputs: empty, the wrong kind of thing, truncated.
    for input_flag, input_kind in tool.inputs.items():
        for fault in ("empty", "wrong_kind", "truncated"):
            case = f"input_{fault}[{input_flag}]"
            r = new_root(case)
            path = _make_input(input_kind, fault, r, assets)
            args = tool.args(assets, out_path(r))
            args[input_flag] = path
            isolated = fault == "truncated" and input_flag in tool.isolated
            cases[case] = ([{"argv": _argv(args)}], {"root": r, "names": path, "isolated": isolated})

    # 3. Partial outputs of a killed run: a run, every output file cut in half, the run again.
    r = new_root("partial_outputs")
    out = out_path(r)
    again = _argv({**tool.args(assets, out), **tool.again})
    cases["partial_outputs"] = ([{"argv": _argv(tool.args(assets, out))},
                                 {"argv": again, "truncate": [out]}], {"root": r, "out": out})

    # 4. Disk full during a second run over the first one's outputs.
    r = new_root("disk_full_fsize")
    out = out_path(r)
    again = _argv({**tool.args(assets, out), **tool.again})
    cases["disk_full_fsize"] = ([{"argv": _argv(tool.args(assets, out)), "snapshot": r},
                                 {"argv": again, "fsize": FSIZE, "snapshot": r}],
                                {"root": r, "out": out})
    r = os.path.join(root, "disk_full_tmpfs")
    if _can_mount() and mounts.mount(r, "size=8m"):
        out = out_path(r)
        again = _argv({**tool.args(assets, out), **tool.again})
        filler = os.path.join(r, "filler")
        cases["disk_full_tmpfs"] = ([{"argv": _argv(tool.args(assets, out)), "snapshot": r},
                                     {"argv": again, "fill": filler, "snapshot": r}],
                                    {"root": r, "out": out, "filler": "filler"})
    return cases


def _run_driver(module, cases, workdir, timeout):
    cases_file = os.path.join(workdir, "cases.json")
    results_file = os.path.join(workdir, "results.json")
    with open(cases_file, "w") as f:
        json.dump(cases, f)
    try:
        proc = subprocess.run([sys.executable, str(DRIVER), module, cases_file, results_file],
                              env=tool_env(PYTHONPATH=str(REPO)), cwd=workdir,
                              capture_output=True, text=True, timeout=timeout)
        crashed = proc.returncode != 0 and f"driver exit {proc.returncode}: {proc.stderr[-2000:]}"
    except subprocess.TimeoutExpired:
        crashed = f"timed out after {timeout} s"
    results = {}
    if os.path.exists(results_file):
        with open(results_file) as f:
            results = json.load(f)
    for case, steps in cases.items():
        if len(results.get(case, [])) < len(steps):
            results[case] = [{"status": "no result", "stdout": "", "stderr": crashed or "?"}]
    return results


_RESULTS = {}


@pytest.fixture(scope="module")
def results(assets, tmp_path_factory):
    """{tool: {case: (step results, info)}}, each tool's cases run by the driver on first use."""
    mounts = _Mounts()

    def get(name):
        if name not in _RESULTS:
            tool = TOOLS[name]
            root = str(tmp_path_factory.mktemp(name))
            cases = build_cases(name, tool, assets, root, mounts)
            # Known failures are not run (a hang costs minutes): their tests xfail at once.
            cases = {c: v for c, v in cases.items() if c not in tool.pending}
            main = {c: s for c, (s, info) in cases.items() if not info.get("isolated")}
            isolated = {c: s for c, (s, info) in cases.items() if info.get("isolated")}
            workdir = tempfile.mkdtemp(dir=root)
            out = _run_driver(tool.module, main, workdir, timeout=900)
            for case, steps in isolated.items():
                # One process each: a hang costs its own case only.
                out.update(_run_driver(tool.module, {case: steps}, tempfile.mkdtemp(dir=root),
                                       timeout=120))
            _RESULTS[name] = {c: (out[c], info) for c, (s, info) in cases.items()}
        return _RESULTS[name]

    yield get
    mounts.unmount_all()


def _pending(name, case):
    reason = TOOLS[name].pending.get(case)
    if reason:
        pytest.xfail(f"not run: {reason}")


def _one_line(result, *, status=(2,), names=None):
    """The run failed with `status` and exactly one line on stderr naming `names`."""
    assert "Traceback" not in result["stderr"], result["stderr"]
    lines = [l for l in result["stderr"].splitlines() if l.strip()]
    assert result["status"] in status, result
    assert len(lines) == 1 and "error:" in lines[0], result["stderr"]
    if names is not None:
        assert os.path.basename(os.path.normpath(names)) in lines[0], lines[0]
    return lines[0]


def _ends_in_one_error(result, *, status=(1,)):
    """A run that did some work (its own progress lines), then failed: one error line, last."""
    from image_stylization import tf_log_filter

    assert "Traceback" not in result["stderr"], result["stderr"]
    lines = [l for l in result["stderr"].splitlines() if l.strip()]
    assert result["status"] in status, result
    assert lines and "error:" in lines[-1], result["stderr"]
    assert [l for l in lines if "error:" in l] == lines[-1:], result["stderr"]
    assert all(tf_log_filter.keep(l.encode(), 1) for l in lines), result["stderr"]


# ---------------------------------------------------------------------------------- the tests

ALL = sorted(TOOLS)
INPUTS = [(name, flag) for name in ALL for flag in TOOLS[name].inputs]


@pytest.mark.parametrize("name", ALL)
def test_first_failure_in_a_fresh_process_is_one_line(name, results):
    """A newcomer's first mistake: exactly one line, no TensorFlow start-up lines."""
    _pending(name, "fresh")
    (result,), info = results(name)["fresh"]
    _one_line(result, names=info["names"])
    assert result["stdout"] == ""
    assert _listing(info["root"]) == []


@pytest.mark.parametrize("name", ALL)
def test_good_run_prints_only_our_lines(name, results):
    from image_stylization import tf_log_filter

    _pending(name, "partial_outputs")
    (first, _), _ = results(name)["partial_outputs"]
    assert first["status"] == 0, first["stderr"]
    for line in (first["stdout"] + first["stderr"]).splitlines(keepends=True):
        assert tf_log_filter.keep(line.encode(), 1), line  # no C++ record, no absl banner
        assert "Warning:" not in line and "WARNING:" not in line, line


@pytest.mark.parametrize("name", ALL)
def test_output_exists_as_the_wrong_kind(name, results):
    _pending(name, "output_wrong_kind")
    (result,), info = results(name)["output_wrong_kind"]
    _one_line(result, names=info["names"])
    kind = TOOLS[name].output[1]
    assert _listing(info["root"]) == (["out"] if kind == "dir" else ["out.tfrecord", "out.tfrecord/keep.txt"])
    kept = os.path.join(info["names"], *([] if kind == "dir" else ["keep.txt"]))
    with open(kept) as f:
        assert f.read() == "keep me\n"


@pytest.mark.parametrize("name", ALL)
def test_output_under_a_file(name, results):
    _pending(name, "output_under_file")
    (result,), info = results(name)["output_under_file"]
    _one_line(result, names=info["names"])
    assert _listing(info["root"]) == ["afile"]
    with open(os.path.join(info["root"], "afile")) as f:
        assert f.read() == "keep me\n"


@pytest.mark.parametrize("name", ALL)
def test_output_in_an_unwritable_directory(name, results):
    _pending(name, "output_unwritable")
    (result,), info = results(name)["output_unwritable"]
    _one_line(result, names=None)
    assert os.path.basename(info["unwritable"]) in result["stderr"] or "out" in result["stderr"]
    assert not os.path.exists(os.path.join(info["unwritable"], "image_stylization_test_out"))


@pytest.mark.parametrize("fault", ["empty", "wrong_kind", "truncated"])
@pytest.mark.parametrize("name,flag", INPUTS)
def test_bad_input(name, flag, fault, results):
    """An input that yields nothing, is the wrong kind of thing, or was cut off mid-write."""
    case = f"input_{fault}[{flag}]"
    _pending(name, case)
    (result,), info = results(name)[case]
    _one_line(result, names=info["names"])
    assert not [p for p in _listing(info["root"]) if p.startswith("out")]


@pytest.mark.parametrize("name", ALL)
def test_partial_outputs_of_a_killed_run_are_replaced(name, results):
    _pending(name, "partial_outputs")
    (first, second), info = results(name)["partial_outputs"]
    assert first["status"] == 0, first["stderr"]
    if TOOLS[name].resumes:
        # Every checkpoint cut in half: nothing to resume from. Starting again from step 0
        # would let the checkpoint manager delete files a user may still recover, so the run
        # stops in one line that names the directory and says how to start over.
        _one_line(second, names=info["out"])
        assert "no checkpoint there can be read" in second["stderr"]
        assert "Move the ckpt-* files away" in second["stderr"]
        return
    assert second["status"] == 0, second["stderr"]
    TOOLS[name].check(info["out"])


@pytest.mark.parametrize("method", ["fsize", "tmpfs"])
@pytest.mark.parametrize("name", ALL)
def test_disk_full_keeps_the_previous_outputs(name, method, results):
    case = f"disk_full_{method}"
    if case not in results(name):
        pytest.skip("mounting a tmpfs needs root on Linux (the RLIMIT_FSIZE case covers the rest)")
    _pending(name, case)
    (first, second), info = results(name)[case]
    assert first["status"] == 0, first["stderr"]
    _ends_in_one_error(second)
    before = {k: v for k, v in first["snapshot"].items() if k != info.get("filler")}
    after = {k: v for k, v in second["snapshot"].items() if k != info.get("filler")
             and not (k not in before and os.path.basename(k).startswith(TOOLS[name].logs))}
    assert after == before  # every earlier output byte-identical, no temporary file left
    TOOLS[name].check(info["out"])
