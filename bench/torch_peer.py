"""PyTorch peer of our training step: the same transformer, VGG-19 loss, losses and Adam step.

Not a test, and not part of the package (torch is no dependency of image_stylization). It lives in
its own venv:

    python3 -m venv .venv-torch && . .venv-torch/bin/activate
    pip install -r bench/requirements-torch.txt
    python bench/torch_peer.py --size 128 --batch 4 --modes eager,channels_last,compile \\
        --steps 8 --warmup 2 --threads 2 --json out/torch_128x4.json

It times one training step of the N-style network (paper preset by default) the way
`image_stylization.train` computes it, in each `--modes` (round-robin: step r of every mode, then
step r+1, so load from elsewhere hits all modes alike) and prints and writes the median seconds per
step:

- eager:         plain PyTorch modules, NCHW;
- channels_last: the same with model, VGG and inputs in torch.channels_last memory format;
- compile:       `torch.compile` (default backend, inductor) of forward + loss; AOTAutograd
                 compiles the backward; Adam runs eagerly;
- compile_channels_last: both (not in the default list).

The step, as ours (image_stylization/train.py, `_run.forward_backward` and `replica_step`):
one style label per example drawn each step, one-hot style weights, transformer forward (reflection
padded bias-free convs, conditional instance norm, nearest x2 upsampling, residual blocks, sigmoid),
VGG-19 with average pooling and Caffe preprocessing on the content batch up to the deepest content
layer (no gradient) and on the pastiche up to the deepest style layer (gradient to its input only),
content loss mean((phi(p) - phi(c))^2) and style loss mean((G(p) - G(s))^2) with G = F^T F / (H*W)
per layer, per example, times the loss weights and style coefficients, averaged over the batch; the
gradient of the transformer weights; optional per-tensor norm clipping; Adam(lr 1e-3, 0.9, 0.999,
1e-8). Inputs are real: a batch of content photos and per-style Gram targets of real paintings from
../shared/data (random pixels when it is absent; the FLOPs do not depend on the pixels).

`--check` (needs TensorFlow and this package in the same venv: `pip install -e ".[cpu]"`) proves it
is the same computation: it copies the weights of the package's bundled trained transformer of the
preset and the VGG weights of the package's loss network into the torch modules, feeds identical
inputs, and compares forward outputs (<= 1e-5), every per-term loss (rtol 1e-4) and the gradient
of every transformer weight (against the same torch code run in float64, rtol 1e-3; see
`run_check` for why float64) with the package's own `checkpoint.load_model`,
`vgg.build_loss_network` and `losses.total_loss`, for every mode in `--modes`, then one Adam step;
it exits 1 when any comparison fails. E.g.

    python bench/torch_peer.py --check --size 64 --batch 2 --modes eager,channels_last,compile
"""

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:
    if __name__ == "__main__":
        print("torch_peer: torch is not installed; in a separate venv: "
              "pip install -r bench/requirements-torch.txt", file=sys.stderr)
        sys.exit(2)
    raise

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
DEFAULT_VGG_WEIGHTS = os.path.join(SHARED_DATA, "vgg", "vgg19_notop_q8.npz")

MODES = ("eager", "channels_last", "compile", "compile_channels_last")
DEFAULT_MODES = "eager,channels_last,compile"

# Copies of image_stylization.model.PRESETS and losses.DEFAULT_*_WEIGHTS (this script must run
# without TensorFlow); `--check` fails if they drift from the package.
PRESETS = {
    "paper": dict(
        contract=[(9, 1, 32), (3, 2, 64), (3, 2, 128)],
        residual_blocks=5,
        residual_filters=128,
        expand=[(3, 2, 64), (3, 2, 32), (9, 1, 3)],
    ),
    "android_26": dict(
        contract=[(9, 1, 32), (3, 2, 32), (3, 2, 32)],
        residual_blocks=6,
        residual_filters=32,
        expand=[(3, 2, 8), (3, 2, 4), (9, 1, 3)],
    ),
}
DEFAULT_CONTENT_WEIGHTS = {"conv3": 1.0}
DEFAULT_STYLE_WEIGHTS = {"conv1": 1e-4, "conv2": 1e-4, "conv3": 1e-4, "conv4": 1e-4}

# VGG-19's convolutional part: convs per block; Magenta's convK = the last conv of block K.
VGG19_BLOCKS = (2, 2, 4, 4, 4)
VGG19_CHANNELS = (64, 128, 256, 512, 512)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# The paintings of checkpoints/paper_6styles first, so the default 6 styles are the bundled ones.
PREFERRED_STYLES = ("hokusai_great_wave", "kandinsky_composition_vii", "munch_the_scream",
                    "picabia_udnie", "turner_shipwreck", "van_gogh_starry_night")
STYLE_IMAGE_SIZE = 256  # image_stylization_create_dataset's default --style_image_size
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class UsageError(Exception):
    """A bad flag or input file: one line on stderr, exit 2."""


# ----------------------------------------------------------------------------- the transformer


