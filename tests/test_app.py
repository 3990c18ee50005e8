"""image_stylization_app's REST API: results equal `stylize()` (named styles and paintings), bad
input is a JSON 400/413 and the server keeps serving, a blend takes one kind of style,
simultaneous requests queue (one inference at a time), the entry point."""

import asyncio
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="needs the [app] extra (fastapi, uvicorn, python-multipart)")
pytest.importorskip("uvicorn", reason="needs the [app] extra")
pytest.importorskip("python_multipart", reason="needs the [app] extra")
httpx = pytest.importorskip("httpx2", reason="needs httpx2 (the [test] extra)")

from fastapi.testclient import TestClient  # noqa: E402

from image_stylization import app as app_lib  # noqa: E402
from image_stylization import checkpoint, errors, image_io  # noqa: E402
from image_stylization.arbitrary import demo_paintings, load_arbitrary_model  # noqa: E402
from image_stylization.model import build_transformer, norm_layers  # noqa: E402
from image_stylization.stylize import (  # noqa: E402
    demo_image_path, load_model, parse_which_styles, style_names_of, stylize)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_UPLOAD_MB = 0.25


@pytest.fixture(scope="module")
def model():
    return load_model()  # the bundled 26-style model, shared with the other test modules


@pytest.fixture(scope="module")
def arbitrary_model():
    return load_arbitrary_model()  # the bundled arbitrary_v1


@pytest.fixture(scope="module")
def web(model, arbitrary_model):
    return app_lib.create_app(model=model, max_upload_mb=MAX_UPLOAD_MB, max_size_limit=512,
                              thumbnail_size=16, arbitrary_model=arbitrary_model)


