"""Training and fine-tuning of the N-style network (Magenta's `image_stylization_train` and
`image_stylization_finetune`), written as a TF2 custom loop for `tf.distribute`.

The work is `train(config)` / `finetune(config, checkpoint, mode)`; the absl entry points only turn
flags into a `TrainConfig`.

What a run does:
- Reads the style dataset (Grams per end point) and checks it against the flags: number of styles,
  loss network, pooling, VGG weights (sha256) and end points, before anything heavy is built.
- Builds the transformer, the Adam optimizer (its slots built before the first step) and the
  frozen VGG loss network inside the distribution strategy's scope; the loss is averaged over the
  global batch with `tf.nn.compute_average_loss`.
- Draws one style label per example, as Magenta: a stateless function of (seed, step), drawn for
  the global batch and sliced per replica, so a resumed run and a run on more replicas see the
  same labels as an uninterrupted single-replica run.
- Checkpoints transformer, optimizer, step and the input iterator (never VGG) in `train_dir`
  every `save_interval_steps` and on SIGTERM/SIGINT; rerunning the same command resumes.
- Writes TensorBoard summaries and a progress line with ETA; at the end writes a ready-to-use
  model (`train_dir/model`, `.keras` + manifest) that `checkpoint.load_model` reads.
"""

import ast
import dataclasses
import gc
import math
import os
import signal
import sys
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from image_stylization import checkpoint as checkpoint_lib
from image_stylization import data, losses, vgg
from image_stylization.errors import ConfigError, TrainingError  # noqa: F401  (re-exported)
from image_stylization.model import (
    PRESETS,
    build_transformer,
    conv_layers,
    norm_layers,
    num_styles_of,
)

MODEL_SUBDIR = "model"
MIN_IMAGE_SIZE = 16
STRATEGIES = ("default", "mirrored", "multi_worker")
FINETUNE_MODES = ("replace", "append")
SUMMARY_IMAGES = 3
SUMMARY_NAMES = {"content_loss": "loss/content", "style_loss": "loss/style",
                 "total_variation_loss": "loss/total_variation", "total_loss": "loss/total"}


class TrainingInterrupted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint was written and rerunning the command resumes."""

    def __init__(self, signum, step, path):
        self.signum, self.step, self.path = signum, step, path
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint {path}; rerun "
            f"the same command to resume"
        )


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


# ----------------------------------------------------------------------------- strategy


def make_strategy(strategy="default", tpu=None):
    """The distribution strategy, the TF Model Garden way.

    `tpu`: "local" on a TPU VM, or a TPU name / grpc:// address (TPUClusterResolver).
    `strategy`: "default" (MirroredStrategy over the GPUs when there are several, else the
    default strategy), "mirrored" (every local GPU, or every logical CPU when there is no GPU),
    "multi_worker" (MultiWorkerMirroredStrategy configured by TF_CONFIG).
    """
    if tpu:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        if tpu not in ("", "local"):
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError("--strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")  # initializes the TF runtime
    if strategy == "mirrored":
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _is_tpu(strategy):
    return isinstance(strategy, (tf.distribute.TPUStrategy,))


def _local_replica_count(strategy):
    try:
        return len(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: one replica
        return 1


def _worker_info(strategy):
    """(is_chief, worker index) under MultiWorkerMirroredStrategy; (True, 0) otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True, 0
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    cluster = resolver.cluster_spec().as_dict()
    if task_type is None:
        return True, 0
    has_chief = "chief" in cluster
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    # Input pipeline / worker number: the chief (when there is one) is 0, workers follow.
    index = 0 if task_type == "chief" else task_id + (1 if has_chief else 0)
    return is_chief, index


# ----------------------------------------------------------------------------- config checks


def _parse_coefficients(value, n):
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


def _check_numbers(c):
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


@dataclasses.dataclass
class _Losses:
    network: str
    pooling: str
    weights_file: str
    content_weights: dict
    style_weights: dict
    coefficients: np.ndarray