def instance_norm(x, gamma, beta, epsilon=1e-5):
    """x [B,C,H,W], gamma/beta [B,C]: per example and channel, biased variance (layers.instance_norm)."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    centered = x - mean
    variance = centered.square().mean(dim=(2, 3), keepdim=True)
    return centered * torch.rsqrt(variance + epsilon) * gamma[:, :, None, None] + beta[:, :, None, None]


class ConvCIN(nn.Module):
    """Reflection pad k//2, bias-free VALID conv, conditional instance norm, optional ReLU
    (ReflectionPadConv2D + ConditionalInstanceNormalization [+ ReLU] of model._conv_cin)."""

    def __init__(self, in_channels, out_channels, kernel, stride, num_styles, relu):
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        # The Keras layer's initializer: RandomNormal(0, 0.01); gamma 1, beta 0.
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel) * 0.01)
        self.gamma = nn.Parameter(torch.ones(num_styles, out_channels))
        self.beta = nn.Parameter(torch.zeros(num_styles, out_channels))

    def forward(self, x, style_weights):
        p = self.kernel // 2
        if p:
            x = F.pad(x, (p, p, p, p), mode="reflect")
        x = F.conv2d(x, self.weight, stride=self.stride)
        x = instance_norm(x, style_weights @ self.gamma, style_weights @ self.beta)
        return F.relu(x) if self.relu else x


class Transformer(nn.Module):
    """model.build_transformer(num_styles, preset) in NCHW: image [B,3,H,W] in [0,1], style
    weights [B,N] -> stylized [B,3,H,W] in (0,1)."""

    def __init__(self, num_styles, preset="paper"):
        super().__init__()
        spec = PRESETS[preset]
        self.num_styles = num_styles
        self.names = []  # Keras layer name of each ConvCIN, in order
        layers = []
        channels = 3
        for i, (k, s, f) in enumerate(spec["contract"], start=1):
            layers.append(ConvCIN(channels, f, k, s, num_styles, relu=True))
            self.names.append(f"contract.conv{i}")
            channels = f
        c = spec["residual_filters"]
        self.residual_blocks = spec["residual_blocks"]
        for b in range(1, self.residual_blocks + 1):
            layers.append(ConvCIN(channels, c, 3, 1, num_styles, relu=True))
            layers.append(ConvCIN(c, c, 3, 1, num_styles, relu=False))
            self.names += [f"residual.residual{b}.conv1", f"residual.residual{b}.conv2"]
            channels = c
        self.upsample = []
        last = len(spec["expand"])
        for i, (k, s, f) in enumerate(spec["expand"], start=1):
            self.upsample.append(s)
            layers.append(ConvCIN(channels, f, k, 1, num_styles, relu=i != last))
            self.names.append(f"expand.conv{i}.conv")
            channels = f
        self.contract_count = len(spec["contract"])
        self.layers = nn.ModuleList(layers)

    def forward(self, image, style_weights):
        h, w = image.shape[2], image.shape[3]
        # PadToMultiple(4): reflection at the bottom/right, so the stride-2 convs come back to H,W.
        ph, pw = (-h) % 4, (-w) % 4
        x = F.pad(image, (0, pw, 0, ph), mode="reflect") if ph or pw else image
        layers = iter(self.layers)
        for _ in range(self.contract_count):
            x = next(layers)(x, style_weights)
        for _ in range(self.residual_blocks):
            conv1, conv2 = next(layers), next(layers)
            x = x + conv2(conv1(x, style_weights), style_weights)  # no ReLU after the add
        for factor in self.upsample:
            if factor > 1:
                x = F.interpolate(x, scale_factor=factor, mode="nearest")
            x = next(layers)(x, style_weights)
        return torch.sigmoid(x[:, :, :h, :w])

    def named_layers(self):
        return list(zip(self.names, self.layers))


# ----------------------------------------------------------------------------- VGG-19, avg pool


def vgg_layer_names():
    names = []
    for block, n in enumerate(VGG19_BLOCKS, start=1):
        names += [f"block{block}_conv{i}" for i in range(1, n + 1)] + [f"block{block}_pool"]
    return names


def normalize_end_point(name):
    """conv3 / vgg_16/conv3 / vgg_19/conv3 / block3_conv4 -> block3_conv4 (vgg.normalize_end_point)."""
    key = name.strip()
    for prefix in ("vgg_16/", "vgg_19/"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    for block, n in enumerate(VGG19_BLOCKS, start=1):
        if key == f"conv{block}":
            return f"block{block}_conv{n}"
        if key == f"pool{block}":
            return f"block{block}_pool"
    if key in vgg_layer_names():
        return key
    raise UsageError(f"unknown VGG-19 end point {name!r}; use conv1..conv5, pool1..pool5 or a "
                     f"layer name such as block3_conv4")


def read_vgg_npz(path):
    """{layer: (weight OIHW, bias)} of the 8-bit k-means VGG-19 .npz (SOURCES.md section 4)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {}
            for name in vgg_layer_names():
                if name.endswith("_pool") or f"{name}_W_q" not in z.files:
                    continue
                q, table = z[f"{name}_W_q"], z[f"{name}_W_table"].astype(np.float32)
                out[name] = (np.ascontiguousarray(table[q]), z[f"{name}_b"].astype(np.float32))
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"--vgg_weights: {path}: cannot read VGG weights ({e})") from None
    if len(out) != sum(VGG19_BLOCKS):
        raise UsageError(f"--vgg_weights: {path}: has {len(out)} of VGG-19's 16 conv layers")
    return out


