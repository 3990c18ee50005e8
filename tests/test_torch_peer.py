"""bench/torch_peer.py, the PyTorch peer of our training step, computes what our TF step computes.

Runs only where torch is installed: in the peer's own venv (pip install -r
bench/requirements-torch.txt, plus pip install -e ".[cpu,test]"). CI has no torch and skips it.
"""

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO, shared_path

torch = pytest.importorskip("torch", reason="torch is not installed (bench/requirements-torch.txt)")

SCRIPT = REPO / "bench" / "torch_peer.py"


def _peer():
    spec = importlib.util.spec_from_file_location("torch_peer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO)


@pytest.fixture(scope="module")
def peer():
    return _peer()


@pytest.fixture(scope="module")
def vgg_weights():
    shared_path("styles")
    shared_path("content")
    return str(shared_path("vgg", "vgg19_notop_q8.npz"))


@pytest.mark.slow
def test_peer_step_is_our_step(peer, vgg_weights):
    """Forward outputs, every loss term and every transformer gradient match the TF package."""
    result = peer.run_check(size=32, batch=2, modes=("eager", "channels_last"),
                            vgg_weights=vgg_weights, log=lambda *_: None)
    failed = [row for row in result["rows"] if not row[3]]
    assert not failed, failed
    names = [row[0] for row in result["rows"]]
    for mode in ("eager", "channels_last"):
        assert any(n.startswith(f"{mode}: gradients vs TF float32") for n in names)
        assert any(n.startswith(f"{mode}: style_loss/block4_conv4") for n in names)
        assert any(n.startswith(f"{mode}: transformer output") for n in names)
    assert any(n.startswith("one Adam step") for n in names)


def _no_caffe_mean(setup):
    setup.loss_net.mean.zero_()


def _one_gamma_row(setup):
    with torch.no_grad():
        setup.transformer.layers[4].gamma[0].mul_(1.01)


@pytest.mark.slow
@pytest.mark.parametrize("perturb, must_fail, must_pass", [
    # VGG fed without the mean subtraction: the transformer still agrees, losses and gradients do not.
    (_no_caffe_mean,
     ("eager: content_loss,", "eager: gradients vs TF float32", "TF float32 gradients vs this script"),
     ("eager: transformer output",)),
    # One style row of one CIN layer 1% off: output, losses and gradients disagree.
    (_one_gamma_row,
     ("eager: transformer output", "eager: total_loss,", "eager: gradients vs TF float32",
      "TF float32 gradients vs this script"),
     ()),
])
def test_check_catches_a_different_computation(peer, vgg_weights, perturb, must_fail, must_pass):
    result = peer.run_check(size=32, batch=2, modes=("eager",), vgg_weights=vgg_weights,
                            perturb=perturb, log=lambda *_: None)
    assert not result["ok"]
    by_name = {row[0]: row[3] for row in result["rows"]}
    for prefix in must_fail:
        assert [ok for n, ok in by_name.items() if n.startswith(prefix)] == [False], prefix
    for prefix in must_pass:
        assert [ok for n, ok in by_name.items() if n.startswith(prefix)] == [True], prefix


@pytest.mark.slow
def test_cli_times_a_step_and_writes_json(tmp_path, vgg_weights):
    out = tmp_path / "peer.json"
    r = _run("--size", "32", "--batch", "2", "--modes", "eager,channels_last", "--steps", "2",
             "--warmup", "1", "--threads", "2", "--json", str(out), "--vgg_weights", vgg_weights)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert set(result["modes"]) == {"eager", "channels_last"}
    for mode in result["modes"].values():
        assert len(mode["times_s"]) == 2 and mode["median_s"] > 0
        # Real inputs: a meaningful, finite loss.
        assert all(0 < loss < float("inf") for loss in mode["losses"])
    assert result["style_source"] == "paintings" and result["content_source"] != "random"
    assert result["best_median_s"] == min(m["median_s"] for m in result["modes"].values())
    assert "median step" in r.stdout and "best:" in r.stdout
    assert not list(tmp_path.glob(".torch_peer.*"))  # no temp file left behind


@pytest.mark.parametrize("args, needle", [
    (("--modes", "eager,fast"), "--modes"),
    (("--size", "0"), "--size"),
    (("--vgg_weights", "/nonexistent/vgg.npz", "--steps", "1"), "/nonexistent/vgg.npz"),
])
def test_cli_usage_errors_exit_2_in_one_line(tmp_path, args, needle):
    out = tmp_path / "peer.json"
    r = _run(*args, "--json", str(out))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not out.exists()