def _style_setup(c, style):
    """Checks the flags against the style dataset; returns the loss configuration."""
    manifest = style.manifest or {}
    n = style.num_styles
    if c.num_styles is not None and c.num_styles != n:
        raise ConfigError(f"--num_styles={c.num_styles}, but {c.style_dataset_file} holds {n} styles")
    network = c.loss_network or manifest.get("loss_network")
    if network is None:
        raise ConfigError(f"{c.style_dataset_file} has no manifest naming its loss network; pass --loss_network")
    if network not in vgg.NETWORKS:
        raise ConfigError(f"--loss_network must be one of {', '.join(vgg.NETWORKS)}, got {network!r}")
    if manifest.get("loss_network") not in (None, network):
        raise ConfigError(
            f"--loss_network={network}, but the Grams in {c.style_dataset_file} were computed with "
            f"{manifest['loss_network']}; use that network or rebuild the dataset"
        )
    pooling = c.vgg_pooling or manifest.get("vgg_pooling") or "avg"
    if manifest.get("vgg_pooling") not in (None, pooling):
        raise ConfigError(
            f"--vgg_pooling={pooling}, but {c.style_dataset_file} was made with {manifest['vgg_pooling']} pooling"
        )

    weights = c.vgg_weights or manifest.get("vgg_weights")
    if not weights:
        raise ConfigError("--vgg_weights is required (the style dataset does not name its weights)")
    if weights not in ("imagenet",) and not os.path.isfile(weights):
        hint = "" if c.vgg_weights else f" (the file {c.style_dataset_file} was made with; pass --vgg_weights)"
        raise ConfigError(f"--vgg_weights: {weights}: no such file{hint}")
    try:
        weights_file = vgg.resolve_weights(weights, network)
    except vgg.WeightsError as e:
        raise ConfigError(f"--vgg_weights: {e}") from None
    expected_sha = manifest.get("weights_sha256")
    if expected_sha and weights_file and vgg.file_sha256(weights_file) != expected_sha:
        raise ConfigError(
            f"--vgg_weights: {weights_file} is not the weights file {c.style_dataset_file} was made "
            f"with ({manifest.get('weights_file')}, sha256 {expected_sha[:12]}...)"
        )

    try:
        content_w = losses.parse_loss_weights(
            losses.DEFAULT_CONTENT_WEIGHTS if c.content_weights in (None, "") else c.content_weights, network
        )
    except ValueError as e:
        raise ConfigError(f"--content_weights: {e}") from None
    try:
        style_w = losses.parse_loss_weights(
            losses.DEFAULT_STYLE_WEIGHTS if c.style_weights in (None, "") else c.style_weights, network
        )
    except ValueError as e:
        raise ConfigError(f"--style_weights: {e}") from None
    content_w = {k: w for k, w in content_w.items() if w > 0}
    style_w = {k: w for k, w in style_w.items() if w > 0}
    if not content_w and not style_w:
        raise ConfigError("--content_weights and --style_weights are all zero")
    missing = [e for e in style_w if e not in style.grams]
    if missing:
        raise ConfigError(
            f"--style_weights: {c.style_dataset_file} has no Grams for {', '.join(missing)} "
            f"(it has {', '.join(style.grams)}); rebuild it with those --end_points"
        )
    coefficients = _parse_coefficients(c.style_coefficients, n)
    return _Losses(network, pooling, weights_file, content_w, style_w, coefficients)


def _read_style(c):
    from image_stylization import style_dataset

    if not os.path.isfile(c.style_dataset_file):
        raise ConfigError(f"--style_dataset_file: {c.style_dataset_file}: no such file")
    try:
        return style_dataset.read_style_dataset(c.style_dataset_file)
    except style_dataset.DatasetError as e:
        raise ConfigError(f"--style_dataset_file: {e}") from None


def _style_thumbnails(style, image_size):
    """[N, S, S, 3] central crops of the style images, for image summaries and grids."""
    thumbs = []
    for raw in style.image_raw:
        try:
            image = data.decode_image(tf.constant(raw))
            thumbs.append(data.preprocess(image, image_size, training=False).numpy())
        except (tf.errors.InvalidArgumentError, ValueError):
            thumbs.append(np.full([image_size, image_size, 3], 0.5, np.float32))
    return np.stack(thumbs)