class VGG(nn.Module):
    """vgg.build_loss_network("vgg19", pooling="avg"): RGB [B,3,H,W] in [0,1] -> {end point: features},
    cut after the deepest end point; frozen (gradients flow to the input only)."""

    def __init__(self, end_points, weights=None):
        super().__init__()
        order = vgg_layer_names()
        self.end_points = sorted(set(end_points), key=order.index)
        self.order = order[: order.index(self.end_points[-1]) + 1]
        convs = {}
        in_channels = 3
        for block, (n, c) in enumerate(zip(VGG19_BLOCKS, VGG19_CHANNELS), start=1):
            for i in range(1, n + 1):
                name = f"block{block}_conv{i}"
                if name in self.order:
                    conv = nn.Conv2d(in_channels, c, 3, padding=1)  # Keras "same" for 3x3
                    if weights is not None:
                        w, b = weights[name]
                        conv.weight.data.copy_(torch.from_numpy(w))
                        conv.bias.data.copy_(torch.from_numpy(b))
                    convs[name] = conv
                in_channels = c
        self.convs = nn.ModuleDict(convs)
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, x, until=None):
        """Features of every end point up to `until` (default: all)."""
        last = until or self.end_points[-1]
        x = x * 255.0
        x = x.flip(1) - self.mean  # Caffe: RGB -> BGR, minus the BGR means
        out = {}
        for name in self.order:
            if name.endswith("_pool"):
                x = F.avg_pool2d(x, 2, 2)
            else:
                x = F.relu(self.convs[name](x))
            if name in self.end_points:
                out[name] = x
            if name == last:
                break
        return out


# ----------------------------------------------------------------------------- losses


def gram_matrix(f):
    """[B,C,H,W] -> [B,C,C], G = F^T F / (H*W) (losses.gram_matrix)."""
    b, c, h, w = f.shape
    if c > 1 and f.stride(1) == 1:  # channels_last: the NHWC view is free
        m = f.permute(0, 2, 3, 1).reshape(b, h * w, c)
        return (m.transpose(1, 2) @ m) / (h * w)
    m = f.reshape(b, c, h * w)
    return (m @ m.transpose(1, 2)) / (h * w)


def total_loss(pastiche, content, targets, content_weights, style_weights, coefficients):
    """losses.total_loss without the TV term: per-example [B] total and the same `details` keys."""
    details = {}
    content_total = None
    for name, weight in content_weights.items():
        layer = (pastiche[name] - content[name]).square().mean(dim=(1, 2, 3))
        details[f"content_loss/{name}"] = layer
        details[f"weighted_content_loss/{name}"] = weight * layer
        content_total = details[f"weighted_content_loss/{name}"] + (0 if content_total is None else content_total)
    style_total = None
    for name, weight in style_weights.items():
        layer = (gram_matrix(pastiche[name]) - targets[name]).square().mean(dim=(1, 2))
        details[f"style_loss/{name}"] = layer
        details[f"weighted_style_loss/{name}"] = weight * layer * coefficients
        style_total = details[f"weighted_style_loss/{name}"] + (0 if style_total is None else style_total)
    total = None
    for key, value in (("content_loss", content_total), ("style_loss", style_total)):
        if value is not None:
            details[key] = value
            total = value if total is None else total + value
    details["total_loss"] = total
    return total, details


# ----------------------------------------------------------------------------- the step


class Step:
    """One training step (forward, losses, backward, clip, Adam) of one mode, on its own copies."""

    def __init__(self, mode, transformer, loss_net, grams, content_weights, style_weights,
                 coefficients, learning_rate=1e-3, clip_gradient_norm=0.0):
        self.mode = mode
        self.channels_last = mode in ("channels_last", "compile_channels_last")
        self.transformer = copy.deepcopy(transformer)
        self.loss_net = copy.deepcopy(loss_net)
        if self.channels_last:
            self.transformer.to(memory_format=torch.channels_last)
            self.loss_net.to(memory_format=torch.channels_last)
        self.grams = grams  # {end point: [N, C, C]}
        self.content_weights = content_weights
        self.style_weights = style_weights
        self.coefficients = coefficients
        self.content_until = max(content_weights, key=loss_net.order.index) if content_weights else None
        self.clip = float(clip_gradient_norm)
        self.params = list(self.transformer.parameters())
        # fused: PyTorch's fastest Adam on CPU (one kernel over all tensors; the default on CPU is
        # a Python loop of ~8 ops per tensor).
        self.optimizer = torch.optim.Adam(self.params, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8,
                                          fused=True)
        compiled = mode in ("compile", "compile_channels_last")
        self.loss_fn = torch.compile(self.losses) if compiled else self.losses

    def prepare(self, images):
        """NHWC numpy [B,H,W,3] -> the mode's input tensor."""
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def losses(self, images, labels):
        """Mean loss over the batch, the per-example details, and the stylized batch."""
        style = F.one_hot(labels, self.transformer.num_styles).to(images.dtype)
        stylized = self.transformer(images, style)
        content = {}
        if self.content_until is not None:
            with torch.no_grad():  # the content's features are constants of the step
                content = self.loss_net(images, until=self.content_until)
        pastiche = self.loss_net(stylized)
        targets = {e: g[labels] for e, g in self.grams.items()}
        per_example, details = total_loss(pastiche, content, targets, self.content_weights,
                                          self.style_weights, self.coefficients[labels])
        return per_example.mean(), details, stylized

    def gradients(self, images, labels):
        """(loss, details, stylized, gradients) without touching the optimizer (for --check)."""
        loss, details, stylized = self.loss_fn(images, labels)
        grads = torch.autograd.grad(loss, self.params)
        return loss, details, stylized, grads

    def __call__(self, images, labels):
        loss, _, _ = self.loss_fn(images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip > 0:
            # slim / tf.clip_by_norm: each tensor separately, g * clip / max(||g||, clip).
            with torch.no_grad():
                for p in self.params:
                    p.grad.mul_(self.clip / torch.clamp(p.grad.norm(), min=self.clip))
        self.optimizer.step()
        return loss.detach()


# ----------------------------------------------------------------------------- inputs


def _image_files(folder):
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith("."))


