"""Exact tiled inference: the whole-image result of a network built from this package's layers,
in memory bounded by a budget instead of by the photo.

A conditional instance norm needs the mean and variance of its whole input before any of its
output exists, so a tiled run is a sequence of passes over the image, dictated by the norms:

- a *statistics pass* per norm computes the norm's input tile by tile and accumulates its
  per-channel moments (`Moments`: per-tile float32 moments combined in float64 by Chan et al.'s
  parallel formula). When the budget allows, the input is also *stored* whole, so later passes
  read it instead of recomputing it;
- a *merge pass* stores a residual addition once its inputs are known, in the buffer of an input
  that dies with it, so the trunk never holds more than a few low-resolution tensors;
- the *output pass* computes the network's output tile by tile and hands each tile to a callback.

A pass computes its target from stored tensors (and the image) through a *recipe*: the layers in
between, run on a tile plus a halo of real neighbouring pixels, with reflection padding only
where the tile touches the border of the tensor (where the whole network pads too), and every
norm applied with the statistics already gathered. So every pixel is the whole-image pixel, up
to float32 rounding. What to store and what to recompute is planned ahead from the budget
(`plan`): at 48 Mpix with the bundled network the full-resolution 32-channel activations (6 GB
each) are recomputed while the 1/16-resolution residual trunk is stored.

The executor reads a Keras functional graph and runs the layers' own code (`pad`/`convolve` and
`call` of `ReflectionPadConv2D`, `moments`/`normalize`, the layers' `call`), never a copy of their
arithmetic. It knows: ReflectionPadConv2D (any kernel, stride or upsample factor, not both),
NearestUpsampling2D, any normalization with `gamma_beta(condition)` and `epsilon`
(ConditionalInstanceNormalization), PadToMultiple, CropToReference, ImageInputCheck, and Keras'
ReLU, Activation (element-wise), Add and Identity. Inputs: one image [B,H,W,3] and at most one
conditioning vector [B,D] (style weights or a style embedding).
"""

import dataclasses
import math

import numpy as np

from image_stylization.errors import MemoryBudgetError

DEFAULT_MEMORY_BUDGET_MB = 1536
MB = 1 << 20
# The whole-image estimate is a liveness simulation of the graph (each layer's output, 2x its
# size in temporaries, and every tensor still waiting for a consumer) times this margin. Peak
# RSS growth measured at 2048x2048 (bench/large_photos.py --sections=whole): 620 B/px for
# android_26 and 450 B/px for the paper preset, where the simulation gives 536 B/px.
WHOLE_IMAGE_MARGIN = 1.25
# The same simulation for one tile of a pass, with a margin for halos and allocator slack.
TILE_MARGIN = 1.5
# Tiles are at least this many pixels per side (of the pass's target), halos aside.
MIN_TILE = 8
# Tiles are at most this large in their largest tensor: TF gets memory for big tensors straight
# from the system (page faults on every new tensor), smaller ones are recycled, and they stay
# in the CPU's caches between the layers of a recipe.
MAX_TILE_TENSOR = 100000 * MB
# Plans estimated to take more than this many times one whole-image pass (because the budget
# keeps too little stored) are refused with the budget that would avoid it.
MAX_RECOMPUTE = 4.0
# Time per float of memory-bound work, in multiply-add equivalents, for the planner's estimates
# and the progress line (measured on a 1x460x4000x32 float32 tensor on a 2-core Xeon where the
# 9x9 3->32 conv does ~35 GMAC/s: ReLU 42 ms, layers.normalize 148 ms, layers.moments 188 ms, a
# numpy <-> TF copy of a stored tile ~1.4 ns per float).
COST = {"elementwise": 25, "normalize": 90, "moments": 110, "copy": 50}
# Shares of the budget tried for the tiles' workspace (the rest stores tensors); see `plan`.
WORKSPACE_SHARES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)

_POINTWISE_ACTIVATIONS = {"relu", "sigmoid", "tanh", "linear", "elu", "selu", "gelu", "silu",
                          "swish", "softplus", "softsign", "hard_sigmoid", "relu6", "leaky_relu",
                          "exponential", "mish", "hard_silu", "hard_swish", "celu", "glu"}


class UnsupportedNetwork(ValueError):
    """A network with a layer or a wiring the tiled executor cannot split into tiles."""


