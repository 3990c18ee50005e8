"""The one training step: `StyleTrainer`, a `keras.Model` that holds the transformer, the frozen
VGG loss network, the style Gram tables, the style coefficients and (fine-tuning) the rows of
gamma/beta that must not move, with Keras' `train_step` and `test_step`.

`train`, `finetune`, `evaluate`, `bench/train_step.py` and `trainer.fit(...)` all run this step;
nothing else in the package computes the training losses.

    trainer = StyleTrainer(transformer, setup, style.grams)
    trainer.compile(keras.optimizers.Adam(1e-3))
    trainer.fit(photos.map(lambda x: {"image": x}), steps_per_epoch=100)

A batch is a dict {"image": float [B, S, S, 3] in [0, 1], "label": optional int [B]} (or a
tensor of images, or an (images, labels) tuple). `label` is the style dataset's index of the style
each example is trained on; without it, labels are drawn as Magenta did (one style per example), as
a stateless function of (seed, step) drawn for the global batch and sliced per replica, so a
resumed run and a run on more replicas see the same labels as an uninterrupted single-replica run.

The gradient is taken with two tapes: the outer one records only the transformer; the inner one
gives d(loss)/d(pastiche) through the loss network; the chain rule joins them
(`tape.gradient(pastiche, variables, output_gradients=d_pastiche)`). It equals the gradient of one
tape around everything (tested), and lets the loss side be compiled or placed on its own.
"""

import keras
import numpy as np
import tensorflow as tf

from image_stylization import losses, vgg
from image_stylization.model import num_styles_of

# TensorBoard names of the four totals; the per-layer entries keep `losses.total_loss`'s names.
SUMMARY_NAMES = {"content_loss": "loss/content", "style_loss": "loss/style",
                 "total_variation_loss": "loss/total_variation", "total_loss": "loss/total"}


def metric_names(setup):
    """The keys of the metrics a step returns for this loss set-up (fixed before tracing)."""
    names = ["loss/total"]
    if setup.content_weights:
        names.append("loss/content")
    if setup.style_weights:
        names.append("loss/style")
    if setup.total_variation_weight:
        names.append("loss/total_variation")
    for e in setup.content_weights:
        names += [f"content_loss/{e}", f"weighted_content_loss/{e}"]
    for e in setup.style_weights:
        names += [f"style_loss/{e}", f"weighted_style_loss/{e}"]
    return names


def make_optimizer(learning_rate, policy="float32"):
    """Magenta's Adam; wrapped for loss scaling under float16 (bfloat16 needs none)."""
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