def _load_rgb(path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as e:
        raise UsageError(f"{path}: cannot read image ({e})") from None


def content_batch(size, batch, folder=None):
    """[B, S, S, 3] float32 in [0,1]: photos from ../shared/data/content (short side resized to S,
    central crop), spread over the folder; uniform noise when there are none. Returns (array, source)."""
    from PIL import Image

    files = _image_files(folder or os.path.join(SHARED_DATA, "content"))
    if not files:
        rng = np.random.default_rng(0)
        return rng.uniform(size=(batch, size, size, 3)).astype(np.float32), "random"
    picks = [files[(i * len(files)) // batch % len(files)] for i in range(batch)]
    out = []
    for path in picks:
        im = _load_rgb(path)
        scale = size / min(im.size)
        w, h = max(size, round(im.size[0] * scale)), max(size, round(im.size[1] * scale))
        im = im.resize((w, h), Image.Resampling.BILINEAR)
        left, top = (w - size) // 2, (h - size) // 2
        out.append(np.asarray(im.crop((left, top, left + size, top + size)), np.float32) / 255.0)
    return np.stack(out), os.path.dirname(picks[0])


def style_images(num_styles, folder=None):
    """`num_styles` paintings as float32 [h, w, 3] in [0,1], longest side 256 (Lanczos), and names."""
    from PIL import Image

    files = _image_files(folder or os.path.join(SHARED_DATA, "styles"))
    if not files:
        return None, None
    stem = {os.path.splitext(os.path.basename(f))[0]: f for f in files}
    ordered = [stem[n] for n in PREFERRED_STYLES if n in stem]
    ordered += [f for f in files if f not in ordered]
    picks = [ordered[i % len(ordered)] for i in range(num_styles)]
    images = []
    for path in picks:
        im = _load_rgb(path)
        scale = min(1.0, STYLE_IMAGE_SIZE / max(im.size))
        if scale < 1:
            im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))),
                           Image.Resampling.LANCZOS)
        images.append(np.asarray(im, np.float32) / 255.0)
    return images, [os.path.splitext(os.path.basename(p))[0] for p in picks]


def style_grams(loss_net, images, end_points, num_styles):
    """{end point: [N, C, C]} Gram targets of the paintings (as image_stylization_create_dataset),
    or random positive-semidefinite stand-ins when there are no paintings."""
    if images is None:
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            channels = {e: f.shape[1] for e, f in loss_net(torch.rand(1, 3, 32, 32, generator=g)).items()}
        grams = {}
        for e in end_points:
            f = torch.rand(num_styles, channels[e], 64, generator=g) * 100
            grams[e] = f @ f.transpose(1, 2) / 64
        return grams
    per_style = []
    with torch.no_grad():
        for image in images:
            feats = loss_net(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None])
            per_style.append({e: gram_matrix(feats[e])[0] for e in end_points})
    return {e: torch.stack([s[e] for s in per_style]) for e in end_points}


def parse_weights(text, what):
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise UsageError(f"--{what}: not a JSON dict such as '{{\"conv3\": 1.0}}': {text!r}") from None
    if not isinstance(value, dict):
        raise UsageError(f"--{what}: expected a JSON dict of end point -> weight, got {text!r}")
    out = {}
    for key, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise UsageError(f"--{what}: weight of {key!r} must be a number >= 0, got {weight!r}")
        try:
            name = normalize_end_point(key)
        except UsageError as e:
            raise UsageError(f"--{what}: {e}") from None
        if weight > 0:
            out[name] = float(weight)
    return out


# ----------------------------------------------------------------------------- set-up


class Setup:
    """Everything a timing run or a check needs: modules, Grams, inputs, loss configuration."""

    def __init__(self, size, batch, preset="paper", num_styles=6, vgg_weights=None,
                 content_weights=None, style_weights=None, seed=0, vgg_arrays=None):
        if preset not in PRESETS:
            raise UsageError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        if size < 16:
            raise UsageError(f"--size must be >= 16 (the loss network pools 4 times), got {size}")
        if batch < 1 or num_styles < 1:
            raise UsageError("--batch and --num_styles must be >= 1")
        self.size, self.batch, self.preset, self.num_styles = size, batch, preset, num_styles
        self.content_weights = dict(content_weights if content_weights is not None
                                    else {normalize_end_point(k): v for k, v in DEFAULT_CONTENT_WEIGHTS.items()})
        self.style_weights = dict(style_weights if style_weights is not None
                                  else {normalize_end_point(k): v for k, v in DEFAULT_STYLE_WEIGHTS.items()})
        if not self.content_weights and not self.style_weights:
            raise UsageError("--content_weights and --style_weights are all zero")
        end_points = list(self.content_weights) + list(self.style_weights)
        if vgg_arrays is None:
            if vgg_weights is None:
                raise UsageError("--vgg_weights is required (../shared/data/vgg/vgg19_notop_q8.npz "
                                 "is not beside this checkout)")
            if not os.path.isfile(vgg_weights):
                raise UsageError(f"--vgg_weights: {vgg_weights}: no such file")
            vgg_arrays = read_vgg_npz(vgg_weights)
        self.vgg_weights = vgg_weights
        torch.manual_seed(seed)
        self.transformer = Transformer(num_styles, preset)
        self.loss_net = VGG(end_points, vgg_arrays)
        paintings, self.style_names = style_images(num_styles)
        self.grams = style_grams(self.loss_net, paintings, list(self.style_weights), num_styles)
        self.style_source = "paintings" if paintings is not None else "random"
        self.coefficients = torch.ones(num_styles)
        self.images, self.content_source = content_batch(size, batch)

    def step(self, mode, learning_rate=1e-3, clip_gradient_norm=0.0):
        return Step(mode, self.transformer, self.loss_net, self.grams, self.content_weights,
                    self.style_weights, self.coefficients, learning_rate, clip_gradient_norm)