@pytest.fixture(scope="module")
def client(web):
    with TestClient(web) as c:
        yield c


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A small crop of the demo photo as PNG: (path, bytes)."""
    path = tmp_path_factory.mktemp("photo") / "face.png"
    Image.open(demo_image_path()).crop((150, 40, 350, 190)).resize((80, 60)).save(path)
    return str(path), path.read_bytes()


def _selection(text, model):
    selection = parse_which_styles(text, style_names_of(model))
    return selection[0] if isinstance(selection, list) else selection  # one image


def _png(response):
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def _post(client, data, fields, name="face.png"):
    return client.post("/api/stylize", files={"image": (name, data, "image/png")}, data=fields)


def _assert_equal_within_one_level(got, expected):
    expected = np.asarray(expected)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_styles_and_thumbnails(client, model):
    body = client.get("/api/styles").json()
    names = style_names_of(model)
    assert body["names"] == names
    named = [s for s in body["styles"] if s["kind"] == "named"]  # paintings follow, if any
    assert [s["name"] for s in named] == names == [s["name"] for s in body["styles"][:len(names)]]
    assert [s["key"] for s in named] == [str(i) for i in range(len(names))]
    tiles = []
    for entry in body["styles"][:4]:
        tiles.append(_png(client.get(entry["thumbnail"])))
    assert tiles[0].shape == (16, 16, 3)  # the demo photo is square
    # Thumbnails are pastiches in different styles, not one picture repeated.
    assert min(np.abs(a.astype(int) - b).mean() for a, b in zip(tiles, tiles[1:])) > 5
    assert client.get(f"/api/styles/{len(names)}/thumbnail.png").status_code == 404
    config = client.get("/api/config").json()
    assert config["max_upload_mb"] == MAX_UPLOAD_MB and config["max_size_limit"] == 512
    assert config["style_kinds"] == ["named", "painting"] and config["max_paintings"] == 32
    assert client.get("/api/demo.jpg").content == open(demo_image_path(), "rb").read()


@pytest.mark.parametrize("fields, kwargs", [
    ({"styles": "{19: 60, 'Great Wave': 40}", "strength": "0.7", "preserve_color": "true"},
     {"strength": 0.7, "preserve_color": True}),
    ({"styles": "7"}, {}),
    ({"styles": "starry night", "max_size": "40"}, {"max_size": 40}),
])
def test_result_equals_stylize(client, model, photo, fields, kwargs):
    path, data = photo
    r = _post(client, data, fields)
    got = _png(r)
    expected = stylize(path, _selection(fields["styles"], model), model=model, **kwargs)
    _assert_equal_within_one_level(got, expected)
    assert r.headers["x-image-size"] == f"{got.shape[1]}x{got.shape[0]}"
    assert "stylize;dur=" in r.headers["server-timing"]


def test_pages_and_api_description(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    # The page may load nothing from anywhere else; the browser enforces the policy.
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "app.css", "favicon.svg"):
        assert client.get(f"/static/{name}").status_code == 200
    assert "http" not in client.get("/static/app.css").text  # no remote fonts or images
    assert client.get("/static/../app.py").status_code == 404
    spec = client.get("/openapi.json").json()
    form = spec["paths"]["/api/stylize"]["post"]["requestBody"]["content"]["multipart/form-data"]
    schema = form["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    fields = {"image", "styles", "strength", "preserve_color", "max_size"}
    assert fields <= set(schema["properties"])
    assert client.get("/docs").status_code == 404  # Swagger UI would load scripts from a CDN


def _truncated(data):
    return data[: len(data) // 2]


@pytest.mark.parametrize("upload, fields, message", [
    (b"not an image", {"styles": "1"}, "x.png: not an image file Pillow can read"),
    ("truncated", {"styles": "1"}, "x.png: cannot read image"),
    ("tiny", {"styles": "1"}, "the network needs both sides >= 16 px"),
    ("photo", {"styles": "{1: 1, 26: 1}"}, "styles: style index 26 is out of range"),
    ("photo", {"styles": "{1: -1}"}, "styles: weight of style 1 must be >= 0"),
    ("photo", {"styles": "{1: 0}"}, "styles: style weights sum to 0"),
    ("photo", {"styles": "[1, 2]"}, "styles: a list gives one image per style"),
    ("photo", {"styles": "{1: 1"}, "styles: cannot parse"),
    ("photo", {"styles": "no such painting"}, "styles: unknown style name"),
    ("photo", {}, "styles: Field required"),
    ("photo", {"styles": "1", "strength": "1.5"},
     "strength: Input should be less than or equal to 1"),
    ("photo", {"styles": "1", "strength": "nan"}, "strength:"),
    ("photo", {"styles": "1", "preserve_color": "maybe"}, "preserve_color:"),
    ("photo", {"styles": "1", "max_size": "4096"},
     "max_size: Input should be less than or equal to 512"),
    ("photo", {"styles": "1", "max_size": "8"}, "max_size: must be 0 (full size) or >= 16"),
    ("big", {"styles": "1", "max_size": "0"},
     "x.png is 600x20 px; this server stylizes at most 512 px"),
])
def test_bad_input_is_a_json_400_and_the_server_goes_on(client, photo, upload, fields, message):
    _, good = photo
    made = {
        "photo": good,
        "truncated": _truncated(good),
        "tiny": _encode(np.zeros((8, 40, 3), np.uint8)),
        "big": _encode(np.zeros((20, 600, 3), np.uint8)),
    }
    data = made.get(upload, upload)
    r = _post(client, data, fields, name="x.png")
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert message in error and "\n" not in error
    assert _png(_post(client, good, {"styles": "1"})).shape == (60, 80, 3)


def test_missing_image_and_decompression_bomb(client, photo, monkeypatch):
    r = client.post("/api/stylize", data={"styles": "1"})
    assert r.status_code == 400 and r.json()["error"] == "image: Field required"
    monkeypatch.setattr(app_lib, "MAX_INPUT_PIXELS", 1000)
    r = _post(client, photo[1], {"styles": "1"}, name="huge.png")
    assert r.status_code == 400
    assert r.json()["error"].startswith("huge.png: image is 80x60 px, more than 0.001 megapixels")


def _encode(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_upload_over_the_limit_is_413(client, photo):
    limit = int(MAX_UPLOAD_MB * 2**20)
    big = os.urandom(limit + 1000)
    r = _post(client, big, {"styles": "1"})  # Content-Length says it: refused before parsing
    assert r.status_code == 413
    assert r.json()["error"].startswith("upload too large: this server takes at most 0.25 MB")

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(8):
            yield b"x" * (limit // 4)

    r = client.post("/api/stylize", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "0.25 MB" in r.json()["error"]
    assert _png(_post(client, photo[1], {"styles": "1"})).shape == (60, 80, 3)


@pytest.fixture(scope="module")
def server(web):
    with app_lib.BackgroundServer(web) as s:
        yield s


def test_over_the_limit_through_a_real_socket(server, photo):
    # The upload is drained before the 413, so a client still sending reads the answer.
    big = os.urandom(int(MAX_UPLOAD_MB * 2**20) * 4)
    r = httpx.post(f"{server.url}/api/stylize", files={"image": ("big.png", big, "image/png")},
                   data={"styles": "1"}, timeout=60)
    assert r.status_code == 413 and "--max_upload_mb" in r.json()["error"]
    r = httpx.post(f"{server.url}/api/stylize", files={"image": ("f.png", photo[1], "image/png")},
                   data={"styles": "1"}, timeout=60)
    assert r.status_code == 200


def test_eight_simultaneous_requests_all_succeed_one_inference_at_a_time(
        server, web, model, photo, monkeypatch):
    path, data = photo
    running, peak, lock = [0], [0], threading.Lock()

    def watched(real):
        def run(*args, **kwargs):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            try:
                time.sleep(0.05)  # widen the window in which a second inference could start
                return real(*args, **kwargs)
            finally:
                with lock:
                    running[0] -= 1
        return run

    monkeypatch.setattr(app_lib, "render_png", watched(app_lib.render_png))
    # Reading a painting's style is inference too: it waits in the same queue.
    catalog = web.state.catalog
    monkeypatch.setattr(catalog, "read_painting", watched(catalog.read_painting))
    blends = [f"{{{i}: {i + 1}, {25 - i}: 3}}" for i in range(8)]
    paintings = ["pointillism.jpg", "stained_glass.jpg"]
    start = threading.Barrier(8 + len(paintings))
    results = [None] * (8 + len(paintings))

    def call(k):
        start.wait()
        if k < 8:
            results[k] = httpx.post(
                f"{server.url}/api/stylize", files={"image": ("face.png", data, "image/png")},
                data={"styles": blends[k], "max_size": "64"}, timeout=120)
        else:
            name = paintings[k - 8]
            results[k] = httpx.post(
                f"{server.url}/api/paintings", timeout=120,
                files={"painting": (name, open(PAINTINGS[name], "rb").read(), "image/jpeg")})

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert [r.status_code for r in results] == [200] * len(results), [r.text for r in results]
    assert peak[0] == 1  # queued, never two inferences at once
    assert [r.json()["name"] for r in results[8:]] == paintings
    for blend, r in zip(blends, results[:8]):  # each answer is its own request's blend
        _assert_equal_within_one_level(
            _png(r), stylize(path, _selection(blend, model), model=model, max_size=64))


def test_queue_refuses_when_full():
    queue = app_lib.InferenceQueue(max_waiting=1)
    release = threading.Event()

    async def scenario():
        first = asyncio.ensure_future(queue.run(release.wait, 30))
        await asyncio.sleep(0.05)
        with pytest.raises(app_lib.RequestError) as e:
            await queue.run(lambda: None)
        assert e.value.status == 503 and "busy" in str(e.value)
        release.set()
        assert await first is True
        assert queue.waiting == 0
        assert await queue.run(lambda: 7) == 7

    try:
        asyncio.run(scenario())
    finally:
        queue.close()


def test_missing_extra_is_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi -> ImportError
    with pytest.raises(errors.DependencyError) as e:
        app_lib.require_app_extra()
    assert str(e.value) == ('the web app needs the [app] extra (fastapi not installed): '
                            'pip install "image_stylization[app]"')
    assert isinstance(e.value, errors.InputError)  # cli.run: one line, exit 2


# ----------------------------------------------------------------------------- paintings

PAINTINGS = {os.path.basename(p): p for p in demo_paintings()}  # CC0, in the package


def _upload(client, name, data=None, filename=None):
    data = open(PAINTINGS[name], "rb").read() if data is None else data
    return client.post("/api/paintings",
                       files={"painting": (filename or name, data, "image/jpeg")})


@pytest.fixture(scope="module")
def painting_keys(client):
    """{stem: key} of two paintings uploaded once for the module."""
    keys = {}
    for stem in ("cubist", "waves"):
        r = _upload(client, f"{stem}.jpg")
        assert r.status_code == 200, r.text
        keys[stem] = r.json()["key"]
    return keys


def test_a_painting_becomes_a_style_entry(client, web, arbitrary_model, painting_keys,
                                          monkeypatch):
    key = painting_keys["cubist"]
    entry = {"key": key, "name": "cubist.jpg", "kind": "painting",
             "thumbnail": f"/api/paintings/{key}/thumbnail.png",
             "painting": f"/api/paintings/{key}/painting.png"}
    assert entry in client.get("/api/styles").json()["styles"]
    # The tile: the demo photo in the painting's style (made at twice the tile size, shrunk),
    # and the painting itself.
    demo = image_io.resize_max(image_io.load_image(demo_image_path()), 32)
    pastiche = stylize(demo, style_image=PAINTINGS["cubist.jpg"], model=arbitrary_model,
                       max_size=None)
    _assert_equal_within_one_level(_png(client.get(entry["thumbnail"])),
                                   image_io.to_uint8(image_io.resize_max(pastiche, 16)))
    _assert_equal_within_one_level(
        _png(client.get(entry["painting"])),
        image_io.to_uint8(image_io.resize_max(image_io.load_image(PAINTINGS["cubist.jpg"]), 16)))
    assert client.get("/api/paintings/painting:0000/thumbnail.png").status_code == 404

    # The same bytes again (another name): the entry held, read from the cache, not the network.
    catalog = web.state.catalog
    monkeypatch.setattr(catalog, "read_painting", lambda *a: pytest.fail("not cached"))
    assert _upload(client, "cubist.jpg", filename="copy.jpg").json() == entry
    monkeypatch.undo()
    # Another painting under a name already held gets a unique one (the command line names it).
    r = _upload(client, "geometric.jpg", filename="cubist.jpg")
    assert r.json()["name"] == "cubist-2.jpg" and r.json()["key"] != key


@pytest.mark.parametrize("styles, kwargs, reference", [
    ("{cubist}", {"strength": "0.7", "preserve_color": "true"},  # a bare key, as curl sends it
     {"style_image": PAINTINGS["cubist.jpg"], "strength": 0.7, "preserve_color": True}),
    ("{{'{cubist}': 60, '{waves}': 40}}", {"max_size": "40"},
     {"style_image": [PAINTINGS["cubist.jpg"], PAINTINGS["waves.jpg"]], "weights": [0.6, 0.4],
      "max_size": 40}),
])
def test_painting_result_equals_stylize(client, arbitrary_model, painting_keys, photo, styles,
                                        kwargs, reference):
    path, data = photo
    r = _post(client, data, dict(kwargs, styles=styles.format(**painting_keys)))
    expected = stylize(path, model=arbitrary_model, **reference)
    _assert_equal_within_one_level(_png(r), expected)


@pytest.mark.parametrize("upload, message", [
    (b"not an image", "x.jpg: not an image file Pillow can read"),
    ("truncated", "x.jpg: cannot read image"),
    ("bomb", "x.jpg: image is 384x384 px, more than 0.001 megapixels"),
    (None, "painting: Field required"),
])
def test_bad_painting_is_a_json_400_and_the_server_goes_on(client, painting_keys, photo, upload,
                                                           message, monkeypatch):
    good = open(PAINTINGS["swirls.jpg"], "rb").read()
    if upload is None:
        r = client.post("/api/paintings", data={"name": "x"})
    else:
        if upload == "bomb":
            monkeypatch.setattr(app_lib, "MAX_INPUT_PIXELS", 1000)
        r = _upload(client, "x", good if upload == "bomb" else
                    _truncated(good) if upload == "truncated" else upload, filename="x.jpg")
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert message in error and "\n" not in error
    monkeypatch.undo()
    styles = "{{'{cubist}': 1, '{waves}': 1}}".format(**painting_keys)
    assert _png(_post(client, photo[1], {"styles": styles})).shape == (60, 80, 3)


def test_painting_over_the_limit_is_413(client):
    r = _upload(client, "x", os.urandom(int(MAX_UPLOAD_MB * 2**20) + 1000), filename="big.jpg")
    assert r.status_code == 413 and "--max_upload_mb" in r.json()["error"]


@pytest.mark.parametrize("styles, message", [
    ("{{'{cubist}': 1, 3: 1}}", app_lib.MIXED_KINDS),
    ("{{'starry night': 1, '{waves}': 1}}", app_lib.MIXED_KINDS),
    ("['{cubist}', '{waves}']", "styles: a list gives one image per style"),
    ("{{'{cubist}': 1, '{waves}': -1}}", "styles: blend weights must be >= 0, got -1"),
    ("{{'{cubist}': 0}}", "styles: blend weights sum to 0"),
    ("'painting:0123456789abcdef'",
     "styles: no painting painting:0123456789abcdef on this server (it keeps the 32 most "
     "recently used): upload it again with POST /api/paintings"),
])
def test_a_blend_takes_named_styles_or_paintings(client, painting_keys, photo, styles, message):
    r = _post(client, photo[1], {"styles": styles.format(**painting_keys)})
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(message)


def _painting(key, name):
    return app_lib.Painting(key, name, np.zeros(100, np.float32), b"", b"")


def test_painting_cache_is_bounded_least_recently_used_first():
    cache = app_lib.PaintingCache(capacity=2)
    cache.add(_painting("painting:a", "a.jpg"))
    cache.add(_painting("painting:b", "a.jpg"))  # another painting, the same file name
    assert [p.name for p in cache.all()] == ["a.jpg", "a-2.jpg"]
    assert cache.get("painting:a").name == "a.jpg"  # used: now b is the least recent
    assert cache.add(_painting("painting:a", "other.jpg")).name == "a.jpg"  # held: kept as is
    cache.add(_painting("painting:c", "c.jpg"))
    assert len(cache) == 2 and cache.get("painting:b") is None
    assert [p.key for p in cache.all()] == ["painting:a", "painting:c"]  # in the order added
    assert app_lib.painting_key(b"x") == app_lib.painting_key(b"x") != app_lib.painting_key(b"y")
    assert app_lib.clean_filename("C:\\paintings\\a\x00b.jpg") == "ab.jpg"
    assert app_lib.clean_filename("") == "painting.png"


def test_without_paintings_and_with_an_arbitrary_model_as_checkpoint(model, arbitrary_model,
                                                                     photo):
    with pytest.raises(errors.CheckpointError, match="is an arbitrary-style model"):
        app_lib.create_app(model=arbitrary_model)
    web = app_lib.create_app(model=model, paintings=False, thumbnail_size=8)
    with TestClient(web) as client:
        assert client.get("/api/config").json()["style_kinds"] == ["named"]
        r = _upload(client, "cubist.jpg")
        assert r.status_code == 404 and "--nopaintings" in r.json()["error"]
        r = _post(client, photo[1], {"styles": "'painting:0123456789abcdef'"})
        assert r.status_code == 400 and "--nopaintings" in r.json()["error"]


# ----------------------------------------------------------------------------- the entry point


def _run_app(*args, env_extra=None, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    env.update(env_extra or {})
    return subprocess.Popen(
        [sys.executable, "-m", "image_stylization.image_stylization_app", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def _ours(stderr):
    # TensorFlow's C++ start-up lines (printed at import whatever TF_CPP_MIN_LOG_LEVEL says, in
    # TF 2.21) are another branch's work (issue 11); every other line must be ours.
    return [line for line in stderr.splitlines() if line.strip() and not (
        line.startswith("WARNING: All log messages before absl::InitializeLog()")
        or re.match(r"I0000 .*port\.cc:\d+\] oneDNN custom operations are on", line))]


def _one_line_exit_2(proc):
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err)
    lines = _ours(err)
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_bind_refuses_a_taken_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(OSError):
            app_lib.bind("127.0.0.1", taken.getsockname()[1])
    sock = app_lib.bind("127.0.0.1", 0)
    try:
        assert app_lib.url_of(sock) == f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    model = build_transformer(2, preset="android_26")
    rng = np.random.default_rng(0)
    for layer in norm_layers(model):
        layer.beta.assign(rng.normal(0, 0.5, layer.beta.shape).astype(np.float32))
    return checkpoint.save_model(model, str(tmp_path_factory.mktemp("ckpt") / "tiny"),
                                 ["Left", "Right"])


def test_entry_point(tiny_checkpoint, photo, tmp_path):
    # Three processes at once, as each pays TensorFlow's import (the package imports it): one
    # serves until Ctrl-C, one has a bad flag, one lacks the [app] extra.
    # --nopaintings: the arbitrary-style network is loaded in-process by the other tests.
    serving = _run_app("--port=0", f"--checkpoint={tiny_checkpoint}", "--max_upload_mb=1",
                       "--nopaintings")
    bad_flag = _run_app("--port=70000")
    fake = tmp_path / "no_fastapi" / "fastapi"  # a stand-in `fastapi` that cannot be imported
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('not installed')\n")
    no_extra = _run_app(env_extra={"PYTHONPATH": os.pathsep.join(
        [str(fake.parent), REPO, os.environ.get("PYTHONPATH", "")])})
    try:
        assert _one_line_exit_2(bad_flag) == (
            "image_stylization_app.py: error: --port must be in 0..65535, got 70000")
        assert _one_line_exit_2(no_extra) == (
            "image_stylization_app.py: error: the web app needs the [app] extra (fastapi not "
            'installed): pip install "image_stylization[app]"')
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = serving.stdout.readline()
            if not line:
                break
            if line.startswith("Serving on "):
                url = line.split()[2]
        assert url, serving.stderr.read() if serving.poll() is not None else "no 'Serving on'"
        assert httpx.get(f"{url}/api/styles", timeout=30).json()["names"] == ["Left", "Right"]
        assert httpx.get(f"{url}/api/config", timeout=30).json()["style_kinds"] == ["named"]
        r = httpx.post(f"{url}/api/stylize", files={"image": ("f.png", photo[1], "image/png")},
                       data={"styles": "{'Left': 1, 'Right': 1}"}, timeout=60)
        assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
        serving.send_signal(signal.SIGINT)  # Ctrl-C
        serving.wait(60)
        assert serving.returncode == 0
        assert _ours(serving.stderr.read()) == []
    finally:
        for proc in (serving, bad_flag, no_extra):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
