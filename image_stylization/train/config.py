"""What a training run is asked to do: `TrainConfig`, its checks, and the loss set-up that the
style dataset fixes (loss network, pooling, VGG weights, loss weights, style coefficients).

Everything here is plain Python and numpy: bad flags fail before TensorFlow builds anything.
"""

import ast
import dataclasses
import math
import os

import numpy as np

from image_stylization import losses, vgg
from image_stylization.errors import ConfigError
from image_stylization.model import PRESETS

MIN_IMAGE_SIZE = 16
STRATEGIES = ("default", "mirrored", "multi_worker")
FINETUNE_MODES = ("replace", "append")


@dataclasses.dataclass
class TrainConfig:
    """Everything a training or fine-tuning run needs; defaults are Magenta's."""

    train_dir: str
    style_dataset_file: str
    content_source: str
    num_styles: int = None  # checked against the dataset when given
    train_steps: int = 40000
    batch_size: int = 16  # global batch
    image_size: int = 256
    learning_rate: float = 1e-3
    content_weights: object = None  # dict or Magenta's string; None = losses.DEFAULT_*
    style_weights: object = None
    style_coefficients: object = None  # list of N floats or its string; None = all 1
    clip_gradient_norm: float = 0.0  # per tensor, as slim; 0 = off
    total_variation_weight: float = 0.0  # Magenta's training has no TV term
    alpha: float = 1.0
    preset: str = "paper"
    loss_network: str = None  # None = the style dataset's
    vgg_weights: str = None  # None = the style dataset's weights file
    vgg_pooling: str = None  # None = the style dataset's
    seed: int = 0
    save_interval_steps: int = 500
    summary_interval_steps: int = 100
    image_summary_interval_steps: int = None  # default: 10 x summary_interval_steps
    keep_checkpoints: int = 3
    strategy: str = "default"
    tpu: str = None
    mixed_precision: bool = False
    jit_compile: bool = False
    shuffle_buffer: int = 256
    tfds_data_dir: str = None
    tfds_manual_dir: str = None
    log_interval_seconds: float = 10.0
    command: str = None  # recorded in the model manifest


def check(c):
    """One-line ConfigErrors for flags that are wrong on their own (before any file is read)."""

    def need(ok, message):
        if not ok:
            raise ConfigError(message)

    need(c.train_dir, "--train_dir is required")
    need(c.style_dataset_file, "--style_dataset_file is required")
    need(c.content_source, "--content_source is required (a photo folder, TFRecords, or tfds:imagenet2012)")
    need(isinstance(c.image_size, int) and c.image_size >= MIN_IMAGE_SIZE,
         f"--image_size must be >= {MIN_IMAGE_SIZE} (the loss network pools 4 times), got {c.image_size}")
    need(isinstance(c.batch_size, int) and c.batch_size >= 1, f"--batch_size must be >= 1, got {c.batch_size}")
    need(isinstance(c.train_steps, int) and c.train_steps >= 1, f"--train_steps must be >= 1, got {c.train_steps}")
    need(c.learning_rate > 0 and math.isfinite(c.learning_rate), f"--learning_rate must be > 0, got {c.learning_rate}")
    need(c.clip_gradient_norm >= 0, f"--clip_gradient_norm must be >= 0, got {c.clip_gradient_norm}")
    need(c.total_variation_weight >= 0, f"--total_variation_weight must be >= 0, got {c.total_variation_weight}")
    need(c.save_interval_steps >= 1, f"--save_interval_steps must be >= 1, got {c.save_interval_steps}")
    need(c.summary_interval_steps >= 1, f"--summary_interval_steps must be >= 1, got {c.summary_interval_steps}")
    need(c.keep_checkpoints >= 1, f"--keep_checkpoints must be >= 1, got {c.keep_checkpoints}")
    need(c.preset in PRESETS, f"--preset must be one of {', '.join(PRESETS)}, got {c.preset!r}")
    need(0 < c.alpha <= 8, f"--alpha must be in (0, 8], got {c.alpha}")
    if c.num_styles is not None:
        need(isinstance(c.num_styles, int) and c.num_styles >= 1, f"--num_styles must be >= 1, got {c.num_styles}")
    check_train_dir(c.train_dir)


