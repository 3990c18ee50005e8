"""The resumable, distributed training loop around `StyleTrainer.train_step`.

- Builds the trainer (transformer, Adam with its slots built before the first step, frozen VGG)
  inside the distribution strategy's scope, under the run's dtype policy.
- Input: one plain `tf.data` pipeline per worker, split across the worker's replicas in the
  step. Unlike a distributed iterator (whose multi-device form cannot be saved), a plain iterator
  goes into the checkpoint, so a resumed run continues the exact stream. TPUs are fed through the
  distributed dataset instead (its iterator is not checkpointed; a resumed run starts a new stream
  seeded by the step).
- Checkpoints transformer, optimizer, step and the input iterator (never VGG) in `train_dir`
  every `save_interval_steps` and on SIGTERM/SIGINT; rerunning the same command resumes from the
  newest checkpoint that reads (a truncated or corrupt one is named in a warning and skipped).
- Writes TensorBoard summaries and a progress line with ETA; at the end writes a ready-to-use
  model (`train_dir/model`, `.keras` + manifest) that `checkpoint.load_model` reads.
"""

import contextlib
import gc
import glob
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from image_stylization import checkpoint as checkpoint_lib
from image_stylization import data, outputs
from image_stylization.errors import ConfigError, DataError, StorageError, TrainingError
from image_stylization.model import build_transformer, num_styles_of
from image_stylization.train.config import STRATEGIES
from image_stylization.train.summaries import SUMMARY_IMAGES, style_thumbnails, summary_images, summary_scalar
from image_stylization.train.trainer import StyleTrainer, make_optimizer

MODEL_SUBDIR = "model"
CHECKPOINT_NAME = "ckpt"


class TrainingInterrupted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint was written and rerunning the command resumes."""

    def __init__(self, signum, step, path):
        self.signum, self.step, self.path = signum, step, path
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint {path}; rerun "
            f"the same command to resume"
        )


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


# ----------------------------------------------------------------------------- helpers


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


def _reason(error):
    """One line saying why an OS or TF operation failed."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if isinstance(error, tf.errors.OpError):
        return data._op_message(error)
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def policy_name(mixed_precision, strategy):
    """The Keras dtype policy of a run: float32, or bfloat16 (TPU, CPU) / float16 (GPU) compute."""
    if not mixed_precision:
        return "float32"
    if _is_tpu(strategy) or not tf.config.list_logical_devices("GPU"):
        return "mixed_bfloat16"  # TPUs (and CPUs) have bfloat16; float16 needs loss scaling
    return "mixed_float16"


def cpu_has_bfloat16():
    """True/False when /proc/cpuinfo says whether the CPU computes bfloat16 natively
    (AVX512_BF16 or AMX-BF16); None where it cannot tell."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return None
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def prepare_directory(path, flag="--train_dir"):
    """Makes `path` and checks that a file can be written there; one-line ConfigError if not."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        try:
            os.write(fd, b"\0" * 4096)  # an empty file still fits on a full disk
        finally:
            os.close(fd)
            os.remove(probe)
    except OSError as e:
        # A full disk is the file system failing (exit status 1), not a path to change (2).
        kind = StorageError if outputs.is_storage_failure(e) else ConfigError
        raise kind(f"{flag}={path}: cannot write there ({_reason(e)})") from None


# ----------------------------------------------------------------------------- checkpoints


def _checkpoint_number(prefix):
    match = re.search(r"-(\d+)$", prefix)
    return int(match.group(1)) if match else -1


def checkpoint_candidates(manager, directory):
    """Checkpoint prefixes in `directory`, newest first: the manager's, then any other ckpt-N."""
    found = {p for p in manager.checkpoints}
    pattern = os.path.join(glob.escape(directory), f"{CHECKPOINT_NAME}-*.index")
    found.update(p[: -len(".index")] for p in glob.glob(pattern))
    return sorted(found, key=_checkpoint_number, reverse=True)


