"""image_stylization_app's page in a real headless browser: Debian's Chromium (/usr/bin/chromium,
from apt; .ci/run installs it) driven by Playwright, which downloads nothing here.

Also a script: `python tests/test_app_browser.py --screenshot docs/app_screenshot.png` takes the
page's screenshot from the demo photo with a blend in progress, and prints the preview round
trips the page measured while a slider was dragged.
"""

import argparse
import ast
import os
import re
import shutil
import statistics
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="needs the [app] extra (fastapi, uvicorn, python-multipart)")
pytest.importorskip("uvicorn", reason="needs the [app] extra")
pytest.importorskip("python_multipart", reason="needs the [app] extra")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the [test] extra)")

from image_stylization import app as app_lib  # noqa: E402
from image_stylization import style_images  # noqa: E402
from image_stylization.arbitrary import demo_paintings, load_arbitrary_model  # noqa: E402
from image_stylization.image_stylization_transform import describe_style  # noqa: E402
from image_stylization.stylize import (  # noqa: E402
    demo_image_path, load_model, parse_which_styles, style_names_of, stylize)

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs Debian's Chromium: apt-get install -y chromium (.ci/run installs it)")

# The flags the machine notes give for Chromium on a closed network: without the background
# networking ones it keeps trying to reach Google's hosts. The fake media flags give the page a
# camera (a generated test pattern) and grant it without a prompt.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]
# The page's Content-Security-Policy forbids eval, so page.evaluate and wait_for_function get
# functions ("() => ..."), never bare expressions (which Playwright evaluates with eval).
# What Chromium itself logs for a fetch answered 4xx; the page shows the server's message.
ALL_THUMBNAILS_LOADED = (
    "() => [...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth)")
HTTP_ERROR_LOG = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


class Watched:
    """A page that records console errors, uncaught exceptions and requests leaving the server."""

    def __init__(self, browser, base_url, viewport=(1280, 900)):
        self.context = browser.new_context(
            accept_downloads=True, viewport={"width": viewport[0], "height": viewport[1]})
        self.errors, self.foreign = [], []
        self.context.route(re.compile(r"^(?!" + re.escape(base_url) + r"/)"), self._foreign)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.goto(base_url)
        self.page.wait_for_selector("body[data-ready=true]")

    def _foreign(self, route):
        self.foreign.append(route.request.url)
        route.abort()

    def close(self):
        self.context.close()


def attr(page, name, selector="#result"):
    return page.get_attribute(selector, name)


def count(page, name):
    return int(attr(page, f"data-{name}"))


def wait_for_result(page):
    page.wait_for_selector("#result[data-kind=result]")
    page.wait_for_selector("#download[aria-disabled=false]")


def press_and_drag(page, slider, fractions, while_held=None):
    """Presses on a range input and drags through `fractions` of its width; calls `while_held`
    before letting go."""
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    y = box["y"] + box["height"] / 2

    def x(f):
        return box["x"] + 8 + f * (box["width"] - 16)  # the thumb is ~16 px wide

    page.mouse.move(x(fractions[0]), y)
    page.mouse.down()
    for f in fractions[1:]:
        page.mouse.move(x(f), y, steps=2)
        page.wait_for_timeout(40)
    if while_held:
        while_held()
    page.mouse.up()


def pick(page, *indices):
    for i in indices:
        page.click(f"#gallery button[data-key='{i}']")


def which_styles(page, flag="which_styles"):
    return re.fullmatch(f'--{flag}="(.*)"', page.inner_text("#which-styles")).group(1)


def drop_file(page, selector, path):
    """Drops the file on `selector` as a file dragged from the desktop arrives."""
    transfer = page.evaluate_handle(
        "([bytes, name]) => { const t = new DataTransfer();"
        " t.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/jpeg'}));"
        " return t; }", [list(open(path, "rb").read()), os.path.basename(path)])
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


# ----------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def arbitrary_model():
    return load_arbitrary_model()


@pytest.fixture(scope="module")
def server(model, arbitrary_model):
    web = app_lib.create_app(model=model, thumbnail_size=48, arbitrary_model=arbitrary_model)
    with app_lib.BackgroundServer(web) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def watched(browser, server):
    w = Watched(browser, server.url)
    yield w
    w.close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "face.png"
    Image.open(demo_image_path()).crop((150, 40, 390, 220)).resize((160, 120)).save(path)
    return str(path)