# ----------------------------------------------------------------------------- timing


def count_gflop(setup):
    """Conv/matmul GFLOP of one eager step (forward + backward), by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    step = setup.step("eager")
    labels = torch.zeros(setup.batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        step(step.prepare(setup.images), labels)
    return counter.get_total_flops() / 1e9


def time_modes(setup, modes, steps, warmup, learning_rate=1e-3, clip=0.0, seed=0, log=print):
    """Round-robin timing; returns {mode: {...}} with median seconds per step."""
    runners = {}
    for mode in modes:
        step = setup.step(mode, learning_rate, clip)
        images = step.prepare(setup.images)
        gen = torch.Generator().manual_seed(seed)  # the same label stream in every mode
        runners[mode] = (step, images, gen)
    result = {m: {"times_s": [], "losses": []} for m in modes}
    for mode, (step, images, gen) in runners.items():
        for i in range(warmup):
            labels = torch.randint(0, setup.num_styles, (setup.batch,), generator=gen)
            t0 = time.perf_counter()
            loss = float(step(images, labels))
            elapsed = time.perf_counter() - t0
            if i == 0:
                result[mode]["first_step_s"] = elapsed
            log(f"  warm-up {mode} step {i + 1}/{warmup}: {elapsed:.2f} s, loss {loss:.4g}")
    for r in range(steps):
        for mode, (step, images, gen) in runners.items():
            labels = torch.randint(0, setup.num_styles, (setup.batch,), generator=gen)
            t0 = time.perf_counter()
            loss = float(step(images, labels))
            result[mode]["times_s"].append(time.perf_counter() - t0)
            result[mode]["losses"].append(loss)
        log(f"  round {r + 1}/{steps}: " + ", ".join(
            f"{m} {result[m]['times_s'][-1]:.2f} s" for m in modes))
    for mode, res in result.items():
        ts = res["times_s"]
        res.update(median_s=statistics.median(ts), min_s=min(ts), max_s=max(ts),
                   images_per_s=setup.batch / statistics.median(ts))
    return result


def peak_rss_gb():
    """Peak resident memory of this process (all modes together), GB; None where unknown."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def write_json_atomic(path, payload):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".torch_peer.", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# ----------------------------------------------------------------------------- --check


def _to_tf_layout(name, grad):
    """A torch gradient -> the Keras variable's layout (conv kernels OIHW -> HWIO)."""
    g = grad.detach().float().numpy()
    return g.transpose(2, 3, 1, 0) if g.ndim == 4 else g


def copy_keras_transformer(keras_model, transformer):
    """Copies a Keras transformer's kernels and gamma/beta tables into the torch Transformer."""
    by_name = {layer.name: layer for layer in keras_model.layers}
    with torch.no_grad():
        for name, module in transformer.named_layers():
            conv, norm = by_name[name], by_name[f"{name}.InstanceNorm"]
            module.weight.copy_(torch.from_numpy(np.asarray(conv.kernel.numpy()).transpose(3, 2, 0, 1).copy()))
            module.gamma.copy_(torch.from_numpy(np.asarray(norm.gamma.numpy())))
            module.beta.copy_(torch.from_numpy(np.asarray(norm.beta.numpy())))


def keras_vgg_arrays(loss_network):
    """{layer: (weight OIHW, bias)} read back from the package's Keras loss network."""
    import keras

    out = {}
    for layer in loss_network.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = (np.asarray(w) for w in layer.get_weights())
            out[layer.name] = (np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), bias)
    return out


BUNDLED = {"paper": "paper_6styles", "android_26": "tf_stylize_26"}


def _named_grads(transformer, params, grads):
    """{Keras variable path: gradient in the Keras layout} of a torch Transformer's gradients."""
    grad_of = {id(p): g for p, g in zip(params, grads)}
    out = {}
    for name, module in transformer.named_layers():
        for param, tensor in (("weights", module.weight), ("gamma", module.gamma), ("beta", module.beta)):
            layer = name if param == "weights" else f"{name}.InstanceNorm"
            out[f"{layer}/{param}"] = _to_tf_layout(param, grad_of[id(tensor)])
    return out


