"""TensorBoard records of training and evaluation, and the style thumbnails they show.

`tf.summary.scalar`/`image` live in the tensorboard package, which training does not need: the
same records are written here with TF's own `tf.summary.write` and TensorBoard's plugin names,
so TensorBoard (installed anywhere) shows them as scalars and images.
"""

import numpy as np
import tensorflow as tf

from image_stylization import data

SUMMARY_IMAGES = 3


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


def style_thumbnails(style, image_size):
    """[N, S, S, 3] central crops of the style images, for image summaries and grids."""
    thumbs = []
    for raw in style.image_raw:
        try:
            image = data.decode_image(tf.constant(raw))
            thumbs.append(data.preprocess(image, image_size, training=False).numpy())
        except (tf.errors.InvalidArgumentError, ValueError):
            thumbs.append(np.full([image_size, image_size, 3], 0.5, np.float32))
    return np.stack(thumbs)
