"""The one training step (image_stylization.train.StyleTrainer): its two-tape gradient equals an
ordinary single-tape gradient, Keras' `fit` runs the very step the training loop runs, and
`evaluate` averages the losses. A random VGG and random Gram targets: no ../shared needed."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from image_stylization import losses
from image_stylization.model import build_transformer
from image_stylization.train import LossSetup, StyleTrainer, make_optimizer
from image_stylization.train.loop import distributed_step

CONTENT = {"conv2": 1.0}
STYLE = {"conv1": 1e-3, "conv2": 1e-3}
CHANNELS = {"block1_conv2": 64, "block2_conv2": 128}


def setup(total_variation_weight=0.0, coefficients=(1.0, 3.0, 0.5)):
    return LossSetup("vgg19", "avg", None, losses.parse_loss_weights(CONTENT, "vgg19"),
                     losses.parse_loss_weights(STYLE, "vgg19"), np.asarray(coefficients, np.float32),
                     total_variation_weight)


def grams(n=3, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for e, c in CHANNELS.items():
        f = rng.uniform(size=[n, 8, c]).astype(np.float32)
        out[e] = np.einsum("npi,npj->nij", f, f) / 8
    return out


def make_trainer(seed=3, **kwargs):
    keras.utils.set_random_seed(seed)
    trainer = StyleTrainer(build_transformer(3, "android_26", 0.25), kwargs.pop("setup", setup()), grams(),
                           seed=seed, **kwargs)
    trainer.compile(make_optimizer(1e-2))
    return trainer


def images(n=4, size=32, seed=1):
    return tf.random.stateless_uniform([n, size, size, 3], seed=[seed, 2])


@pytest.mark.parametrize("jit", [False, True])
def test_two_tape_gradient_equals_single_tape_gradient(jit):
    trainer = make_trainer(setup=setup(total_variation_weight=0.5), jit_compile=jit)
    x = images()
    labels = tf.constant([0, 2, 1, 2])
    grads, details = trainer._gradients_fn(x, labels, 4)

    def single_tape():
        with tf.GradientTape() as tape:
            per_example = trainer.losses_of(trainer.stylize(x, labels, training=True), labels,
                                            trainer.content_features(x))
            loss = tf.reduce_mean(per_example["loss/total"])
        return tape.gradient(loss, trainer.train_variables), per_example

    # The reference is computed the way the step is: eagerly, or compiled by XLA.
    reference, per_example = tf.function(single_tape, jit_compile=True)() if jit else single_tape()
    assert len(grads) == len(reference) == len(trainer.transformer.trainable_variables)
    # Relative to the tensors' norms; the beta of each residual block's second norm is a null
    # direction whose gradient is rounding noise, so each tensor may also differ by a millionth
    # of the whole gradient's norm.
    tol = 1e-6
    total = float(tf.linalg.global_norm(reference))
    assert total > 0 and float(tf.linalg.global_norm([g - r for g, r in zip(grads, reference)])) < tol * total
    for v, g, r in zip(trainer.train_variables, grads, reference):
        assert float(tf.norm(g - r)) <= tol * float(tf.norm(r)) + 1e-6 * total, v.path
    np.testing.assert_allclose(details["loss/total"].numpy(), per_example["loss/total"].numpy(), rtol=1e-6)
    # The terms add up, and the style coefficient of each example's style multiplies its style loss.
    d = {k: v.numpy() for k, v in details.items()}
    np.testing.assert_allclose(d["loss/total"], d["loss/content"] + d["loss/style"] + d["loss/total_variation"],
                               rtol=1e-6)
    weighted = sum(d[f"weighted_style_loss/{e}"] for e in CHANNELS)
    unweighted = sum(STYLE[f"conv{i}"] * d[f"style_loss/{e}"] for i, e in enumerate(CHANNELS, start=1))
    np.testing.assert_allclose(weighted, unweighted * np.array([1.0, 0.5, 3.0, 0.5]), rtol=1e-5)


def test_fit_runs_the_training_loops_step_and_evaluate_averages():
    """A notebook user's `trainer.fit` on a dataset of photos: the same weights, step by step, as
    the training loop's `strategy.run(trainer.train_step)` (labels drawn from (seed, step) in
    both); `evaluate` returns the mean of the batches' losses."""
    batch = images(2, seed=7)
    photos = tf.data.Dataset.from_tensors(batch).repeat()

    fitted = make_trainer()
    initial = [v.numpy() for v in fitted.transformer.weights]
    history = fitted.fit(photos, epochs=2, steps_per_epoch=2, verbose=0, shuffle=False).history
    assert int(fitted.step_counter.numpy()) == 4 and len(history["loss/total"]) == 2

    looped = make_trainer()
    step = distributed_step(looped, tf.distribute.get_strategy(), per_replica=2)
    iterator = iter(photos.map(lambda x: {"image": x, "skipped": tf.zeros([2], tf.int64)}))
    losses_seen = [float(step(iterator)["metrics"]["loss/total"]) for _ in range(4)]
    for a, b in zip(fitted.transformer.weights, looped.transformer.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7, err_msg=a.path)
    assert max(float(np.abs(a.numpy() - b).max()) for a, b in zip(fitted.transformer.weights, initial)) > 1e-2
    # History holds each epoch's mean of the per-step losses (Keras' metric trackers).
    np.testing.assert_allclose(history["loss/total"], [np.mean(losses_seen[:2]), np.mean(losses_seen[2:])],
                               rtol=1e-4)

    labelled = tf.data.Dataset.from_tensor_slices(
        {"image": tf.concat([batch, batch], 0), "label": tf.constant([0, 1, 2, 0])}).batch(2)
    result = looped.evaluate(labelled, verbose=0, return_dict=True)
    by_batch = [looped.test_step(b)["loss/total"].numpy() for b in labelled]
    np.testing.assert_allclose(result["loss/total"], np.mean(by_batch), rtol=1e-5)
    assert int(looped.step_counter.numpy()) == 4  # evaluation does not step


