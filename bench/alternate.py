"""Times several ways of computing the same thing, taking turns, for the layer benches."""

import statistics
import time


def median_ms(ways, args, repeats, calls=1):
    """{name: median ms per call} of each function in `ways` on `args`: `repeats` rounds, in each
    round every way runs `calls` times, in an order that flips every round (so neither always
    runs right after the other)."""
    times = {name: [] for name in ways}
    for r in range(repeats):
        for name in (list(ways) if r % 2 else list(ways)[::-1]):
            t0 = time.perf_counter()
            for _ in range(calls):
                ways[name](*args)
            times[name].append((time.perf_counter() - t0) / calls * 1000)
    return {name: statistics.median(v) for name, v in times.items()}


def repeats_flag(doc, default):
    """The benches' one flag, --repeats, parsed with the script's docstring as its description."""
    import argparse

    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--repeats", type=int, default=default)
    return p.parse_args().repeats
