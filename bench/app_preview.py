"""How long a preview takes through image_stylization_app, against `stylize()` on the same image.

    python bench/app_preview.py            # 30 rounds, 256 px previews and 512 px results

Serves the app on a local port (a thread of this process, the bundled models), then alternates,
round by round: `stylize()` called directly, and `POST /api/stylize` over real HTTP with the same
PNG, blend and size (upload, queue, decode, network, PNG encode, answer). Two blends: three of
the 26-style model's named styles, and two paintings (the arbitrary-style network; uploaded once
with `POST /api/paintings`, so the server, like the direct call, starts from their cached style
embeddings). Prints medians and the ratio HTTP / direct; "server" is the worker's own time
(decode, stylize, PNG encode). The page's own measurement, which adds the browser's share, is
printed by `python tests/test_app_browser.py --screenshot PATH`.
"""

import argparse
import io
import os
import statistics
import time

import httpx2 as httpx
from PIL import Image

from image_stylization import app as app_lib
from image_stylization import image_io
from image_stylization.arbitrary import demo_paintings, load_arbitrary_model, predict_style
from image_stylization.stylize import demo_image_path, load_model, stylize

BLEND = {19: 60, 24: 30, 12: 10}
WHICH_STYLES = "{19: 60, 24: 30, 12: 10}"
PAINTINGS = {"swirls.jpg": 60, "waves.jpg": 40}


def png_of(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    model = load_model()
    arbitrary_model = load_arbitrary_model()
    paths = {os.path.basename(p): p for p in demo_paintings()}
    embeddings = predict_style([paths[n] for n in PAINTINGS], arbitrary_model)
    demo = Image.open(demo_image_path()).convert("RGB")  # 512 x 512
    sizes = {
        "preview 256 px": (png_of(demo.resize((256, 256), Image.Resampling.LANCZOS)), 256),
        "result 512 px": (png_of(demo), 1024),
    }
    web = app_lib.create_app(model=model, arbitrary_model=arbitrary_model)
    rows = []
    with app_lib.BackgroundServer(web) as server, httpx.Client(timeout=120) as client:
        keys = []
        for name in PAINTINGS:
            with open(paths[name], "rb") as f:
                r = client.post(f"{server.url}/api/paintings",
                                files={"painting": (name, f.read(), "image/jpeg")})
            r.raise_for_status()
            keys.append(r.json()["key"])
        painting_styles = repr(dict(zip(keys, PAINTINGS.values())))
        cases = {}
        for label, (data, max_size) in sizes.items():
            cases[f"named {label}"] = (data, max_size, WHICH_STYLES, lambda c, m: stylize(
                c, BLEND, model=model, max_size=m))
        for label, (data, max_size) in sizes.items():
            cases[f"paintings {label}"] = (data, max_size, painting_styles, lambda c, m: stylize(
                c, style_embedding=embeddings, weights=list(PAINTINGS.values()),
                model=arbitrary_model, max_size=m))
        for label, (data, max_size, styles, direct_call) in cases.items():
            content = image_io.decode_image(data)
            direct, http, in_server = [], [], []
            for k in range(args.rounds + 2):  # two warm-up rounds, not counted
                start = time.perf_counter()
                direct_call(content, max_size)
                t_direct = time.perf_counter() - start
                start = time.perf_counter()
                r = client.post(f"{server.url}/api/stylize",
                                files={"image": ("photo.png", data, "image/png")},
                                data={"styles": styles, "max_size": str(max_size)})
                t_http = time.perf_counter() - start
                r.raise_for_status()
                if k >= 2:
                    direct.append(t_direct)
                    http.append(t_http)
                    timing = dict(part.strip().split(";dur=")
                                  for part in r.headers["server-timing"].split(","))
                    in_server.append(float(timing["stylize"]) / 1000)
            rows.append((label, statistics.median(direct), statistics.median(in_server),
                         statistics.median(http), max(http)))
    print(f"named: --which_styles={WHICH_STYLES}; paintings: {PAINTINGS}; {args.rounds} rounds, "
          f"medians (ms)")
    print(f"{'case':<26}{'stylize()':>11}{'server':>11}{'HTTP':>9}{'HTTP max':>10}"
          f"{'HTTP/direct':>13}")
    for label, d, s, h, hmax in rows:
        print(f"{label:<26}{d * 1e3:>11.0f}{s * 1e3:>11.0f}{h * 1e3:>9.0f}{hmax * 1e3:>10.0f}"
              f"{h / d:>12.2f}x")


if __name__ == "__main__":
    main()