def test_only_the_given_variables_train_and_masked_rows_stay():
    keras.utils.set_random_seed(3)
    transformer = build_transformer(3, "android_26", 0.25)
    variables = [v for v in transformer.trainable_variables if "InstanceNorm" in v.path]
    masks = {v.path: tf.constant([[0.0], [1.0], [1.0]]) for v in variables}
    trainer = StyleTrainer(transformer, setup(), grams(), variables=variables, row_masks=masks)
    trainer.compile(make_optimizer(1e-2))
    before = {v.path: v.numpy() for v in transformer.weights}
    trainer.fit(tf.data.Dataset.from_tensors(images(2)).repeat(), steps_per_epoch=2, verbose=0, shuffle=False)
    moved = 0.0
    for v in transformer.weights:
        if "InstanceNorm" in v.path:
            np.testing.assert_array_equal(v.numpy()[0], before[v.path][0], err_msg=v.path)
            moved = max(moved, float(np.abs(v.numpy()[1:] - before[v.path][1:]).max()))
        else:  # conv kernels: not among the variables
            np.testing.assert_array_equal(v.numpy(), before[v.path], err_msg=v.path)
    assert moved > 1e-3


def test_style_index_maps_dataset_styles_to_model_styles():
    keras.utils.set_random_seed(0)
    transformer = build_transformer(5, "android_26", 0.25)
    trainer = StyleTrainer(transformer, setup(), grams(), style_index=[4, 0, 2])
    x = images(1)
    pastiche = trainer.stylize(x, tf.constant([0]))
    direct = transformer({"image": x, "style_weights": tf.one_hot([4], 5)})
    np.testing.assert_array_equal(pastiche.numpy(), direct.numpy())
    with pytest.raises(ValueError, match="style_index"):
        StyleTrainer(transformer, setup(), grams(), style_index=[0, 1, 5])