@dataclasses.dataclass(eq=False)
class Node:
    """One layer (or input) of the network as the executor sees it."""

    index: int
    name: str
    kind: str  # image | condition | identity | pad | conv | upsample | norm | pointwise | crop
    layer: object = None
    inputs: tuple = ()  # spatial inputs (nodes), in call order
    channels: int = 0
    styled: bool = False  # depends on the conditioning input
    reference: "Node" = None  # crop: the node whose size the output takes
    consumers: list = dataclasses.field(default_factory=list)

    def __repr__(self):
        return f"<{self.kind} {self.name}>"


def _flat(x):
    if isinstance(x, dict):
        return list(x.values())
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in _flat(item)]
    return [x]


class Graph:
    """The layers of a Keras functional network, in topological order, classified for tiling."""

    def __init__(self, model):
        import keras

        from image_stylization import layers as L

        self.model = model
        self.nodes = []
        by_tensor = {}
        inputs = _flat(model.inputs)
        images = [t for t in inputs if len(t.shape) == 4]
        conditions = [t for t in inputs if len(t.shape) == 2]
        if len(images) != 1 or len(conditions) > 1 or len(images) + len(conditions) != len(inputs):
            raise UnsupportedNetwork(
                "expected one image input [B,H,W,C] and at most one conditioning input [B,D], got "
                + ", ".join(str(tuple(t.shape)) for t in inputs))
        self.image = self.condition = None

        def add(node, tensor):
            self.nodes.append(node)
            by_tensor[id(tensor)] = node
            return node

        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                tensor = layer.output
                if any(tensor is t for t in images):
                    self.image = add(Node(len(self.nodes), layer.name, "image",
                                          channels=int(tensor.shape[-1])), tensor)
                else:
                    self.condition = add(Node(len(self.nodes), layer.name, "condition",
                                              styled=True), tensor)
                continue
            if len(layer._inbound_nodes) != 1:
                raise UnsupportedNetwork(f"{layer.name}: a layer called more than once")
            ins = [by_tensor.get(id(t)) for t in _flat(layer.input)]
            if any(i is None for i in ins):
                raise UnsupportedNetwork(f"{layer.name}: an input the executor did not see")
            spatial = tuple(i for i in ins if i.kind != "condition")
            out = layer.output
            if isinstance(out, (list, tuple)) or len(out.shape) != 4:
                raise UnsupportedNetwork(f"{layer.name}: output is not one [B,H,W,C] tensor")
            node = Node(len(self.nodes), layer.name, "", layer, spatial, int(out.shape[-1]))
            node.styled = any(i.styled for i in ins)
            node.kind = self._kind(layer, L, keras, ins, spatial)
            if node.kind == "crop":
                node.inputs, node.reference = spatial[:1], spatial[1]
            add(node, out)
        outputs = _flat(model.outputs)
        if len(outputs) != 1 or id(outputs[0]) not in by_tensor:
            raise UnsupportedNetwork("expected exactly one output")
        self.output = by_tensor[id(outputs[0])]
        for node in self.nodes:
            for i in node.inputs:
                i.consumers.append(node)
        self.norms = [n for n in self.nodes if n.kind == "norm"]
        self.recipes = {}  # (target, stored set) -> recipe, for planning

    @staticmethod
    def _kind(layer, L, keras, ins, spatial):
        name, what = layer.name, type(layer).__name__
        if isinstance(layer, (L.ImageInputCheck, keras.layers.Identity)):
            kind = "identity"
        elif isinstance(layer, L.PadToMultiple):
            kind = "pad"
        elif isinstance(layer, L.ReflectionPadConv2D):
            if layer.strides > 1 and layer.upsample > 1:
                raise UnsupportedNetwork(f"{name}: a conv with both stride and upsample")
            kind = "conv"
        elif isinstance(layer, L.NearestUpsampling2D):
            kind = "identity" if layer.factor == 1 else "upsample"
        elif hasattr(layer, "gamma_beta") and hasattr(layer, "epsilon"):
            if len(ins) != 2 or ins[1].kind != "condition" or len(spatial) != 1:
                raise UnsupportedNetwork(f"{name}: a norm must take [x, conditioning input]")
            return "norm"
        elif isinstance(layer, keras.layers.ReLU):
            kind = "pointwise"
        elif isinstance(layer, keras.layers.Activation):
            fn = getattr(layer.activation, "__name__", "")
            if fn not in _POINTWISE_ACTIVATIONS:
                raise UnsupportedNetwork(f"{name}: activation {fn!r} is not element-wise")
            kind = "pointwise"
        elif isinstance(layer, keras.layers.Add):
            return "pointwise"
        elif isinstance(layer, L.CropToReference):
            if len(spatial) != 2:
                raise UnsupportedNetwork(f"{name}: crop needs [x, reference]")
            return "crop"
        else:
            raise UnsupportedNetwork(f"{name}: {what} is not a layer the tiled executor knows")
        if len(ins) != 1:
            raise UnsupportedNetwork(f"{name}: expected one input, got {len(ins)}")
        return kind

    # ------------------------------------------------------------------------- geometry

    def sizes(self, height, width):
        """{node: (H, W)} for an image of height x width."""
        sizes = {}
        for n in self.nodes:
            if n.kind == "condition":
                continue
            if n.kind == "image":
                sizes[n] = (height, width)
            elif n.kind == "crop":
                sizes[n] = sizes[n.reference]
            else:
                size = sizes[n.inputs[0]]
                if n.kind == "pad":
                    m = n.layer.multiple
                    size = tuple(-(-d // m) * m for d in size)
                elif n.kind == "conv":
                    u, s = n.layer.upsample, n.layer.strides
                    size = tuple((d * u - 1) // s + 1 for d in size)
                elif n.kind == "upsample":
                    size = tuple(d * n.layer.factor for d in size)
                elif any(sizes[i] != size for i in n.inputs):
                    raise UnsupportedNetwork(f"{n.name}: inputs of different sizes")
                sizes[n] = size
        return sizes

    def needs(self, node, region, sizes):
        """Regions of `node.inputs` (clipped to their sizes) that `region` of node depends on."""
        if node.kind in ("identity", "pointwise", "norm", "crop"):
            return [region] * len(node.inputs)
        n_in = sizes[node.inputs[0]]
        (r0, r1, c0, c1) = region
        rows = _need_axis(node, r0, r1, n_in[0])
        cols = _need_axis(node, c0, c1, n_in[1])
        return [rows + cols]

    def macs(self, node):
        """Multiply-adds per output pixel."""
        if node.kind == "conv":
            k = node.layer.kernel_size
            return k * k * node.inputs[0].channels * node.channels
        return 0

    def cost(self, node):
        """Estimated time per output pixel, in multiply-add equivalents: element-wise layers
        cost memory traffic, not arithmetic (see COST)."""
        if node.kind == "conv":
            return self.macs(node)
        if node.kind == "norm":
            return COST["normalize"] * node.channels
        if node.kind in ("pointwise", "upsample", "pad"):
            return COST["elementwise"] * node.channels
        return 0

    def network_macs(self, sizes):
        return sum(self.macs(n) * _area(sizes[n]) for n in self.nodes if n in sizes)

    def network_cost(self, sizes):
        """Estimated time of one whole-image pass (the norms' moments included)."""
        return sum((self.cost(n) + (COST["moments"] * n.channels if n.kind == "norm" else 0))
                   * _area(sizes[n]) for n in self.nodes if n in sizes)

    def whole_image_bytes(self, height, width, styles=1):
        """Estimated peak activation memory of one whole-image call with `styles` style rows."""
        sizes = self.sizes(height, width)
        nodes = [n for n in self.nodes if n.kind != "condition"]
        per = {n: 4 * n.channels * _area(sizes[n]) * (styles if n.styled else 1) for n in nodes}
        return int(_simulate(nodes, per) * WHOLE_IMAGE_MARGIN)


def _area(size):
    return size[0] * size[1]


def _need_axis(node, a, b, n_in):
    """Input range [lo, hi) along one axis that outputs [a, b) of node depend on, clipped."""
    if node.kind == "pad":
        if b <= n_in:
            return a, b
        return min(a, 2 * (n_in - 1) - (b - 1)), n_in
    if node.kind == "upsample":
        u = node.layer.factor
        return a // u, min(-(-b // u), n_in)
    layer = node.layer  # conv
    p, s, u = layer.kernel_size // 2, layer.strides, layer.upsample
    if u == 1:
        return max(s * a - p, 0), min(s * (b - 1) + p + 1, n_in)
    return max(a - p, 0) // u, min(-(-(b + p) // u), n_in)


def _simulate(nodes, per):
    """Peak bytes while computing `nodes` in order: each output and twice its size in
    temporaries, plus every earlier output still waiting for a consumer among `nodes`."""
    members = set(nodes)
    waiting = {n: sum(1 for c in n.consumers if c in members) for n in nodes}
    live = peak = 0
    for n in nodes:
        peak = max(peak, live + 3 * per[n])
        live += per[n]
        for i in n.inputs:
            if i in waiting:
                waiting[i] -= 1
                if waiting[i] == 0:
                    live -= per[i]
    return peak


# ----------------------------------------------------------------------------- statistics


class Moments:
    """Per-channel count, mean and sum of squared deviations (M2) of a tensor seen tile by tile.

    Each tile's mean and biased variance come from `layers.moments` (float32); tiles combine in
    float64 by Chan, Golub & LeVeque's parallel formula, so 48 Mpix of statistics keep float64
    accuracy instead of accumulating float32 sums of squares.
    """

    def __init__(self, channels):
        self.count = 0
        self.mean = np.zeros(channels, np.float64)
        self.m2 = np.zeros(channels, np.float64)

    def add(self, count, mean, variance):
        mean = np.asarray(mean, np.float64).reshape(-1)
        m2 = np.asarray(variance, np.float64).reshape(-1) * count
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * count / total)
        self.count = total

    @property
    def variance(self):
        return self.m2 / self.count


# ----------------------------------------------------------------------------- planning


@dataclasses.dataclass(eq=False)
class Pass:
    kind: str  # stats | merge | output
    target: Node
    norm: Node = None  # stats: the norm whose input statistics are gathered
    store: bool = False  # keep the target whole
    into: Node = None  # merge: the dead stored node whose buffer receives the target
    recipe: tuple = ()  # nodes computed per tile, in topological order, leaves included
    leaves: frozenset = frozenset()  # stored nodes (and the image) the recipe reads
    tile: tuple = (0, 0)  # rows, cols of the target's grid per tile
    macs: float = 0.0  # multiply-adds of the whole pass, halos included
    cost: float = 0.0  # its estimated time in multiply-add equivalents (see COST)
    live_bytes: int = 0  # stored buffers alive during the pass, the target's included
    tile_bytes: int = 0  # estimated workspace of one tile


@dataclasses.dataclass
class Plan:
    passes: list
    sizes: dict
    budget: int
    peak_bytes: int  # largest live_bytes + tile_bytes over the passes
    recompute: float  # multiply-adds of the plan / of one whole-image run
    work: float = 1.0  # estimated time of the plan / of one whole-image run (see COST)

    def describe(self):
        lines = []
        for p in self.passes:
            what = (f"stats of {p.norm.name}" if p.kind == "stats" else
                    f"merge {p.target.name}" if p.kind == "merge" else "output")
            extra = (" store" if p.store and p.kind == "stats" else "") + (
                f" into {p.into.name}" if p.into else "")
            lines.append(f"{what}{extra}: {len(p.recipe) - len(p.leaves)} layers from "
                         f"{sorted(l.name for l in p.leaves)}, tile {p.tile[0]}x{p.tile[1]}, "
                         f"{(p.live_bytes + p.tile_bytes) / MB:.0f} MB")
        lines.append(f"peak {self.peak_bytes / MB:.0f} MB of {self.budget / MB:.0f} MB, "
                     f"{self.recompute:.2f}x the whole-image multiply-adds, {self.work:.2f}x "
                     f"its estimated time")
        return "\n".join(lines)


def _recipe(graph, target, stored):
    """Nodes needed to compute `target` from `stored` (and the image), in topological order."""
    key = (target, frozenset(stored))
    cache = graph.recipes
    if key not in cache:
        if len(cache) > 50000:
            cache.clear()
        cache[key] = _walk(target, key[1])
    return cache[key]


def _walk(target, stored):
    seen, stack = set(), [target]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n not in stored and n.kind != "image":
            stack.extend(n.inputs)
    return tuple(sorted(seen, key=lambda n: n.index))


def _leaves(recipe, stored):
    return frozenset(n for n in recipe if n in stored or n.kind == "image")


def _tile_bytes_per_px(graph, recipe, leaves, target, sizes):
    """Workspace per pixel of the target's grid for one tile of a pass."""
    area = _area(sizes[target])
    per = {n: 4 * n.channels * _area(sizes[n]) / area for n in recipe}
    computed = [n for n in recipe if n not in leaves]
    reads = sum(per[n] for n in leaves)
    return (reads + _simulate(computed, per)) * TILE_MARGIN


def _tile_shape(size, area):
    """Rows x cols of a tile of about `area` pixels on a grid of `size`: full-width bands when
    they are tall enough (no side halos), squares otherwise."""
    h, w = size
    if area >= h * w:
        return h, w
    if area >= w * 128 or w <= MIN_TILE * 2:
        return max(min(h, int(area // w)), min(h, MIN_TILE)), w
    side = max(MIN_TILE, int(math.sqrt(area)))
    cols = min(w, side)
    return max(min(h, int(area // cols)), min(h, MIN_TILE)), cols


def plan(graph, height, width, budget, known=()):
    """Plans the passes of a tiled run of one conditioning row over a height x width image.

    `budget`: bytes for stored tensors and tile workspace together. `known`: norms whose
    statistics are already available (the style-independent ones, from an earlier row).

    TensorFlow's CPU allocator (the oneDNN builds) keeps the memory of freed tensors for later
    tensors and does not give it back, so the tiles' workspace stays resident for the whole run
    whatever the pass: a plan splits the budget into a workspace that every pass's tiles fit and
    storage for the stored tensors (numpy arrays, really freed). Returns the plan with the least
    estimated work, halos included, among greedy plans over a few splits and over limits on the
    size of what is stored (storing a large full-resolution tensor early can leave no room for
    the small ones that save the most work later).
    """
    sizes = graph.sizes(height, width)
    limits = sorted({n.inputs[0].channels * _area(sizes[n.inputs[0]]) for n in graph.norms})
    best = None
    for share in WORKSPACE_SHARES:
        workspace = int(budget * share)
        for limit in limits + [None]:
            candidate = _greedy_plan(graph, sizes, budget - workspace, workspace, known, limit)
            key = (candidate.peak_bytes > budget, round(candidate.work, 2), -share)
            if best is None or key < best[0]:
                best = (key, candidate)
    best[1].budget = budget
    return best[1]


def _greedy_plan(graph, sizes, storage, workspace, known, limit):
    """Stored tensors chosen greedily in network order within `storage` bytes: a norm's input
    (of at most `limit` channels x pixels) is stored during its statistics pass when it fits
    beside what is already stored; a residual addition is stored once computable, in place of
    an input that dies with it when one does. Tiles are sized to `workspace`."""
    stored = {}  # node -> bytes, alive
    known = set(known)
    passes = []
    nbytes = lambda n: 4 * n.channels * _area(sizes[n])  # noqa: E731

    def pending_targets():
        return [n.inputs[0] for n in graph.norms if n not in known] + [graph.output]

    def needed(store_set):
        keep = set()
        for t in pending_targets():
            keep |= _leaves(_recipe(graph, t, store_set), store_set)
        return keep

    def make(kind, target, **kw):
        s = set(stored)
        recipe = _recipe(graph, target, s)
        return Pass(kind, target, recipe=recipe, leaves=_leaves(recipe, s), **kw)

    def live():
        return sum(stored.values())

    for norm in graph.norms:
        if norm in known:
            continue
        target = norm.inputs[0]
        p = make("stats", target, norm=norm)
        p.store = (target not in stored and live() + nbytes(target) <= storage
                   and (limit is None or target.channels * _area(sizes[target]) <= limit))
        if p.store:
            stored[target] = nbytes(target)
        p.live_bytes = live()
        passes.append(p)
        known.add(norm)
        _merges(graph, sizes, stored, known, passes, make, needed, storage, nbytes)
        for n in set(stored) - needed(set(stored)):
            del stored[n]
    p = make("output", graph.output)
    p.live_bytes = live()
    passes.append(p)

    tile_peak = 0
    for p in passes:
        size = sizes[p.target]
        per_px = _tile_bytes_per_px(graph, p.recipe, p.leaves, p.target, sizes)
        largest = max(4 * n.channels * _area(sizes[n]) / _area(size) for n in p.recipe)
        area = min(workspace / per_px, MAX_TILE_TENSOR / largest)
        p.tile = _tile_shape(size, area)
        p.tile_bytes = int(per_px * p.tile[0] * p.tile[1])
        p.macs, p.cost = _pass_work(graph, p, sizes)
        tile_peak = max(tile_peak, p.tile_bytes)
    macs, cost = graph.network_macs(sizes), graph.network_cost(sizes)
    recompute = sum(p.macs for p in passes) / macs if macs else 1.0
    work = sum(p.cost for p in passes) / cost if cost else 1.0
    peak = max(p.live_bytes for p in passes) + tile_peak
    return Plan(passes, sizes, storage + workspace, peak, recompute, work)


def _regions(graph, recipe, leaves, target, region, sizes):
    """{node: region of node computed for `region` of target} over a recipe."""
    want = {target: region}
    for node in reversed(recipe):
        if node in leaves or node not in want:
            continue
        for i, r in zip(node.inputs, graph.needs(node, want[node], sizes)):
            want[i] = r if i not in want else _union(want[i], r)
    return want


def _pass_work(graph, p, sizes):
    """(multiply-adds, estimated cost) of a pass, halos included (each tile placed away from
    the borders, where its halo is largest); the cost adds reading the stored leaves, storing
    the target and the statistics (see COST)."""
    h, w = sizes[p.target]
    th, tw = p.tile
    computed = [n for n in p.recipe if n not in p.leaves]
    per_target = (COST["copy"] if p.store else 0) + (COST["moments"] if p.kind == "stats" else 0)
    macs = cost = 0
    for rows, n_rows in ((th, h // th), (h % th, 1 if h % th else 0)):
        for cols, n_cols in ((tw, w // tw), (w % tw, 1 if w % tw else 0)):
            if not n_rows or not n_cols:
                continue
            r0 = min(th, h - rows) if h > rows else 0
            c0 = min(tw, w - cols) if w > cols else 0
            want = _regions(graph, p.recipe, p.leaves, p.target,
                            (r0, r0 + rows, c0, c0 + cols), sizes)
            area = {n: (r[1] - r[0]) * (r[3] - r[2]) for n, r in want.items()}
            tile_macs = sum(graph.macs(n) * area[n] for n in computed)
            tile_cost = (sum(graph.cost(n) * area[n] for n in computed)
                         + sum(COST["copy"] * n.channels * area[n] for n in p.leaves
                               if n.kind != "image")
                         + per_target * p.target.channels * rows * cols)
            macs += tile_macs * n_rows * n_cols
            cost += tile_cost * n_rows * n_cols
    return macs, cost


def _merges(graph, sizes, stored, known, passes, make, needed, storage, nbytes):
    """Stores each residual addition (a pointwise layer of several inputs) that became
    computable, preferably in the buffer of an input that dies with it."""
    for v in graph.nodes:
        if v.kind != "pointwise" or len(v.inputs) < 2 or v in stored:
            continue
        s = set(stored)
        recipe = _recipe(graph, v, s)
        if any(n.kind == "norm" and n not in known for n in recipe):
            continue
        if not any(v in _recipe(graph, t, s) for t in
                   [n.inputs[0] for n in graph.norms if n not in known] + [graph.output]):
            continue
        leaves = _leaves(recipe, s)
        after = needed(s | {v})
        into = None
        for leaf in sorted(leaves, key=lambda n: n.index):
            if (leaf in stored and leaf not in after and leaf.channels == v.channels
                    and sizes[leaf] == sizes[v]
                    and _pointwise_from(leaf, v, [n for n in recipe if n not in leaves])):
                into = leaf
                break
        if into is None and sum(stored.values()) + nbytes(v) > storage:
            continue
        p = make("merge", v, store=True, into=into)
        if into is not None:
            del stored[into]
        stored[v] = nbytes(v)
        p.live_bytes = sum(stored.values())
        passes.append(p)


def _pointwise_from(leaf, target, computed):
    """True when every path from `leaf` through the `computed` nodes is pointwise, so `target`
    can overwrite `leaf` tile by tile (no tile reads a neighbour's pixels of `leaf`)."""
    members = set(computed)
    frontier, seen = [leaf], set()
    while frontier:
        n = frontier.pop()
        for c in n.consumers:
            if c not in members or c in seen:
                continue
            if c.kind not in ("identity", "pointwise", "norm"):
                return False
            seen.add(c)
            frontier.append(c)
    return True


def needed_budget(graph, height, width, known=(), target=2.0):
    """Smallest budget (doubling from 64 MB) whose plan computes at most `target` times the
    network's multiply-adds; None if none up to the whole-image need does."""
    budget = 64 * MB
    limit = max(graph.whole_image_bytes(height, width), budget)
    while budget <= 2 * limit:
        if plan(graph, height, width, budget, known).work <= target:
            return budget
        budget *= 2
    return None


# ----------------------------------------------------------------------------- execution


def _load_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
        return None


_MALLOC_TRIM = _load_trim()


def release_free_memory():
    """Hands memory that the process freed back to the system, where glibc allows it.

    glibc keeps the freed buffers of a pass's tiles in its per-thread arenas, where numpy's next
    stored tensor cannot use them: without this, every pass's workspace stays resident on top
    of the next (measured at 48 Mpix: 2.3 GB resident for a 1.5 GB plan).
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)



def _union(a, b):
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


class TiledRunner:
    """Runs a network over one large image, tile by tile, one conditioning row at a time.

        runner = TiledRunner(model, content, budget_bytes)
        runner.run(style_row, emit)   # emit(region, tile) for each output tile

    `content`: the image, uint8 [H,W,3] (converted per tile, as `image_io` converts whole
    images) or float32 in [0, 1]. `emit((r0, r1, c0, c1), tile)` receives float32 [h,w,C] tiles of
    the network's output, covering it once. Statistics of norms that do not depend on the
    conditioning input are gathered once and reused for every row.
    """

    def __init__(self, model, content, budget, graph=None, progress=None,
                 max_recompute=MAX_RECOMPUTE):
        self.graph = graph or Graph(model)
        self.max_recompute = max_recompute
        self.content = content
        self.height, self.width = content.shape[:2]
        self.budget = int(budget)
        self.progress = progress
        self.shared = {}  # style-independent norm -> its statistics (see _run_pass)
        self.statistics = {}  # norm name -> float64 (mean, variance), each [C], of the last run
        self._plans = {}
        self._done = 0.0
        self._total = None

    def plan(self, first=True):
        """The `Plan` of the first row (first=True) or of later ones (the statistics of
        style-independent norms known); raises `MemoryBudgetError` when the budget is too small
        for a reasonable one."""
        if first in self._plans:
            return self._plans[first]
        known = () if first else [n for n in self.graph.norms if not n.inputs[0].styled]
        result = plan(self.graph, self.height, self.width, self.budget, known)
        if result.work > self.max_recompute or result.peak_bytes > self.budget:
            need = needed_budget(self.graph, self.height, self.width, known)
            hint = (f"needs a memory budget of about {need // MB} MB" if need else
                    "cannot be planned in any budget")
            raise MemoryBudgetError(
                f"a {self.width}x{self.height} image with this network {hint} (given "
                f"{self.budget // MB} MB: {result.work:.1f}x the time, peak "
                f"{result.peak_bytes // MB} MB); raise --memory_budget_mb or lower --max_size")
        self._plans[first] = result
        return result

    def cost(self, rows):
        """Estimated cost of `rows` conditioning rows (for progress)."""
        first = self.plan(True)
        later = self.plan(False) if rows > 1 else first
        return sum(p.cost for p in first.passes) + (rows - 1) * sum(p.cost for p in later.passes)

    def expect(self, rows):
        self._total = self.cost(rows)
        self._done = 0.0

    def run(self, condition, emit):
        import tensorflow as tf

        graph = self.graph
        first = not self.shared
        the_plan = self.plan(first)
        cond = None if condition is None else tf.constant(np.asarray(condition, np.float32))
        self._stats = dict(self.shared)
        self._affine = {}
        for norm in graph.norms:
            gamma, beta = norm.layer.gamma_beta(cond)
            self._affine[norm] = (tf.cast(gamma, tf.float32), tf.cast(beta, tf.float32))
        self._sizes = the_plan.sizes
        self._buffers = {}
        try:
            for p in the_plan.passes:
                self._run_pass(p, emit)
                self._release(p, the_plan)
                release_free_memory()
        finally:
            self._buffers = {}
            release_free_memory()
        for norm in graph.norms:
            if not norm.inputs[0].styled:
                self.shared[norm] = self._stats[norm]
        self.statistics = {n.name: self._stats[n][2:] for n in graph.norms}

    def _release(self, p, the_plan):
        later = the_plan.passes[the_plan.passes.index(p) + 1:]
        keep = set().union(*(q.leaves for q in later)) if later else set()
        keep |= {q.into for q in later if q.into is not None}
        for n in list(self._buffers):
            if n not in keep:
                del self._buffers[n]

    def _run_pass(self, p, emit):
        import tensorflow as tf

        from image_stylization.layers import moments

        target = p.target
        h, w = self._sizes[target]
        if p.store:
            if p.into is not None:
                # In place: every tile reads `into` only at its own pixels (planned so), and
                # reads them before it writes.
                buffer = self._buffers[p.into]
            else:
                buffer = np.empty((h, w, target.channels), np.float32)
        moments_acc = Moments(target.channels) if p.kind == "stats" else None
        rows, cols = p.tile
        tiles = [(r, min(r + rows, h), c, min(c + cols, w))
                 for r in range(0, h, rows) for c in range(0, w, cols)]
        for region in tiles:
            value = self._evaluate(p, region)
            r0, r1, c0, c1 = region
            if moments_acc is not None:
                mean, variance = moments(value)
                moments_acc.add((r1 - r0) * (c1 - c0), mean.numpy(), variance.numpy())
            if p.store:
                buffer[r0:r1, c0:c1] = value[0].numpy()
            if p.kind == "output":
                emit(region, value[0].numpy())
            if self.progress is not None and self._total:
                self._done += p.cost * (r1 - r0) * (c1 - c0) / (h * w)
                self.progress(min(1.0, self._done / self._total))
        if p.store:
            self._buffers.pop(p.into, None)
            self._buffers[target] = buffer
        if moments_acc is not None:
            self._stats[p.norm] = (
                tf.constant(moments_acc.mean.reshape(1, 1, 1, -1), tf.float32),
                tf.constant(moments_acc.variance.reshape(1, 1, 1, -1), tf.float32),
                moments_acc.mean, moments_acc.variance)

    def _evaluate(self, p, region):
        """The pass's target over `region`, from its leaves."""
        graph, sizes = self.graph, self._sizes
        leaves = p.leaves
        want = _regions(graph, p.recipe, leaves, p.target, region, sizes)
        waiting = {n: 0 for n in p.recipe}
        for node in p.recipe:
            if node not in leaves:
                for i in node.inputs:
                    waiting[i] += 1
        values = {}
        for node in p.recipe:
            r = want[node]
            if node in leaves:
                values[node] = self._read(node, r)
                continue
            ins = []
            for i, r_in in zip(node.inputs, graph.needs(node, r, sizes)):
                ins.append(_slice(values[i], want[i], r_in))
                waiting[i] -= 1
                if waiting[i] == 0:
                    del values[i]
            values[node] = self._apply(node, r, ins)
        return values[p.target]

    def _read(self, node, region):
        import tensorflow as tf

        r0, r1, c0, c1 = region
        if node.kind == "image":
            tile = self.content[r0:r1, c0:c1]
            if tile.dtype == np.uint8:
                tile = tile.astype(np.float32) / 255.0  # as image_io converts whole images
            return tf.constant(np.asarray(tile, np.float32)[None])
        return tf.constant(self._buffers[node][r0:r1, c0:c1][None])

    def _apply(self, node, region, ins):
        import tensorflow as tf

        from image_stylization.layers import normalize

        kind, layer = node.kind, node.layer
        if kind in ("identity", "crop"):
            return ins[0]
        if kind == "pointwise":
            return layer(ins if len(ins) > 1 else ins[0])
        if kind == "norm":
            mean, variance = self._stats[node][:2]
            gamma, beta = self._affine[node]
            return normalize(ins[0], mean, variance, gamma, beta, layer.epsilon,
                             layer.compute_dtype)
        r0, r1, c0, c1 = region
        n_in = self._sizes[node.inputs[0]]
        x = ins[0]
        if kind == "pad":
            for axis, (a, b, n) in ((1, (r0, r1, n_in[0])), (2, (c0, c1, n_in[1]))):
                if b > n:
                    lo = _need_axis(node, a, b, n)[0]
                    index = [i if i < n else 2 * (n - 1) - i for i in range(a, b)]
                    x = tf.gather(x, [i - lo for i in index], axis=axis)
            return x
        if kind == "upsample":
            u = layer.factor
            y = layer(x)
            lo_r, lo_c = r0 // u * u, c0 // u * u
            return y[:, r0 - lo_r:r1 - lo_r, c0 - lo_c:c1 - lo_c, :]
        # conv
        p, s, u = layer.kernel_size // 2, layer.strides, layer.upsample
        if u == 1:
            pads = [[0, 0]]
            for a, b, n in ((r0, r1, n_in[0]), (c0, c1, n_in[1])):
                pads.append([max(p - s * a, 0), max(s * (b - 1) + p + 1 - n, 0)])
            pads.append([0, 0])
            if any(v for pair in pads for v in pair):
                x = tf.pad(x, pads, mode="REFLECT")
            return layer.convolve(x)
        # Upsampling convs run whole (`call` has the low-resolution arrangement) on the input
        # region with its halo; the outputs next to an inner edge of the region saw the layer's
        # own padding instead of neighbours and are cropped away.
        y = layer(x)
        lo_r = max(r0 - p, 0) // u * u
        lo_c = max(c0 - p, 0) // u * u
        return y[:, r0 - lo_r:r1 - lo_r, c0 - lo_c:c1 - lo_c, :]


def _slice(value, have, want):
    if have == want:
        return value
    return value[:, want[0] - have[0]:want[1] - have[0], want[2] - have[2]:want[3] - have[2], :]