# ----------------------------------------------------------------------------- summaries
# `tf.summary.scalar`/`image` live in the tensorboard package, which training does not need:
# the same records are written here with TF's own `tf.summary.write` and TensorBoard's plugin
# names, so TensorBoard (installed anywhere) shows them as scalars and images.


def _metadata(plugin):
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)
    ).SerializeToString()


def summary_scalar(name, value, step):
    return tf.summary.write(name, tf.constant(float(value), tf.float32), step=step,
                            metadata=_metadata("scalars"))


def summary_images(name, images, step, max_outputs=SUMMARY_IMAGES):
    """float [K, H, W, 3] in [0, 1] -> TensorBoard's image record (width, height, PNGs)."""
    images = np.clip(np.nan_to_num(np.asarray(images, np.float32)), 0.0, 1.0)[:max_outputs]
    encoded = [tf.io.encode_png(tf.constant(np.round(im * 255).astype(np.uint8))) for im in images]
    h, w = images.shape[1:3]
    tensor = tf.stack([tf.constant(str(w)), tf.constant(str(h))] + encoded)
    return tf.summary.write(name, tensor, step=step, metadata=_metadata("images"))


# ----------------------------------------------------------------------------- the loop


class _Signals:
    """Turns SIGTERM/SIGINT into a flag the loop polls, so a checkpoint is written before exit."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.received = signum

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _format_duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _default_log(message):
    print(message, file=sys.stderr, flush=True)


def _set_policy(mixed_precision, strategy):
    """The mixed-precision policy name for this run (float32 when off)."""
    if not mixed_precision:
        return "float32"
    if _is_tpu(strategy) or not tf.config.list_logical_devices("GPU"):
        return "mixed_bfloat16"  # TPUs (and CPUs) have bfloat16; float16 needs loss scaling
    return "mixed_float16"


def _restore(ckpt, path, partial=False):
    """Restores `path` into `ckpt`; returns None, or the reason it failed in one line."""
    logger = tf.get_logger()
    level = logger.level
    # A failed restore leaves a half-used restore object whose destructor logs every value it
    # did not place (hundreds of lines); the caller's one-line message says it all.
    logger.setLevel("ERROR")
    failure = None
    try:
        try:
            status = ckpt.restore(path)
            if partial:
                status.expect_partial()
        except (tf.errors.OpError, ValueError) as e:
            failure = data._op_message(e)
        gc.collect()
    finally:
        logger.setLevel(level)
    return failure


def _run(c, *, strategy, log, style, loss_cfg, build_model, label_offset, style_names, recipe,
         finetune_mask=None, trainable=None):
    """The training loop shared by `train` and `finetune`.

    build_model(): the transformer, called inside the strategy scope.
    label_offset: model style index of the dataset's label 0 (append fine-tuning: N_old).
    finetune_mask(model): {variable path: float [rows, 1] mask} zeroing gradients of frozen rows.
    trainable(model): the variables to train (default: all trainable ones).
    """
    log = log or _default_log
    strategy = strategy or make_strategy(c.strategy, c.tpu)
    replicas = strategy.num_replicas_in_sync
    if c.batch_size % replicas:
        raise ConfigError(f"--batch_size={c.batch_size} is not divisible by the {replicas} replicas")
    per_replica = c.batch_size // replicas
    is_chief, task_id = _worker_info(strategy)
    checkpoint_dir = c.train_dir if is_chief else os.path.join(c.train_dir, "workers", f"worker-{task_id}")
    os.makedirs(checkpoint_dir, exist_ok=True)
    n_data = style.num_styles

    previous_policy = keras.config.dtype_policy()
    policy = _set_policy(c.mixed_precision, strategy)
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(c.seed)  # the same initial weights for the same seed
        with strategy.scope():
            model = build_model()
            n_model = num_styles_of(model)
            variables = list(trainable(model) if trainable else model.trainable_variables)
            optimizer = keras.optimizers.Adam(c.learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
            if policy == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            # Slot variables now, not lazily inside the first tf.function step (which fails
            # under MirroredStrategy with more than one replica).
            optimizer.build(variables)
            end_points = losses.loss_end_points(loss_cfg.network, loss_cfg.content_weights, loss_cfg.style_weights)
            loss_net = vgg.build_loss_network(loss_cfg.network, loss_cfg.weights_file, loss_cfg.pooling, end_points)
            step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                   aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            grams = {e: tf.Variable(style.grams[e], trainable=False, name=f"grams_{e}")
                     for e in loss_cfg.style_weights}
            coefficients = tf.Variable(loss_cfg.coefficients, trainable=False, name="style_coefficients")
        masks = {}
        if finetune_mask is not None:
            masks = finetune_mask(model)
        var_masks = [masks.get(v.path) for v in variables]

        # Input: one plain tf.data pipeline per worker, split across the worker's replicas in
        # the step. Unlike a distributed iterator (whose multi-device form cannot be saved), a
        # plain iterator goes into the checkpoint, so a resumed run continues the exact stream.
        # TPUs are fed through the distributed dataset instead (see `tpu_input` below).
        num_workers = max(1, replicas // _local_replica_count(strategy))
        local_replicas = replicas // num_workers
        worker_batch = per_replica * local_replicas
        tpu_input = _is_tpu(strategy)

        def dataset_fn(input_context, seed_offset=0):
            return data.content_dataset(
                c.content_source, c.image_size, input_context.get_per_replica_batch_size(c.batch_size)
                if tpu_input else worker_batch,
                training=True, seed=c.seed + seed_offset, input_context=input_context,
                shuffle_buffer=c.shuffle_buffer, tfds_data_dir=c.tfds_data_dir,
                tfds_manual_dir=c.tfds_manual_dir,
            )

        if tpu_input:
            iterator = None  # made after the restore, below
        else:
            context = tf.distribute.InputContext(num_workers, task_id if num_workers > 1 else 0, replicas)
            iterator = iter(dataset_fn(context))

        seed = tf.constant(c.seed, tf.int64)
        global_batch = c.batch_size
        clip = float(c.clip_gradient_norm)
        tv_weight = float(c.total_variation_weight)

        def loss_terms(images, stylized, labels):
            """Per-example losses and d(mean loss)/d(stylized): all of the VGG work."""
            content_feats = loss_net(images, training=False)
            with tf.GradientTape() as tape:
                tape.watch(stylized)
                feats = loss_net(stylized, training=False)
                targets = {e: tf.gather(grams[e], labels) for e in loss_cfg.style_weights}
                per_example, details = losses.total_loss(
                    feats, content_feats, targets, loss_cfg.content_weights, loss_cfg.style_weights,
                    coefficients=tf.gather(coefficients, labels), stylized=stylized,
                    total_variation_weight=tv_weight,
                )
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            # TensorBoard names: the four totals under loss/, the per-layer values as they are.
            details = {SUMMARY_NAMES.get(k, k): v for k, v in details.items()}
            return details, tape.gradient(loss, stylized)

        def forward_backward(images, labels):
            with tf.GradientTape() as tape:
                weights = tf.one_hot(labels + label_offset, n_model, dtype=tf.float32)
                stylized = tf.cast(model({"image": images, "style_weights": weights}, training=True), tf.float32)
            details, d_stylized = loss_terms(images, stylized, labels)
            # Chain rule through the transformer; scale_loss(1) is the loss scale (1 unless float16).
            scale = tf.cast(optimizer.scale_loss(tf.constant(1.0)), tf.float32)
            grads = tape.gradient(stylized, variables, output_gradients=d_stylized * scale)
            metrics = {k: tf.reduce_sum(v) / global_batch for k, v in details.items()}
            return grads, metrics, stylized

        if c.jit_compile:
            # XLA compiles the transformer and the loss network, forward and backward, per
            # replica (possible since NearestUpsampling2D spells out its gradient). On this 2-core
            # CPU: 1.25x the images/s of compiling the loss network alone (BUILD_NOTES).
            forward_backward = tf.function(forward_backward, jit_compile=True)

        def replica_step(batch, step):
            images = batch["image"]
            ctx = tf.distribute.get_replica_context()
            rid = ctx.replica_id_in_sync_group
            # One style per example (Magenta): drawn for the global batch from (seed, step) and
            # sliced, so the labels do not depend on the number of replicas or on a resume.
            all_labels = tf.random.stateless_uniform(
                [global_batch], seed=tf.stack([seed, step]), minval=0, maxval=n_data, dtype=tf.int32
            )
            labels = all_labels[rid * per_replica : (rid + 1) * per_replica]
            grads, metrics, stylized = forward_backward(images, labels)
            grads = [g if m is None or g is None else g * m for g, m in zip(grads, var_masks)]
            if clip > 0:
                # slim clips each gradient tensor separately, after aggregation: sum over the
                # replicas first, clip, then hand the optimizer a 1/R share it sums back.
                grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
                threshold = clip
                if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                    threshold = clip * tf.cast(optimizer.dynamic_scale, tf.float32)
                grads = [tf.clip_by_norm(g, threshold) / replicas for g in grads]
            optimizer.apply_gradients(zip(grads, variables))
            out = {"metrics": metrics, "skipped": tf.reduce_max(batch["skipped"])}
            k = min(SUMMARY_IMAGES, per_replica)
            out["images"] = (images[:k], stylized[:k], labels[:k])
            return out

        # One trace: images are always returned (3 small crops) and written only when due.
        # autograph=False: no tensor-dependent Python control flow here, and converting costs seconds.
        @tf.function(autograph=False)
        def train_step(iterator):
            batch = next(iterator)
            if not tpu_input:
                batch = strategy.experimental_distribute_values_from_function(
                    lambda ctx: _replica_slice(batch, ctx.replica_id_in_sync_group % local_replicas)
                )
            step = step_var.read_value()
            out = strategy.run(replica_step, args=(batch, step))
            step_var.assign_add(1)
            result = {
                "metrics": {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                            for k, v in out["metrics"].items()},
                # ReduceOp has no MAX; this worker's largest count is what the console shows.
                "skipped": tf.reduce_max(tf.stack(strategy.experimental_local_results(out["skipped"]))),
            }
            result["images"] = tf.nest.map_structure(
                lambda t: strategy.experimental_local_results(t)[0], out["images"]
            )
            return result

        def _replica_slice(batch, local_id):
            return {k: v[local_id * per_replica : (local_id + 1) * per_replica] for k, v in batch.items()}

        # ------------------------------------------------------------ checkpoints
        def checkpointing(iterator):
            """The run's checkpoint (with the input position when `iterator` is given) and manager."""
            objects = dict(model=model, optimizer=optimizer, step=step_var)
            if iterator is not None:
                objects["iterator"] = iterator
            ckpt = tf.train.Checkpoint(**objects)
            return ckpt, tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=c.keep_checkpoints,
                                                    step_counter=step_var, checkpoint_name="ckpt")

        ckpt, manager = checkpointing(iterator)
        restored = manager.latest_checkpoint
        if restored:
            failure = _restore(ckpt, restored)
            if failure is not None:
                if iterator is not None and "iterator" in failure:
                    # The input pipeline changed since the checkpoint (another --content_source,
                    # another package version): keep the weights and step, start a new stream,
                    # seeded by the step so that it does not replay the first images.
                    failure = _restore(checkpointing(None)[0], restored, partial=True)
                if failure is not None:
                    raise ConfigError(
                        f"--train_dir={c.train_dir}: cannot resume from {restored} ({failure}); it "
                        f"was written by a different model or flags. Use a new --train_dir"
                    )
                log(f"warning: {restored}: the saved position in the content stream does not fit this "
                    f"input pipeline; resuming at step {int(step_var.numpy())} with a new stream")
                iterator = iter(dataset_fn(context, seed_offset=int(step_var.numpy())))
                ckpt, manager = checkpointing(iterator)
        start = int(step_var.numpy())
        if restored:
            log(f"resumed from {restored} at step {start}")
        if tpu_input:
            # The TPU's distributed iterator cannot be checkpointed: a resumed run starts a new
            # stream, seeded by the step so that it does not replay the first images.
            iterator = iter(strategy.distribute_datasets_from_function(
                lambda ctx: dataset_fn(ctx, seed_offset=start)))

        def save():
            nonlocal ckpt, manager
            try:
                return manager.save(checkpoint_number=int(step_var.numpy()))
            except (tf.errors.UnimplementedError, tf.errors.FailedPreconditionError,
                    tf.errors.InvalidArgumentError) as e:
                if getattr(ckpt, "iterator", None) is None:
                    raise
                # tfds mock data (from_generator) and a few sources cannot save their state.
                log(f"warning: the input pipeline cannot be checkpointed ({data._op_message(e)}); "
                    f"a resumed run restarts the content stream")
                ckpt, manager = checkpointing(None)
                return manager.save(checkpoint_number=int(step_var.numpy()))

        # ------------------------------------------------------------ summaries
        writer = tf.summary.create_file_writer(c.train_dir) if is_chief else tf.summary.create_noop_writer()
        image_every = c.image_summary_interval_steps or 10 * c.summary_interval_steps
        thumbs = _style_thumbnails(style, c.image_size) if is_chief else None
        lr = float(c.learning_rate)

        log(
            f"training {n_model}-style {getattr(model, 'name', 'transformer')} on {n_data} styles from "
            f"{c.style_dataset_file}: steps {start}..{c.train_steps}, batch {c.batch_size} "
            f"({replicas} replica{'s' if replicas > 1 else ''}), {c.image_size} px, policy {policy}"
        )
        last_log_time = time.time()
        last_log_step = start
        window_start, window_steps = time.time(), 0
        step = start
        last_saved = start if restored else None
        metrics = {}
        history = []  # total loss of every step this call ran
        with _Signals() as signals, writer.as_default():
            while step < c.train_steps:
                with_images = is_chief and ((step + 1) % image_every == 0 or step == 0)
                t0 = time.time()
                out = train_step(iterator)
                step += 1
                window_steps += 1
                metrics = {k: float(v) for k, v in out["metrics"].items()}
                history.append(metrics["loss/total"])
                if not math.isfinite(metrics["loss/total"]):
                    raise TrainingError(
                        f"the loss became {metrics['loss/total']} at step {step}; the last good "
                        f"checkpoint is {manager.latest_checkpoint}. Try a lower --learning_rate or "
                        f"--clip_gradient_norm"
                    )
                if step % c.summary_interval_steps == 0 or step == c.train_steps or step == start + 1:
                    elapsed = max(time.time() - window_start, 1e-9)
                    images_per_second = window_steps * global_batch / elapsed
                    for name, value in metrics.items():
                        summary_scalar(name, value, step=step)
                    summary_scalar("learning_rate", lr, step=step)
                    summary_scalar("images_per_second", images_per_second, step=step)
                    summary_scalar("data/skipped_images", int(out["skipped"]), step=step)
                    window_start, window_steps = time.time(), 0
                if with_images:
                    inputs, stylized, labels = (t.numpy() for t in out["images"])
                    summary_images("image/0_inputs", inputs, step)
                    summary_images("image/1_styles", thumbs[labels], step)
                    summary_images("image/2_styled_inputs", stylized, step)
                now = time.time()
                if now - last_log_time >= c.log_interval_seconds or step == c.train_steps or step == start + 1:
                    rate = (step - last_log_step) / max(now - last_log_time, 1e-9)
                    if step == start + 1:
                        rate = 1.0 / max(now - t0, 1e-9)
                    eta = (c.train_steps - step) / rate if rate > 0 else float("inf")
                    skipped = int(out["skipped"])
                    log(
                        f"step {step}/{c.train_steps} ({100.0 * step / c.train_steps:.1f}%) "
                        f"loss {metrics['loss/total']:.4g} (content {metrics.get('loss/content', 0):.3g}, "
                        f"style {metrics.get('loss/style', 0):.3g}) {rate * global_batch:.2f} img/s "
                        f"ETA {_format_duration(eta)}" + (f" skipped {skipped} unreadable images" if skipped else "")
                    )
                    last_log_time, last_log_step = now, step
                if step % c.save_interval_steps == 0:
                    save()
                    last_saved = step
                if signals.received is not None:
                    path = save() if last_saved != step else manager.latest_checkpoint
                    writer.flush()
                    raise TrainingInterrupted(signals.received, step, path)
            if last_saved != step:
                save()
            writer.flush()

        # ------------------------------------------------------------ the model
        model_dir = os.path.join(c.train_dir, MODEL_SUBDIR)
        if is_chief:
            keras.config.set_dtype_policy("float32")
            # A float32 copy outside the strategy: the saved model loads anywhere, and carries
            # no mixed-precision policy into inference.
            export = build_transformer(n_model, recipe["preset"], recipe["alpha"])
            trained = {v.path: v for v in model.weights}
            for v in export.weights:
                v.assign(np.asarray(trained[v.path].numpy()))
            checkpoint_lib.save_model(
                export, model_dir, style_names=style_names, overwrite=True,
                preset=recipe["preset"], alpha=recipe["alpha"], recipe=recipe,
            )
            log(f"wrote {model_dir} ({n_model} styles) at step {step}")
        return {
            "step": step,
            "model_dir": model_dir,
            "checkpoint": manager.latest_checkpoint,
            "metrics": metrics,
            "history": history,
            "model": model,
            "style_names": style_names,
        }
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _recipe(c, loss_cfg, style, **extra):
    recipe = {
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
        "content_weights": loss_cfg.content_weights,
        "style_weights": loss_cfg.style_weights,
        "style_coefficients": [float(x) for x in loss_cfg.coefficients],
        "clip_gradient_norm": c.clip_gradient_norm,
        "total_variation_weight": c.total_variation_weight,
        "loss_network": loss_cfg.network,
        "vgg_pooling": loss_cfg.pooling,
        "vgg_weights_file": os.path.basename(loss_cfg.weights_file) if loss_cfg.weights_file else None,
        "seed": c.seed,
        "mixed_precision": c.mixed_precision,
        "preset": c.preset,
        "alpha": c.alpha,
    }
    if c.command:
        recipe["command"] = c.command
    recipe.update(extra)
    return recipe