def check_train_dir(train_dir, flag="--train_dir"):
    """A directory that exists or can be made: not a file, not below a file. Whether it can be
    written is found out by writing (`loop.prepare_directory`): permission bits do not say it."""
    path = os.path.abspath(os.fspath(train_dir))
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ConfigError(f"{flag}={train_dir}: exists and is not a directory")
        return
    parent = os.path.dirname(path)
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"{flag}={train_dir}: {parent} is a file, not a directory")


def read_style(path):
    """The style dataset at `path` (Grams, names, manifest), or a one-line ConfigError."""
    from image_stylization import style_dataset

    if path and os.path.isdir(path):
        raise ConfigError(f"--style_dataset_file: {path} is a directory, not a style dataset file")
    if not path or not os.path.isfile(path):
        raise ConfigError(f"--style_dataset_file: {path}: no such file")
    try:
        return style_dataset.read_style_dataset(path)
    except style_dataset.DatasetError as e:
        raise ConfigError(f"--style_dataset_file: {e}") from None


def parse_coefficients(value, n):
    """--style_coefficients (a list or its string, None = all 1) -> float32 [n]."""
    if value is None or value == "":
        return np.ones([n], np.float32)
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ConfigError(f"--style_coefficients: cannot parse {value!r}; expected a list such as [1.0, 2.0]") from None
    try:
        coefficients = np.asarray(value, np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"--style_coefficients: expected a list of numbers, got {value!r}") from None
    if coefficients.size != n:
        raise ConfigError(f"--style_coefficients has {coefficients.size} values, the style dataset has {n} styles")
    if not np.all(np.isfinite(coefficients)) or np.any(coefficients < 0):
        raise ConfigError("--style_coefficients must be finite and >= 0")
    return coefficients.astype(np.float32)


@dataclasses.dataclass
class LossSetup:
    """The loss a trainer minimizes, as checked against the style dataset."""

    network: str  # "vgg16" | "vgg19"
    pooling: str  # "avg" | "max"
    weights_file: str  # the local VGG weights file (None: random VGG, tests only)
    content_weights: dict  # {canonical end point: weight > 0}
    style_weights: dict
    coefficients: np.ndarray  # float32 [N]: a multiplier of the style loss per style
    total_variation_weight: float = 0.0

    @property
    def end_points(self):
        return losses.loss_end_points(self.network, self.content_weights, self.style_weights)


