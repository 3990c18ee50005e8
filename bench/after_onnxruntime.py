"""How much a call pays for the call before it: our 512 px call and onnxruntime's, each timed right
after an onnxruntime call, right after one of ours, and after an idle pause.

    python bench/after_onnxruntime.py [--rounds=40] [--size=512] [--pause=0.15]

onnxruntime's threads spin-wait after a call. This is why `bench/inference.py` pauses before each
timed call (`--pause`): back to back, whichever path ran after onnxruntime paid for its spinning.
One process, the runners of `bench/inference.py` (`stylize` and the bare `onnxruntime` session),
style 7 of the demo photo. Prints, per (timed path, what ran before it), the median, min and
90th percentile in ms.
"""

import argparse
import statistics
import tempfile
import time

import numpy as np

import inference  # bench/, beside this script


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--pause", type=float, default=0.15)
    a = p.parse_args()
    from image_stylization.model import num_styles_of
    from image_stylization.stylize import load_model

    model = load_model()
    # Neither runner writes to its work directory (only the export paths do).
    with tempfile.TemporaryDirectory() as workdir:
        runners, skipped = inference.make_runners(["stylize", "onnxruntime"], model, workdir)
    if skipped:
        raise SystemExit(f"cannot run: {skipped}")
    weights = np.eye(num_styles_of(model), dtype=np.float32)[[inference.STYLE]]
    image = inference.photo(a.size)
    calls = {}
    for r in runners:
        prepared = r.prepare(image, weights)
        calls["onnxruntime" if isinstance(r, inference.OnnxRuntime) else "ours"] = (
            lambda r=r, prepared=prepared: r.run(prepared))
    for fn in calls.values():
        for _ in range(3):
            fn()
    times = {}
    for _ in range(a.rounds):
        for before in ("ours", "onnxruntime", "pause"):
            for name, fn in calls.items():
                if before == "pause":
                    time.sleep(a.pause)
                else:
                    calls[before]()
                t = time.perf_counter()
                fn()
                times.setdefault((name, before), []).append(1000 * (time.perf_counter() - t))
    print(f"{a.size} px, {a.rounds} rounds; ms per call")
    print("| timed | right after | median | min | p90 |\n|---|---|---|---|---|")
    for (name, before), v in sorted(times.items()):
        v = sorted(v)
        after = f"a {a.pause} s pause" if before == "pause" else f"a call of {before}"
        print(f"| {name} | {after} | {statistics.median(v):.1f} | {v[0]:.1f} | {v[int(0.9 * len(v))]:.1f} |")


if __name__ == "__main__":
    main()