def checkpoint_problem(prefix):
    """None if every tensor of the checkpoint at `prefix` reads back, else why not (one line).

    A checkpoint truncated by a full disk or an interrupted copy fails here, before a restore
    could leave the model half-assigned.
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name, dtype in reader.get_variable_to_dtype_map().items():
            if dtype != tf.variant:  # the input iterator's state: not readable from Python
                reader.get_tensor(name)
    except Exception as e:  # noqa: BLE001  (DataLossError, IndexError, NotFoundError, ...)
        return _reason(e)
    return None


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
        except (tf.errors.OpError, ValueError, IndexError) as e:
            failure = _reason(e) if isinstance(e, tf.errors.OpError) else str(e).splitlines()[0]
        gc.collect()
    finally:
        logger.setLevel(level)
    return failure


# ----------------------------------------------------------------------------- the loop


def distributed_step(trainer, strategy, per_replica, local_replicas=1, tpu_input=False):
    """`step(iterator)`: one batch from `iterator`, split across the replicas, through
    `strategy.run(trainer.train_step)`. Returns {"metrics", "skipped", "images"} (the first few
    input crops, for image summaries).

    `iterator` yields `data.content_dataset` batches of this worker (all its replicas' examples),
    or, with `tpu_input`, a distributed iterator's per-replica batches.
    """

    def replica_slice(images, local_id):
        return images[local_id * per_replica : (local_id + 1) * per_replica]

    # One trace: the step always returns a few input crops (written only when due).
    # autograph=False: no tensor-dependent Python control flow here, and converting costs seconds.
    @tf.function(autograph=False)
    def step(iterator):
        batch = next(iterator)
        if tpu_input:
            images = batch["image"]
            skipped = tf.reduce_max(tf.stack(
                [tf.reduce_max(s) for s in strategy.experimental_local_results(batch["skipped"])]))
            first = strategy.experimental_local_results(images)[0]
        else:
            images = strategy.experimental_distribute_values_from_function(
                lambda ctx: replica_slice(batch["image"], ctx.replica_id_in_sync_group % local_replicas))
            skipped = tf.reduce_max(batch["skipped"])
            first = batch["image"]
        metrics = strategy.run(trainer.train_step, args=({"image": images},))
        # Every replica holds the global batch's values.
        metrics = {k: strategy.experimental_local_results(v)[0] for k, v in metrics.items()}
        return {"metrics": metrics, "skipped": skipped, "images": first[:SUMMARY_IMAGES]}

    return step




def run(c, *, strategy, log, style, setup, build_model, style_index, style_names, recipe,
        select_variables=None, row_masks=None):
    """The training loop shared by `train` and `finetune`.

    build_model(): the transformer, called inside the strategy scope.
    style_index: model style of each dataset style.
    select_variables(model): the variables to train (default: all trainable ones).
    row_masks(model): {variable path: float [rows, 1] mask} zeroing gradients of frozen rows.
    """
    log = log or _default_log
    strategy = strategy or make_strategy(c.strategy, c.tpu)
    replicas = strategy.num_replicas_in_sync
    if c.batch_size % replicas:
        raise ConfigError(f"--batch_size={c.batch_size} is not divisible by the {replicas} replicas")
    per_replica = c.batch_size // replicas
    is_chief, task_id = _worker_info(strategy)
    checkpoint_dir = c.train_dir if is_chief else os.path.join(c.train_dir, "workers", f"worker-{task_id}")
    source = data.describe_source(c.content_source)
    _check_readable(c, source)  # before anything is written: bad input leaves no --train_dir
    prepare_directory(checkpoint_dir)

    previous_policy = keras.config.dtype_policy()
    policy = policy_name(c.mixed_precision, strategy)
    if policy == "mixed_bfloat16" and not _is_tpu(strategy) and cpu_has_bfloat16() is False:
        log("warning: --mixed_precision: this CPU has neither AVX512_BF16 nor AMX; bfloat16 is emulated "
            "and slower than float32 here")
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(c.seed)  # the same initial weights for the same seed
        with strategy.scope():
            model = build_model()
            n_model = num_styles_of(model)
            trainer = StyleTrainer(
                model, setup, style.grams, style_index=style_index, seed=c.seed,
                clip_gradient_norm=c.clip_gradient_norm,
                variables=select_variables(model) if select_variables else None,
                row_masks=row_masks(model) if row_masks else None, jit_compile=c.jit_compile,
            )
            trainer.compile(make_optimizer(c.learning_rate, policy))
        step_var = trainer.step_counter

        num_workers = max(1, replicas // _local_replica_count(strategy))
        local_replicas = replicas // num_workers
        worker_batch = per_replica * local_replicas
        tpu_input = _is_tpu(strategy)

        def dataset_fn(input_context, seed_offset=0):
            return data.content_dataset(
                source, c.image_size, input_context.get_per_replica_batch_size(c.batch_size)
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

        train_step = distributed_step(trainer, strategy, per_replica, local_replicas, tpu_input)

        # ------------------------------------------------------------ checkpoints
        def checkpointing(iterator):
            """The run's checkpoint (with the input position when `iterator` is given) and manager."""
            objects = dict(model=model, optimizer=trainer.optimizer, step=step_var)
            if iterator is not None:
                objects["iterator"] = iterator
            ckpt = tf.train.Checkpoint(**objects)
            return ckpt, tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=c.keep_checkpoints,
                                                    step_counter=step_var, checkpoint_name=CHECKPOINT_NAME)

        ckpt, manager = checkpointing(iterator)
        restored = None
        candidates = checkpoint_candidates(manager, checkpoint_dir)
        bad = []
        for prefix in candidates:
            problem = checkpoint_problem(prefix)
            if problem is None:
                restored = prefix
                break
            bad.append((prefix, problem))
        if bad:
            names = "; ".join(f"{os.path.basename(p)} ({why})" for p, why in bad)
            if restored is None:
                raise ConfigError(
                    f"--train_dir={c.train_dir}: no checkpoint there can be read: {names}. Move "
                    f"the {CHECKPOINT_NAME}-* files away to start from step 0, or use a new --train_dir"
                )
            intact = [os.path.basename(p) for p in candidates if p not in dict(bad)]
            log(f"warning: cannot read {names}; resuming from {os.path.basename(restored)}, the newest "
                f"intact checkpoint (intact: {', '.join(sorted(intact, key=_checkpoint_number))})")
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
            iterator = iter(strategy.distribute_datasets_from_function(
                lambda ctx: dataset_fn(ctx, seed_offset=start)))
        last_good = restored

        def save():
            nonlocal ckpt, manager, last_good
            number = int(step_var.numpy())
            try:
                try:
                    last_good = manager.save(checkpoint_number=number)
                except (tf.errors.UnimplementedError, tf.errors.FailedPreconditionError,
                        tf.errors.InvalidArgumentError) as e:
                    if getattr(ckpt, "iterator", None) is None:
                        raise
                    # tfds mock data (from_generator) and a few sources cannot save their state.
                    log(f"warning: the input pipeline cannot be checkpointed ({data._op_message(e)}); "
                        f"a resumed run restarts the content stream")
                    ckpt, manager = checkpointing(None)
                    last_good = manager.save(checkpoint_number=number)
            except (tf.errors.OpError, OSError) as e:
                raise TrainingError(
                    f"cannot write the checkpoint for step {number} in {checkpoint_dir} ({_reason(e)}); "
                    f"the last checkpoint written is {last_good or 'none'}"
                ) from None
            return last_good

        # ------------------------------------------------------------ summaries
        try:
            writer = tf.summary.create_file_writer(c.train_dir) if is_chief else tf.summary.create_noop_writer()
        except tf.errors.OpError as e:
            kind = StorageError if outputs.is_storage_failure(e) else ConfigError
            raise kind(f"--train_dir={c.train_dir}: cannot write TensorBoard events there ({_reason(e)})") from None

        @contextlib.contextmanager
        def events_io():
            # The event writer fails when it flushes (a full disk): one line, the checkpoints kept.
            try:
                yield
            except tf.errors.OpError as e:
                raise TrainingError(f"cannot write TensorBoard events in {c.train_dir} ({_reason(e)}); the last "
                                    f"checkpoint written is {last_good or 'none'}") from None
        image_every = c.image_summary_interval_steps or 10 * c.summary_interval_steps
        thumbs = style_thumbnails(style, c.image_size) if is_chief else None
        lr = float(c.learning_rate)

        log(
            f"training {n_model}-style {getattr(model, 'name', 'transformer')} on {style.num_styles} styles from "
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
                try:
                    out = train_step(iterator)
                except tf.errors.OutOfRangeError:
                    raise _stream_ended(c, source, step, start, last_good) from None
                except tf.errors.ResourceExhaustedError as e:
                    raise TrainingError(f"out of memory in step {step + 1} ({_reason(e)}); try a smaller "
                                        f"--batch_size or --image_size") from None
                step += 1
                window_steps += 1
                metrics = {k: float(v) for k, v in out["metrics"].items()}
                history.append(metrics["loss/total"])
                if not math.isfinite(metrics["loss/total"]):
                    raise TrainingError(
                        f"the loss became {metrics['loss/total']} at step {step}; the last good "
                        f"checkpoint is {last_good}. Try a lower --learning_rate or "
                        f"--clip_gradient_norm"
                    )
                if step % c.summary_interval_steps == 0 or step == c.train_steps or step == start + 1:
                    elapsed = max(time.time() - window_start, 1e-9)
                    images_per_second = window_steps * c.batch_size / elapsed
                    with events_io():
                        for name, value in metrics.items():
                            summary_scalar(name, value, step=step)
                        summary_scalar("learning_rate", lr, step=step)
                        summary_scalar("images_per_second", images_per_second, step=step)
                        summary_scalar("data/skipped_images", int(out["skipped"]), step=step)
                    window_start, window_steps = time.time(), 0
                if with_images:
                    inputs = out["images"]
                    labels = trainer.style_labels(step - 1, c.batch_size)[: inputs.shape[0]]
                    # The pastiches of the weights this step left (the step itself returns none:
                    # Keras' train_step returns only numbers).
                    pastiches = trainer.stylize(inputs, labels)
                    with events_io():
                        summary_images("image/0_inputs", inputs.numpy(), step)
                        summary_images("image/1_styles", thumbs[labels.numpy()], step)
                        summary_images("image/2_styled_inputs", pastiches.numpy(), step)
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
                        f"style {metrics.get('loss/style', 0):.3g}) {rate * c.batch_size:.2f} img/s "
                        f"ETA {_format_duration(eta)}" + (f" skipped {skipped} unreadable images" if skipped else "")
                    )
                    last_log_time, last_log_step = now, step
                if step % c.save_interval_steps == 0:
                    save()
                    last_saved = step
                if signals.received is not None:
                    path = save() if last_saved != step else last_good
                    with events_io():
                        writer.flush()
                    raise TrainingInterrupted(signals.received, step, path)
            if last_saved != step:
                save()
            with events_io():
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
            try:
                checkpoint_lib.save_model(
                    export, model_dir, style_names=style_names, overwrite=True,
                    preset=recipe["preset"], alpha=recipe["alpha"], recipe=recipe,
                )
            except OSError as e:
                raise TrainingError(
                    f"cannot write the model to {model_dir} ({_reason(e)}); the checkpoint {last_good} "
                    f"holds the trained weights: rerun the command to write the model again"
                ) from None
            log(f"wrote {model_dir} ({n_model} styles) at step {step}")
        return {
            "step": step,
            "model_dir": model_dir,
            "checkpoint": last_good,
            "metrics": metrics,
            "history": history,
            "model": model,
            "trainer": trainer,
            "style_names": style_names,
        }
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _check_readable(c, source):
    """A source with no readable image fails here, in a second, not after the step is built."""
    probe = data.content_dataset(source, c.image_size, 1, training=True, seed=c.seed, shuffle_buffer=1,
                                 tfds_data_dir=c.tfds_data_dir, tfds_manual_dir=c.tfds_manual_dir, prefetch=0)
    try:
        next(iter(probe))
    except StopIteration:
        raise _stream_ended(c, source, 0, 0, None) from None


def _stream_ended(c, source, step, start, last_good):
    """The error for a content stream that stopped yielding images (see `data.content_dataset`)."""
    count = len(source[1]) if source[0] == "images" else None
    if step == start:
        what = (f"none of its {count} image files could be read ({count} unreadable)" if count is not None
                else "no readable image in it")
        return DataError(f"--content_source={c.content_source}: {what}")
    return DataError(
        f"--content_source={c.content_source}: the images stopped being readable at step {step} "
        f"(more than {data.max_unreadable_in_a_row(source)} unreadable in a row); the last "
        f"checkpoint is {last_good or 'none'}"
    )