def loss_setup(style, dataset_file, *, num_styles=None, loss_network=None, vgg_weights=None,
               vgg_pooling=None, content_weights=None, style_weights=None, style_coefficients=None,
               total_variation_weight=0.0):
    """Checks the loss flags against the style dataset `style` (read from `dataset_file`).

    Every argument is the flag of the same name (None = the dataset's / Magenta's default).
    Returns a `LossSetup`, or raises a one-line ConfigError naming the flag.
    """
    manifest = style.manifest or {}
    n = style.num_styles
    if num_styles is not None and num_styles != n:
        raise ConfigError(f"--num_styles={num_styles}, but {dataset_file} holds {n} styles")
    network = loss_network or manifest.get("loss_network")
    if network is None:
        raise ConfigError(f"{dataset_file} has no manifest naming its loss network; pass --loss_network")
    if network not in vgg.NETWORKS:
        raise ConfigError(f"--loss_network must be one of {', '.join(vgg.NETWORKS)}, got {network!r}")
    if manifest.get("loss_network") not in (None, network):
        raise ConfigError(
            f"--loss_network={network}, but the Grams in {dataset_file} were computed with "
            f"{manifest['loss_network']}; use that network or rebuild the dataset"
        )
    pooling = vgg_pooling or manifest.get("vgg_pooling") or "avg"
    if manifest.get("vgg_pooling") not in (None, pooling):
        raise ConfigError(
            f"--vgg_pooling={pooling}, but {dataset_file} was made with {manifest['vgg_pooling']} pooling"
        )

    weights = vgg_weights or manifest.get("vgg_weights")
    if not weights:
        raise ConfigError("--vgg_weights is required (the style dataset does not name its weights)")
    if weights not in ("imagenet",) and not os.path.isfile(weights):
        hint = "" if vgg_weights else f" (the file {dataset_file} was made with; pass --vgg_weights)"
        raise ConfigError(f"--vgg_weights: {weights}: no such file{hint}")
    try:
        weights_file = vgg.resolve_weights(weights, network)
    except vgg.WeightsError as e:
        raise ConfigError(f"--vgg_weights: {e}") from None
    expected_sha = manifest.get("weights_sha256")
    if expected_sha and weights_file and vgg.file_sha256(weights_file) != expected_sha:
        raise ConfigError(
            f"--vgg_weights: {weights_file} is not the weights file {dataset_file} was made "
            f"with ({manifest.get('weights_file')}, sha256 {expected_sha[:12]}...)"
        )

    def parse(value, default, flag):
        try:
            parsed = losses.parse_loss_weights(default if value in (None, "") else value, network)
        except ValueError as e:
            raise ConfigError(f"--{flag}: {e}") from None
        return {k: w for k, w in parsed.items() if w > 0}

    content_w = parse(content_weights, losses.DEFAULT_CONTENT_WEIGHTS, "content_weights")
    style_w = parse(style_weights, losses.DEFAULT_STYLE_WEIGHTS, "style_weights")
    if not content_w and not style_w:
        raise ConfigError("--content_weights and --style_weights are all zero")
    missing = [e for e in style_w if e not in style.grams]
    if missing:
        raise ConfigError(
            f"--style_weights: {dataset_file} has no Grams for {', '.join(missing)} "
            f"(it has {', '.join(style.grams)}); rebuild it with those --end_points"
        )
    coefficients = parse_coefficients(style_coefficients, n)
    return LossSetup(network, pooling, weights_file, content_w, style_w, coefficients,
                     float(total_variation_weight or 0.0))


def train_loss_setup(c, style):
    """`loss_setup` with the flags of a TrainConfig."""
    return loss_setup(
        style, c.style_dataset_file, num_styles=c.num_styles, loss_network=c.loss_network,
        vgg_weights=c.vgg_weights, vgg_pooling=c.vgg_pooling, content_weights=c.content_weights,
        style_weights=c.style_weights, style_coefficients=c.style_coefficients,
        total_variation_weight=c.total_variation_weight,
    )


def recipe(c, setup, style, **extra):
    """What the manifest of the trained model records about how it was trained."""
    out = {
        "style_dataset": os.path.basename(c.style_dataset_file),
        "style_dataset_manifest": {
            k: style.manifest.get(k)
            for k in ("loss_network", "vgg_pooling", "weights_file", "weights_sha256", "style_image_size")
            if k in style.manifest
        },
        "content_source": c.content_source,
        "train_steps": c.train_steps,
        "batch_size": c.batch_size,
        "image_size": c.image_size,
        "learning_rate": c.learning_rate,
        "optimizer": "Adam(beta_1=0.9, beta_2=0.999, epsilon=1e-8)",
        "content_weights": setup.content_weights,
        "style_weights": setup.style_weights,
        "style_coefficients": [float(x) for x in setup.coefficients],
        "clip_gradient_norm": c.clip_gradient_norm,
        "total_variation_weight": c.total_variation_weight,
        "loss_network": setup.network,
        "vgg_pooling": setup.pooling,
        "vgg_weights_file": os.path.basename(setup.weights_file) if setup.weights_file else None,
        "seed": c.seed,
        "mixed_precision": c.mixed_precision,
        "preset": c.preset,
        "alpha": c.alpha,
    }
    if c.command:
        out["command"] = c.command
    out.update(extra)
    return out