def train(config, strategy=None, log=None):
    """Trains an N-style network from scratch (Magenta's `image_stylization_train`).

    Returns a dict with `step`, `model_dir` (the ready-to-use model), `checkpoint` (the last
    training checkpoint), `metrics` (the last step's losses) and `model` (the live Keras model).
    Raises ConfigError for bad flags, TrainingInterrupted after a SIGTERM/SIGINT checkpoint.
    """
    c = config
    _check_numbers(c)
    # Before any TF op: MultiWorkerMirroredStrategy must configure collectives at startup.
    strategy = strategy or make_strategy(c.strategy, c.tpu)
    style = _read_style(c)
    loss_cfg = _style_setup(c, style)
    data.describe_source(c.content_source)  # a bad source fails here, not in the input pipeline
    recipe = _recipe(c, loss_cfg, style, mode="train")
    return _run(
        c, strategy=strategy, log=log, style=style, loss_cfg=loss_cfg,
        build_model=lambda: build_transformer(style.num_styles, c.preset, c.alpha),
        label_offset=0, style_names=list(style.names), recipe=recipe,
    )


# ----------------------------------------------------------------------------- fine-tuning


def infer_architecture(model):
    """(preset, alpha) of a transformer, from its manifest or its kernel shapes."""
    manifest = getattr(model, "manifest", None) or {}
    preset, alpha = manifest.get("preset"), manifest.get("alpha")
    shapes = {l.name: tuple(l.kernel.shape) for l in conv_layers(model)}
    candidates = [(preset, alpha)] if preset in PRESETS and alpha else []
    first = shapes.get("contract.conv1")
    if first is None:
        raise ConfigError("--checkpoint: not a style transfer network (no contract.conv1 layer)")
    for name, spec in PRESETS.items():
        candidates.append((name, first[-1] / spec["contract"][0][2]))
    for preset, alpha in candidates:
        try:
            probe = build_transformer(1, preset, float(alpha))
        except ValueError:
            continue
        if {l.name: tuple(l.kernel.shape) for l in conv_layers(probe)} == shapes:
            return preset, float(alpha)
    raise ConfigError("--checkpoint: the network matches no preset/alpha this package builds")