class StyleTrainer(keras.Model):
    """Trains an N-style transformer against a frozen VGG loss network.

    Args:
      transformer: the `build_transformer` model to train.
      setup: a `config.LossSetup` (loss network, weights file, pooling, loss weights, style
        coefficients, total variation weight).
      grams: {end point: float [N, C, C]} style Grams of the N dataset styles (at least every
        end point of `setup.style_weights`).
      style_index: model style of each dataset style (default 0..N-1; append fine-tuning
        N_old..N_old+N-1; evaluation: matched by name).
      seed: the seed of the drawn style labels.
      clip_gradient_norm: clip each gradient tensor to this norm after the cross-replica sum
        (slim's per-tensor clipping); 0 = off.
      variables: the variables to train (default: the transformer's trainable ones).
      row_masks: {variable path: float [rows, 1]}: gradients are multiplied by the mask, so rows
        with 0 never move (append fine-tuning keeps the old styles bit-identical).
      jit_compile: compile the forward and backward pass (transformer and loss network) with XLA.
      loss_dtype: the loss network's compute dtype. Default: bfloat16 under a mixed_bfloat16
        policy (bfloat16 has float32's range, and the loss network is two thirds of the step's
        work), else float32 (float16 Grams of VGG activations overflow). Losses and Grams are
        always computed in float32.
      loss_network: a prebuilt `vgg.build_loss_network` model (default: built from `setup`).
    """

    def __init__(self, transformer, setup, grams, *, style_index=None, seed=0, clip_gradient_norm=0.0,
                 variables=None, row_masks=None, jit_compile=False, loss_dtype=None, loss_network=None,
                 name="style_trainer", **kwargs):
        super().__init__(name=name, **kwargs)
        self.transformer = transformer
        self.setup = setup
        if loss_dtype is None:
            loss_dtype = "bfloat16" if keras.config.dtype_policy().name == "mixed_bfloat16" else "float32"
        self.loss_network = loss_network or vgg.build_loss_network(
            setup.network, setup.weights_file, setup.pooling, setup.end_points, compute_dtype=loss_dtype)
        # The content features need the loss network only up to the deepest content layer
        # (VGG-19 conv3 for Magenta's weights, where the style loss goes on to conv4).
        self.content_network = None
        if setup.content_weights:
            self.content_network = keras.Model(
                self.loss_network.input, {e: self.loss_network.output[e] for e in setup.content_weights},
                name=f"{self.loss_network.name}_content")
        first = next(iter(setup.style_weights or grams))
        self.num_data_styles = int(np.shape(grams[first])[0])
        self.num_model_styles = num_styles_of(transformer)
        style_index = np.arange(self.num_data_styles) if style_index is None else np.asarray(style_index)
        if style_index.shape != (self.num_data_styles,) or style_index.max(initial=0) >= self.num_model_styles:
            raise ValueError(f"style_index must map {self.num_data_styles} dataset styles to model "
                             f"styles < {self.num_model_styles}, got {style_index.tolist()}")
        self._style_index = tf.constant(style_index, tf.int32)
        # Variables, not constants: 32 styles of VGG Grams are ~45 MB that would otherwise be
        # copied into every traced graph.
        self._grams = [tf.Variable(np.asarray(grams[e], np.float32), trainable=False, name=f"grams_{e}")
                       for e in setup.style_weights]
        self._coefficients = tf.Variable(np.asarray(setup.coefficients, np.float32), trainable=False,
                                         name="style_coefficients")
        self.seed = int(seed)
        self.clip_gradient_norm = float(clip_gradient_norm)
        self.step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.train_variables = list(variables if variables is not None else transformer.trainable_variables)
        row_masks = row_masks or {}
        self._masks = [row_masks.get(v.path) for v in self.train_variables]
        self._trackers = [keras.metrics.Mean(name=n) for n in metric_names(setup)]
        self.jit_compile_step = bool(jit_compile)
        self._gradients_fn = tf.function(self.gradients, jit_compile=True) if jit_compile else self.gradients
        self.built = True

    # ------------------------------------------------------------------ Keras plumbing

    @property
    def metrics(self):
        return list(self._trackers)

    def compile(self, optimizer="adam", **kwargs):
        """Keras' compile; the optimizer's slots are built at once (a first step inside a
        multi-replica `tf.function` cannot create them). XLA is the trainer's `jit_compile`."""
        kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer, **kwargs)
        if not self.optimizer.built:
            self.optimizer.build(self.train_variables)

    def call(self, inputs, training=False):
        return self.transformer(inputs, training=training)

    # ------------------------------------------------------------------ the losses

    def style_labels(self, step, global_batch):
        """The dataset style of every example of the global batch at `step` (Magenta: one
        uniformly drawn style per example)."""
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
        return tf.random.stateless_uniform([global_batch], seed=seed, minval=0,
                                           maxval=self.num_data_styles, dtype=tf.int32)

    def stylize(self, images, labels, training=False):
        """Pastiches of `images` in the dataset styles `labels`, float32."""
        weights = tf.one_hot(tf.gather(self._style_index, labels), self.num_model_styles, dtype=tf.float32)
        return tf.cast(self.transformer({"image": images, "style_weights": weights}, training=training),
                       tf.float32)

    def content_features(self, images):
        """Loss-network features of the content images at the content end points."""
        if self.content_network is None:
            return {}
        return self.content_network(images, training=False)

    def losses_of(self, pastiches, labels, content_features):
        """Per-example losses of `pastiches` in dataset styles `labels`: {name: float [B]},
        named as TensorBoard shows them (`loss/total`, `style_loss/block1_conv2`, ...)."""
        features = self.loss_network(pastiches, training=False)
        targets = {e: tf.gather(g, labels) for e, g in zip(self.setup.style_weights, self._grams)}
        _, details = losses.total_loss(
            features, content_features, targets, self.setup.content_weights, self.setup.style_weights,
            coefficients=tf.gather(self._coefficients, labels), stylized=pastiches,
            total_variation_weight=self.setup.total_variation_weight,
        )
        return {SUMMARY_NAMES.get(k, k): v for k, v in details.items()}

    def gradients(self, images, labels, global_batch):
        """(gradients of the mean loss over the global batch w.r.t. `train_variables`,
        per-example losses) for this replica's `images` and `labels`."""
        content = self.content_features(images)
        with tf.GradientTape() as tape:
            pastiches = self.stylize(images, labels, training=True)
        with tf.GradientTape() as loss_tape:
            loss_tape.watch(pastiches)
            details = self.losses_of(pastiches, labels, content)
            loss = tf.nn.compute_average_loss(details["loss/total"], global_batch_size=global_batch)
        d_pastiches = loss_tape.gradient(loss, pastiches)
        if self.optimizer is not None:  # the loss scale: 1 unless float16
            d_pastiches = d_pastiches * tf.cast(self.optimizer.scale_loss(tf.constant(1.0)), tf.float32)
        return tape.gradient(pastiches, self.train_variables, output_gradients=d_pastiches), details

    # ------------------------------------------------------------------ steps

    def _unpack(self, data):
        """(images, labels or None, per-replica batch, global batch) of a batch."""
        labels = None
        if isinstance(data, dict):
            images, labels = data["image"], data.get("label")
        elif isinstance(data, (tuple, list)):
            images = data[0]
            labels = data[1] if len(data) > 1 else None
        else:
            images = data
        images = tf.convert_to_tensor(images)
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        per_replica = images.shape[0]
        if per_replica is None:
            per_replica = tf.shape(images)[0]
        return images, labels, per_replica, per_replica * replicas

    def _drawn_labels(self, per_replica, global_batch):
        ctx = tf.distribute.get_replica_context()
        start = ctx.replica_id_in_sync_group * per_replica
        return self.style_labels(self.step_counter.read_value(), global_batch)[start:start + per_replica]

    def _batch_metrics(self, details, global_batch):
        """Batch means over the global batch (the same value on every replica)."""
        metrics = {k: tf.reduce_sum(v) / tf.cast(global_batch, v.dtype) for k, v in details.items()}
        ctx = tf.distribute.get_replica_context()
        if ctx.num_replicas_in_sync > 1:
            metrics = ctx.all_reduce(tf.distribute.ReduceOp.SUM, metrics)
        for tracker in self._trackers:
            tracker.update_state(metrics[tracker.name])
        return metrics

    def train_step(self, data):
        """One optimizer step on one replica's batch; returns the batch's losses.

        Called by `fit`, and by the training loop as `strategy.run(trainer.train_step, ...)`.
        """
        images, labels, per_replica, global_batch = self._unpack(data)
        if labels is None:
            labels = self._drawn_labels(per_replica, global_batch)
        grads, details = self._gradients_fn(images, labels, global_batch)
        grads = [g if m is None or g is None else g * m for g, m in zip(grads, self._masks)]
        if self.clip_gradient_norm > 0:
            # slim clips each gradient tensor separately, after aggregation: sum over the
            # replicas first, clip, then hand the optimizer a 1/R share it sums back.
            ctx = tf.distribute.get_replica_context()
            replicas = ctx.num_replicas_in_sync
            if replicas > 1:
                grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            threshold = self.clip_gradient_norm
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                threshold = threshold * tf.cast(self.optimizer.dynamic_scale, tf.float32)
            grads = [tf.clip_by_norm(g, threshold) / replicas for g in grads]
        self.optimizer.apply_gradients(zip(grads, self.train_variables))
        self.step_counter.assign_add(1)
        return self._batch_metrics(details, global_batch)

    def test_step(self, data):
        """The losses of one batch without an update (Keras' `evaluate`)."""
        images, labels, per_replica, global_batch = self._unpack(data)
        if labels is None:
            labels = self._drawn_labels(per_replica, global_batch)
        details = self.losses_of(self.stylize(images, labels), labels, self.content_features(images))
        return self._batch_metrics(details, global_batch)