def test_blend_drag_release_download_equals_stylize(watched, model, photo):
    page = watched.page
    assert page.locator("#gallery button").count() == len(style_names_of(model))
    page.wait_for_function(ALL_THUMBNAILS_LOADED)
    assert page.is_hidden("#snapshot")  # only while the webcam runs
    page.set_input_files("#file", photo)
    page.wait_for_selector("#result[data-kind=photo]")
    pick(page, 19, 24)
    wait_for_result(page)

    # Strength and preserve-colour controls, each giving a new result.
    press_and_drag(page, page.locator("#strength"), [1.0, 0.9, 0.8, 0.7])
    wait_for_result(page)
    page.check("#preserve")
    wait_for_result(page)

    # Drag a blend slider: previews arrive while the button is still held, the result on release.
    previews = count(page, "previews")
    results = count(page, "results")

    def previews_while_held():
        page.wait_for_function(
            f"() => Number(document.getElementById('result').dataset.previews) > {previews}")
        assert attr(page, "data-kind") == "preview"
        assert attr(page, "aria-disabled", "#download") == "true"  # no stale download meanwhile
        assert count(page, "results") == results

    slider = page.locator("#blend input[type=range]").first
    press_and_drag(page, slider, [0.5, 0.6, 0.7, 0.8, 0.85], while_held=previews_while_held)
    wait_for_result(page)

    which = which_styles(page)
    weights = parse_which_styles(which, style_names_of(model))
    assert set(weights) == {19, 24} and weights[19] > weights[24]  # the dragged slider won
    strength = int(page.input_value("#strength")) / 100
    assert 0.6 <= strength <= 0.8
    max_size = int(page.input_value("#size"))
    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    assert download.suggested_filename == f"face_{describe_style(weights)}.png"
    got = np.asarray(Image.open(download.path()).convert("RGB"))
    expected = np.asarray(stylize(photo, weights, model=model, strength=strength,
                                  preserve_color=True, max_size=max_size))
    assert got.shape == expected.shape == (120, 160, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    command = page.inner_text("#command-line")
    assert f'--which_styles="{which}"' in command and "--preserve_color" in command
    assert f"--strength={strength:g}" in command
    assert watched.errors == [] and watched.foreign == []


def test_unreadable_photo_shows_the_servers_message_then_a_dropped_one_works(
        watched, tmp_path, photo):
    page = watched.page
    pick(page, 3)
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status.error")
    assert "notes.png: not an image file Pillow can read" in page.inner_text("#status")
    # Dropped this time, as a file dragged from the desktop arrives.
    data = list(open(photo, "rb").read())
    transfer = page.evaluate_handle(
        "(bytes) => { const t = new DataTransfer();"
        " t.items.add(new File([new Uint8Array(bytes)], 'dropped.png', {type: 'image/png'}));"
        " return t; }", data)
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    wait_for_result(page)
    assert not page.locator("#status.error").count()
    assert page.get_attribute("#download", "download") == "dropped_3_1000.png"
    # Chromium logs the 400 answers themselves; nothing else may be logged.
    assert [e for e in watched.errors if not HTTP_ERROR_LOG.search(e)] == []
    assert watched.foreign == []


def test_two_dropped_paintings_blended_download_equals_stylize(watched, arbitrary_model, photo):
    page = watched.page
    assert page.is_visible("#painting-drop")
    page.set_input_files("#file", photo)
    page.wait_for_selector("#result[data-kind=photo]")
    paintings = {os.path.basename(p): p for p in demo_paintings()}
    for k, name in enumerate(["cubist.jpg", "waves.jpg"], start=1):
        drop_file(page, "#painting-drop", paintings[name])
        # Its tile (the demo photo in its style, the painting in the corner), and into the blend.
        page.wait_for_function(f"() => document.querySelectorAll('#blend li').length === {k}")
    tiles = page.locator("#painting-gallery button")
    assert tiles.count() == 2 and tiles.nth(0).get_attribute("title") == "cubist.jpg"
    page.wait_for_function(
        "() => [...document.querySelectorAll('#painting-gallery img')].every(i => i.naturalWidth)")
    wait_for_result(page)
    # One blend, one network: the model's named styles are off while paintings are in it.
    assert page.locator("#gallery button:disabled").count() == page.locator("#gallery button").count()
    assert page.is_visible("#styles-note") and "two different networks" in page.inner_text("#styles-note")
    assert "embeddings, not pixels" in page.inner_text("#strength-hint")

    press_and_drag(page, page.locator("#strength"), [1.0, 0.9, 0.8])
    wait_for_result(page)
    press_and_drag(page, page.locator("#blend input[type=range]").first, [0.5, 0.6, 0.7, 0.8])
    wait_for_result(page)

    value = which_styles(page, "style_images")
    blend = ast.literal_eval(value)
    assert list(blend) == ["cubist.jpg", "waves.jpg"] and blend["cubist.jpg"] > blend["waves.jpg"]
    strength = int(page.input_value("#strength")) / 100
    max_size = int(page.input_value("#size"))
    command = page.inner_text("#command-line")
    assert f'--style_images="{value}"' in command and f"--strength={strength:g}" in command
    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    # The CLI's own name for this blend (its float32 normalization and rounding).
    cli_blend = style_images.parse_style_images(repr({paintings[n]: w for n, w in blend.items()}))
    assert download.suggested_filename == style_images.output_names(
        "face", cli_blend, [strength], ".png")[0]
    got = np.asarray(Image.open(download.path()).convert("RGB"))
    expected = np.asarray(stylize(
        photo, style_image=list(cli_blend), weights=list(blend.values()), model=arbitrary_model,
        strength=strength, max_size=max_size))
    assert got.shape == expected.shape == (120, 160, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert watched.errors == [] and watched.foreign == []


def test_webcam_frames_at_preview_size(watched):
    page = watched.page
    assert page.is_visible("#webcam")  # the fake camera counts as one
    pick(page, 7)
    page.click("#webcam")
    page.wait_for_function("() => Number(document.getElementById('result').dataset.frames) >= 3")
    assert attr(page, "data-kind") == "frame"
    size = page.evaluate("() => [document.getElementById('result').naturalWidth,"
                         " document.getElementById('result').naturalHeight]")
    assert max(size) == 256  # the 640x480 camera, at preview size
    page.click("#snapshot")  # the current frame becomes the photo
    wait_for_result(page)
    assert page.is_hidden("#video")
    assert watched.errors == [] and watched.foreign == []


# ----------------------------------------------------------------------------- the screenshot


def screenshot(path, drag_steps=24):
    """The page with the demo photo and a three-style blend, caught mid-drag; returns the preview
    round trips (ms) the page measured during the drag."""
    with app_lib.BackgroundServer(app_lib.create_app()) as server, \
            sync_api.sync_playwright() as p:
        browser = launch(p)
        watched = Watched(browser, server.url, viewport=(1280, 1040))
        page = watched.page
        page.wait_for_function(ALL_THUMBNAILS_LOADED)
        page.click("#demo")
        page.wait_for_selector("#result[data-kind=photo]")
        pick(page, 19, 24, 12)
        wait_for_result(page)
        page.evaluate("() => { window.imageStylizationStats.previewMs.length = 0; }")
        sliders = page.locator("#blend input[type=range]")
        press_and_drag(page, sliders.nth(2), [0.5, 0.3])
        wait_for_result(page)
        page.evaluate("() => { window.imageStylizationStats.previewMs.length = 0; }")
        fractions = [0.5 + 0.4 * k / drag_steps for k in range(drag_steps + 1)]

        def shoot():
            page.wait_for_selector("#result[data-kind=preview]")
            page.evaluate("() => window.scrollTo(0, 0)")
            page.screenshot(path=path)

        press_and_drag(page, sliders.nth(0), fractions, while_held=shoot)
        times = page.evaluate("() => window.imageStylizationStats.previewMs")
        assert watched.errors == [] and watched.foreign == [], (watched.errors, watched.foreign)
        watched.close()
        browser.close()
    # 256 colours, dithered: a third of the bytes, and the picture still reads as it did.
    Image.open(path).convert("RGB").quantize(
        256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
        path, optimize=True)
    return times


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", default="docs/app_screenshot.png")
    args = parser.parse_args()
    if CHROMIUM is None:
        sys.exit("needs Debian's Chromium: apt-get install -y chromium")
    ms = screenshot(args.screenshot)
    print(f"wrote {args.screenshot} ({os.path.getsize(args.screenshot) / 1e3:.0f} kB)")
    if ms:
        print(f"preview round trips while dragging (page-measured, 256 px, n={len(ms)}): "
              f"median {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms")