def finetune(config, checkpoint=None, mode="replace", strategy=None, log=None):
    """Fine-tunes a trained network on new styles (Magenta's `image_stylization_finetune`).

    The convolution kernels of `checkpoint` (ours, the bundled model when None, or a Magenta
    checkpoint) are copied and frozen; only the conditional instance norm tables learn.
    mode "replace": a fresh [M, C] table per layer (gamma 1, beta 0) for the M new styles, as
    Magenta. mode "append": the old N rows are kept bit-identical (their gradients are masked to
    zero, so Adam never moves them) and M new rows learn: one N+M-style model.
    `config.preset`/`config.alpha` are taken from the checkpoint.
    """
    c = config
    if mode not in FINETUNE_MODES:
        raise ConfigError(f"--finetune_mode must be one of {', '.join(FINETUNE_MODES)}, got {mode!r}")
    _check_numbers(c)
    strategy = strategy or make_strategy(c.strategy, c.tpu)  # before any TF op (see train)
    style = _read_style(c)
    try:
        base = checkpoint_lib.load_model(checkpoint)
    except checkpoint_lib.CheckpointError as e:
        raise ConfigError(f"--checkpoint: {e}") from None
    preset, alpha = infer_architecture(base)
    c = dataclasses.replace(c, preset=preset, alpha=alpha)
    _check_numbers(c)
    loss_cfg = _style_setup(c, style)
    data.describe_source(c.content_source)
    n_old, m_new = num_styles_of(base), style.num_styles
    n_model = m_new if mode == "replace" else n_old + m_new
    base_kernels = {l.name: np.asarray(l.kernel.numpy()) for l in conv_layers(base)}
    base_norms = {l.name: (np.asarray(l.gamma.numpy()), np.asarray(l.beta.numpy())) for l in norm_layers(base)}
    base_names = list(getattr(base, "style_names", [f"style_{i}" for i in range(n_old)]))
    names = list(style.names) if mode == "replace" else base_names + list(style.names)
    if mode == "append" and len(set(names)) != len(names):
        clash = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"--finetune_mode=append: style names already in the checkpoint: {', '.join(clash)}")

    def build():
        model = build_transformer(n_model, preset, alpha)
        for layer in conv_layers(model):
            layer.kernel.assign(base_kernels[layer.name])
            layer.trainable = False  # frozen: only gamma/beta learn
        if mode == "append":
            for layer in norm_layers(model):
                gamma, beta = base_norms[layer.name]
                layer.gamma.assign(np.concatenate([gamma, np.ones([m_new, gamma.shape[1]], np.float32)]))
                layer.beta.assign(np.concatenate([beta, np.zeros([m_new, beta.shape[1]], np.float32)]))
        return model

    def trainable(model):
        return [v for l in norm_layers(model) for v in (l.beta, l.gamma)]

    def mask(model):
        if mode != "append":
            return {}
        row_mask = np.concatenate([np.zeros([n_old, 1], np.float32), np.ones([m_new, 1], np.float32)])
        return {v.path: tf.constant(row_mask) for v in trainable(model)}

    base_source = checkpoint if checkpoint else "bundled:" + os.path.basename(checkpoint_lib.bundled_checkpoint_dir())
    recipe = _recipe(c, loss_cfg, style, mode=f"finetune_{mode}", base_checkpoint=str(base_source),
                     base_num_styles=n_old)
    return _run(
        c, strategy=strategy, log=log, style=style, loss_cfg=loss_cfg, build_model=build,
        label_offset=n_old if mode == "append" else 0, style_names=names, recipe=recipe,
        finetune_mask=mask, trainable=trainable,
    )
