"""What network a set of transformer weights belongs to: N, the preset and alpha.

Used by the converter (ONNX, GraphDef and Magenta checkpoints, which carry no architecture) and by
fine-tuning (which rebuilds the network of a trained model with more or other styles).
"""

import collections
import re

from image_stylization.errors import CheckpointError
from image_stylization.model import PRESETS, build_transformer, magenta_name

Architecture = collections.namedtuple("Architecture", ["num_styles", "preset", "alpha"])


def weights_of(model):
    """{Magenta name: numpy array} of a transformer's weights."""
    return {magenta_name(v): v.numpy() for v in model.weights}


def architecture_of(weights, num_styles=None, preset=None, alpha=None):
    """The `Architecture` whose `build_transformer` has exactly these names and shapes.

    `weights`: {Magenta name: array}, e.g. `weights_of(model)` or what a converter read. N is the
    row count of the gamma tables, the preset follows from the number of residual blocks, and
    alpha from a width divided by the preset's width at alpha = 1 (all of which are powers of
    two, so the division is exact). Explicit arguments are checked, not trusted. Raises
    CheckpointError when nothing this package builds fits.
    """
    gamma = weights.get("transformer/contract/conv1/InstanceNorm/gamma")
    if gamma is None or gamma.ndim != 2:
        raise CheckpointError("no transformer/contract/conv1/InstanceNorm/gamma [N, C] table")
    detected_n = int(gamma.shape[0])
    if num_styles is not None and num_styles != detected_n:
        raise CheckpointError(f"the weights hold {detected_n} styles, not --num_styles={num_styles}")
    block = re.compile(r"^transformer/residual/residual(\d+)/")
    blocks = {m[1] for m in map(block.match, weights) if m}
    if preset is not None:
        if preset not in PRESETS:
            raise CheckpointError(f"unknown preset {preset!r} (known: {', '.join(sorted(PRESETS))})")
        presets = [preset]
    else:
        presets = [p for p, spec in PRESETS.items() if spec["residual_blocks"] == len(blocks)]
        if not presets:
            known = ", ".join(f"{p} ({s['residual_blocks']})" for p, s in sorted(PRESETS.items()))
            raise CheckpointError(f"{len(blocks)} residual blocks match no preset; known: {known}")
    first_error = None
    for p in presets:
        for a in [alpha] if alpha is not None else _alpha_candidates(weights, p):
            error = _shape_mismatch(weights, build_transformer(detected_n, preset=p, alpha=a))
            if error is None:
                return Architecture(detected_n, p, a)
            first_error = first_error or f"preset {p}, alpha {a}: {error}"
    raise CheckpointError(f"the weights fit no network ({first_error or 'no known layer widths'})")


def _alpha_candidates(weights, preset):
    spec = PRESETS[preset]
    base = {}
    for i, (_, _, f) in enumerate(spec["contract"], start=1):
        base[f"transformer/contract/conv{i}/weights"] = f
    base["transformer/residual/residual1/conv1/weights"] = spec["residual_filters"]
    for i, (_, _, f) in enumerate(spec["expand"][:-1], start=1):
        base[f"transformer/expand/conv{i}/conv/weights"] = f
    found = []
    for name, width in base.items():
        if name in weights and weights[name].ndim == 4:
            a = weights[name].shape[3] / width
            if 0 < a <= 8 and a not in found:
                found.append(a)
    return found


def _shape_mismatch(weights, model):
    expected = {magenta_name(v): tuple(int(d) for d in v.shape) for v in model.weights}
    missing = sorted(set(expected) - set(weights))
    if missing:
        return f"missing {few(missing)}"
    extra = sorted(set(weights) - set(expected))
    if extra:
        return f"unexpected {few(extra)}"
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            return f"{name} has shape {tuple(weights[name].shape)}, expected {shape}"
    return None


def few(names, k=3):
    """'a, b, c and 4 more'."""
    names = list(names)
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(names[:k]) + more