def run_check(size=64, batch=2, modes=("eager", "channels_last"), preset="paper",
              vgg_weights=DEFAULT_VGG_WEIGHTS, content_weights=None, style_weights=None,
              perturb=None, log=print):
    """Compares the torch step with the package's TF code on identical weights and inputs.

    The transformer is the package's bundled trained model of `preset` (paper_6styles: 6 styles;
    tf_stylize_26: 26), loaded by `checkpoint.load_model` and copied into torch; its conv kernels
    and per-style gamma/beta rows are real, not an init.

    Gradients: near a trained model the content and style gradients nearly cancel (and at a
    random init the last CIN's gamma/beta absorb almost all of d(loss)/d(output)), so the weight
    gradients are ill-conditioned in float32: a 1e-6 difference in the forward pass (TF vs torch,
    or float32 vs float64) moves them by ~1e-3. So the proof is against the same torch code in
    float64: TF's float32 gradients must match it to rtol 1e-3 per tensor (norm-wise); each torch
    mode's float32 gradients must match TF's and float64's to 1e-2 (measured: ~1e-3), where a
    real difference (a missing ReLU, RGB for BGR, another normalization) is O(0.1..1).

    Returns {"ok": bool, "rows": [(what, value, limit, ok)], ...}. `perturb(setup)` is applied to
    the torch side after the weights are copied (tests use it to see the check fail).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from image_stylization import checkpoint as tf_checkpoint
    from image_stylization import losses as tf_losses
    from image_stylization import model as tf_model
    from image_stylization import style_dataset
    from image_stylization import vgg as tf_vgg

    rows = []

    def record(what, value, limit, ok=None):
        ok = bool(value <= limit) if ok is None else bool(ok)
        rows.append((what, float(value), float(limit), ok))
        log(f"  {'ok  ' if ok else 'FAIL'} {what}: {value:.3g} (limit {limit:.3g})")

    # The constants this script copies must still be the package's.
    def canon(presets):
        return {k: {kk: [tuple(t) for t in vv] if isinstance(vv, list) else vv for kk, vv in v.items()}
                for k, v in presets.items()}

    record("PRESETS == image_stylization.model.PRESETS (0 = equal)",
           0 if canon(PRESETS) == canon(tf_model.PRESETS) else 1, 0)
    record("default loss weights == losses.DEFAULT_*_WEIGHTS (0 = equal)",
           0 if (DEFAULT_CONTENT_WEIGHTS == tf_losses.DEFAULT_CONTENT_WEIGHTS
                 and DEFAULT_STYLE_WEIGHTS == tf_losses.DEFAULT_STYLE_WEIGHTS) else 1, 0)

    keras_model = tf_checkpoint.load_model(tf_checkpoint.bundled_checkpoint_dir(BUNDLED[preset]))
    num_styles = tf_model.num_styles_of(keras_model)
    log(f"  transformer: bundled {BUNDLED[preset]} ({num_styles} styles)")

    # The package's loss network; its VGG weights, read back from the Keras layers, go into torch.
    cw = tf_losses.parse_loss_weights(content_weights or tf_losses.DEFAULT_CONTENT_WEIGHTS, "vgg19")
    sw = tf_losses.parse_loss_weights(style_weights or tf_losses.DEFAULT_STYLE_WEIGHTS, "vgg19")
    end_points = tf_losses.loss_end_points("vgg19", cw, sw)
    loss_net = tf_vgg.build_loss_network("vgg19", vgg_weights, "avg", end_points)
    arrays = keras_vgg_arrays(loss_net)
    ours = read_vgg_npz(vgg_weights)
    record("VGG weights: this script's .npz reader vs the package's loss network, max abs diff",
           max(float(np.max(np.abs(arrays[n][i] - ours[n][i]))) for n in arrays for i in (0, 1)), 0)
    setup = Setup(size, batch, preset, num_styles, vgg_weights, cw, sw, vgg_arrays=arrays)
    copy_keras_transformer(keras_model, setup.transformer)
    coefficients = np.linspace(0.5, 1.5, num_styles).astype(np.float32)
    setup.coefficients = torch.from_numpy(coefficients)
    if perturb is not None:
        perturb(setup)

    # Gram targets: one painting through the package's style_dataset code and through ours.
    paintings = _image_files(os.path.join(SHARED_DATA, "styles"))
    if paintings:
        image, _ = style_dataset.load_style_image(paintings[0], 128)
        tf_grams = style_dataset.compute_grams(loss_net, image)
        ours = style_grams(setup.loss_net, [image], list(sw), 1)
        for e in sw:
            ref = tf_grams[e]
            rel = np.max(np.abs(ours[e][0].numpy() - ref)) / np.max(np.abs(ref))
            record(f"Gram of {os.path.basename(paintings[0])} at {e}, max abs diff / max", rel, 1e-4)

    images = setup.images
    labels = np.arange(batch) % num_styles
    labels_t = torch.from_numpy(labels).long()
    grams_np = {e: g.numpy() for e, g in setup.grams.items()}

    # TF: what the trainer computes (train._run: forward_backward + loss_terms), on one tape.
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        stylized_tf = keras_model({"image": x, "style_weights": tf.one_hot(labels, num_styles)}, training=True)
        content_tf = loss_net(x, training=False)
        pastiche_tf = loss_net(stylized_tf, training=False)
        targets = {e: tf.gather(grams_np[e], labels) for e in sw}
        per_example_tf, details_tf = tf_losses.total_loss(
            pastiche_tf, content_tf, targets, cw, sw, coefficients=tf.gather(coefficients, labels))
        loss_tf = tf.reduce_mean(per_example_tf)
    variables = keras_model.trainable_variables
    grads_tf = {v.path: g.numpy() for v, g in zip(variables, tape.gradient(loss_tf, variables))}
    stylized_tf = stylized_tf.numpy()
    log(f"  TF: loss {float(loss_tf):.6g} at {size} px x {batch}, labels {labels.tolist()}")

    # The pad/crop path: an odd size and blended style weights, forward only.
    rng = np.random.default_rng(0)
    odd = np.ascontiguousarray(images[:, : size - 3, : size - 1, :])
    blend = rng.dirichlet(np.ones(num_styles), size=batch).astype(np.float32)
    odd_tf = keras_model({"image": tf.constant(odd), "style_weights": tf.constant(blend)}).numpy()

    # The same computation in float64 (torch, eager): the float32 rounding floor of the gradients.
    ref = setup.step("eager")
    ref.transformer.double()
    ref.loss_net.double()
    ref.params = list(ref.transformer.parameters())
    ref.grams = {e: g.double() for e, g in ref.grams.items()}
    ref.coefficients = ref.coefficients.double()
    _, _, _, g64 = ref.gradients(ref.prepare(images).double(), labels_t)
    grads64 = _named_grads(ref.transformer, ref.params, g64)
    largest = max(np.linalg.norm(g) for g in grads64.values())
    # Residual conv2 betas: a per-channel constant added there is removed by every later
    # instance norm, so their gradient is 0 but for rounding; compared as zeros.
    zero = {k for k, g in grads64.items() if np.linalg.norm(g) < 1e-9 * largest}
    rel64, name64 = max((np.linalg.norm(grads_tf[k] - g) / np.linalg.norm(g), k)
                        for k, g in grads64.items() if k not in zero)
    record(f"TF float32 gradients vs this script in float64, {len(grads64) - len(zero)} tensors, worst "
           f"||diff||/||g|| ({name64})", rel64, 1e-3)

    for mode in modes:
        step = setup.step(mode)
        log(f"  {mode}:")
        loss, details, stylized, grads = step.gradients(step.prepare(images), labels_t)
        out = stylized.detach().numpy().transpose(0, 2, 3, 1)
        record(f"{mode}: transformer output, max abs diff", np.max(np.abs(out - stylized_tf)), 1e-5)
        if not mode.startswith("compile"):  # the compiled function is the whole loss, at one size
            with torch.no_grad():
                odd_out = step.transformer(step.prepare(odd), torch.from_numpy(blend)).numpy().transpose(0, 2, 3, 1)
            record(f"{mode}: output at {odd.shape[1]}x{odd.shape[2]}, blended style weights, max abs diff",
                   np.max(np.abs(odd_out - odd_tf)), 1e-5)
        if sorted(details) != sorted(details_tf):
            record(f"{mode}: loss terms {sorted(details)} vs TF's {sorted(details_tf)} (0 = same)", 1, 0)
        for key in sorted(set(details) & set(details_tf)):
            want = details_tf[key].numpy()
            got = details[key].detach().numpy()
            record(f"{mode}: {key}, per example, max rel. error",
                   np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-30)), 1e-4)
        record(f"{mode}: batch mean loss, rel. error",
               abs(float(loss.detach()) - float(loss_tf)) / abs(float(loss_tf)), 1e-4)
        named = _named_grads(step.transformer, step.params, grads)
        if sorted(named) != sorted(grads_tf):
            record(f"{mode}: weight names differ from the Keras model's (0 = same)", 1, 0)
            continue
        for what, reference in (("TF float32", grads_tf), ("float64", grads64)):
            worst, worst_name = max((np.linalg.norm(named[k] - g) / np.linalg.norm(g), k)
                                    for k, g in reference.items() if k not in zero)
            record(f"{mode}: gradients vs {what}, worst ||diff||/||g|| ({worst_name})", worst, 1e-2)
        if zero:
            z = max(max(np.linalg.norm(named[k]), np.linalg.norm(grads_tf[k])) for k in zero) / largest
            record(f"{mode}: the {len(zero)} analytically zero gradients (residual conv2 betas), "
                   f"max norm / largest gradient norm", z, 1e-5)

    # One Adam step on each side from the same (TF's) gradients. Keras adds epsilon to sqrt(v)
    # before the bias correction, torch after (effective epsilon 3.2e-7 vs 1e-8 at step 1): that
    # shows only where |g| is ~1e-5, i.e. in the rounding-noise gradients of the zero set, which
    # are left out here.
    optimizer = keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    before = {v.path: v.numpy().copy() for v in variables}
    optimizer.apply_gradients([(tf.constant(grads_tf[v.path]), v) for v in variables])
    step = setup.step("eager")
    for name, module in step.transformer.named_layers():
        for param, tensor in (("weights", module.weight), ("gamma", module.gamma), ("beta", module.beta)):
            g = grads_tf[f"{name if param == 'weights' else name + '.InstanceNorm'}/{param}"]
            tensor.grad = torch.from_numpy(np.ascontiguousarray(g.transpose(3, 2, 0, 1) if g.ndim == 4 else g))
    step.optimizer.step()
    after = _named_grads(step.transformer, step.params, step.params)  # the weights, Keras layout
    num = den = 0.0
    for v in variables:
        if v.path in zero:
            continue
        num += float(np.sum(((after[v.path] - before[v.path]) - (v.numpy() - before[v.path])) ** 2))
        den += float(np.sum((v.numpy() - before[v.path]) ** 2))
    record(f"one Adam step (lr 1e-3) from the same gradients, {len(variables) - len(zero)} tensors: "
           f"||update diff|| / ||update||",
           (num / den) ** 0.5, 1e-4)
    return {"ok": all(r[3] for r in rows), "rows": rows, "size": size, "batch": batch,
            "modes": list(modes), "preset": preset, "num_styles": num_styles,
            "transformer": BUNDLED[preset]}


# ----------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, not argparse's usage block
        print(f"torch_peer: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv):
    p = _Parser(
        description="PyTorch peer of image_stylization's training step: median s/step per mode.")
    p.add_argument("--size", type=int, default=128, help="image size S (S x S), default 128")
    p.add_argument("--batch", type=int, default=4, help="batch size, default 4")
    p.add_argument("--modes", default=DEFAULT_MODES, help=f"comma list of {', '.join(MODES)}")
    p.add_argument("--steps", type=int, default=8, help="timed steps per mode (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per mode first (compile)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--json", help="write the results here (atomically)")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.add_argument("--num_styles", type=int, default=6)
    p.add_argument("--vgg_weights", default=None,
                   help="VGG-19 .npz (SOURCES.md section 4); default ../shared/data/vgg/vgg19_notop_q8.npz")
    p.add_argument("--content_weights", default=None,
                   help=f"JSON dict, Magenta end point names; default {json.dumps(DEFAULT_CONTENT_WEIGHTS)} "
                        "(the trainer's)")
    p.add_argument("--style_weights", default=None,
                   help=f"JSON dict; default {json.dumps(DEFAULT_STYLE_WEIGHTS)} (the trainer's)")
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--clip_gradient_norm", type=float, default=0.0, help="per tensor; 0 = off (the default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count_flops", action="store_true",
                   help="also count conv/matmul GFLOP of one step (torch FlopCounterMode; one extra step)")
    p.add_argument("--check", action="store_true",
                   help="compare with the TF package (needs tensorflow + image_stylization) and exit")
    a = p.parse_args(argv)
    a.modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    bad = [m for m in a.modes if m not in MODES]
    if bad or not a.modes:
        p.error(f"--modes: unknown {', '.join(bad) or '(empty)'}; use {', '.join(MODES)}")
    for flag in ("size", "batch", "steps", "threads", "num_styles"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag} must be >= 1, got {getattr(a, flag)}")
    if a.warmup < 0:
        p.error(f"--warmup must be >= 0, got {a.warmup}")
    if any(m.startswith("compile") for m in a.modes) and a.warmup < 1 and not a.check:
        p.error("--warmup must be >= 1 with a compile mode (the first step compiles)")
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(a.threads)
    try:
        vgg_weights = a.vgg_weights or (DEFAULT_VGG_WEIGHTS if os.path.isfile(DEFAULT_VGG_WEIGHTS) else None)
        content_w = parse_weights(a.content_weights, "content_weights") if a.content_weights else None
        style_w = parse_weights(a.style_weights, "style_weights") if a.style_weights else None
        if a.check:
            if vgg_weights is None or not os.path.isfile(vgg_weights):
                raise UsageError(f"--vgg_weights: {vgg_weights or DEFAULT_VGG_WEIGHTS}: no such file")
            try:
                import image_stylization  # noqa: F401
                import tensorflow  # noqa: F401
            except ImportError as e:
                raise UsageError(f"--check needs tensorflow and image_stylization in this venv "
                                 f"(pip install -e \".[cpu]\"): {e}") from None
            print(f"torch {torch.__version__} vs image_stylization (TF) at {a.size} px x {a.batch}, "
                  f"{a.preset} preset", flush=True)
            result = run_check(a.size, a.batch, a.modes, a.preset, vgg_weights, content_w, style_w)
            failed = [r for r in result["rows"] if not r[3]]
            print(f"check: {len(result['rows']) - len(failed)} passed, {len(failed)} failed")
            if a.json:
                write_json_atomic(a.json, {**result, "torch_version": torch.__version__})
            return 0 if result["ok"] else 1
        setup = Setup(a.size, a.batch, a.preset, a.num_styles, vgg_weights, content_w, style_w, a.seed)
    except UsageError as e:
        print(f"torch_peer: {e}", file=sys.stderr)
        return 2

    def log(message):
        print(message, file=sys.stderr, flush=True)

    log(f"torch_peer: content {setup.content_source}, style Grams from {setup.style_source} "
        f"({', '.join(setup.style_names or [])})")
    gflop = count_gflop(setup) if a.count_flops else None
    results = time_modes(setup, a.modes, a.steps, a.warmup, a.learning_rate, a.clip_gradient_norm,
                         a.seed, log)
    best = min(results, key=lambda m: results[m]["median_s"])
    header = (f"PyTorch {torch.__version__}, {a.threads} threads, {a.preset} preset, {a.num_styles} styles, "
              f"batch {a.batch} at {a.size} px, VGG-19 avg pool, {os.cpu_count()} CPUs, "
              f"{platform.processor() or platform.machine()}")
    print(header)
    if gflop is not None:
        print(f"conv/matmul work per step: {gflop:.1f} GFLOP (FlopCounterMode)")
    print(f"{'mode':22} {'first step':>11} {'median step':>12} {'min':>8} {'max':>8} {'images/s':>9}")
    for mode, r in results.items():
        print(f"{mode:22} {r.get('first_step_s', float('nan')):10.1f}s {r['median_s']:11.3f}s "
              f"{r['min_s']:7.3f}s {r['max_s']:7.3f}s {r['images_per_s']:9.2f}")
    print(f"best: {best} {results[best]['median_s']:.3f} s/step; peak RSS {peak_rss_gb() or float('nan'):.2f} GB")
    if a.json:
        write_json_atomic(a.json, {
            "torch_version": torch.__version__,
            "threads": a.threads,
            "size": a.size,
            "batch": a.batch,
            "preset": a.preset,
            "num_styles": a.num_styles,
            "steps": a.steps,
            "warmup": a.warmup,
            "content_weights": setup.content_weights,
            "style_weights": setup.style_weights,
            "content_source": setup.content_source,
            "style_source": setup.style_source,
            "style_names": setup.style_names,
            "vgg_weights": setup.vgg_weights,
            "gflop_per_step": gflop,
            "modes": results,
            "best_mode": best,
            "best_median_s": results[best]["median_s"],
            "peak_rss_gb": peak_rss_gb(),
            "command": " ".join([os.path.basename(sys.executable), "bench/torch_peer.py"] + sys.argv[1:]),
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
