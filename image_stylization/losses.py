"""Content, style and total variation losses (Magenta's `learning.py`), per example.

Every loss returns a [B] float32 vector (one value per example, not yet averaged over the batch),
so a trainer can reduce it with `tf.nn.compute_average_loss` under a distribution strategy. Inputs
may be float16/bfloat16 (mixed precision): everything is computed in float32.

Normalizations, as Magenta's (and how they relate to the paper's 1/U_l):
- Gram matrix G = F^T F / (H*W): divided by the number of spatial positions, not by C.
- Content loss per layer: mean over H, W, C of (phi(p) - phi(c))^2, i.e. ||.||^2 / U_l with
  U_l = H*W*C, which is exactly the paper's eq. (3).
- Style loss per layer: mean over the C x C entries of (G(p) - G(s))^2, i.e. ||.||_F^2 / C^2.
  With the raw Gram F^T F that is ||G_raw(p) - G_raw(s)||_F^2 / (H*W*C)^2 = eq. (2)'s term / U_l:
  an extra 1/U_l, constant per layer at a fixed training image size, absorbed by the layer weights.
"""

import ast
import math

import tensorflow as tf

from image_stylization import vgg

DEFAULT_CONTENT_WEIGHTS = {"conv3": 1.0}
DEFAULT_STYLE_WEIGHTS = {"conv1": 1e-4, "conv2": 1e-4, "conv3": 1e-4, "conv4": 1e-4}


def gram_matrix(features):
    """[B, H, W, C] -> [B, C, C] float32, G = F^T F / (H*W) per example."""
    f = tf.cast(features, tf.float32)
    shape = tf.shape(f)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    f = tf.reshape(f, tf.stack([b, h * w, c]))
    return _self_product(f) / tf.cast(h * w, tf.float32)


@tf.custom_gradient
def _self_product(f):
    """F^T F of f [B, N, C]. TF's own gradient treats the two operands as different tensors and
    takes two matmuls and their sum; G is symmetric in F, so one matmul does: F (dG + dG^T)."""

    def grad(dg):
        return tf.matmul(f, dg + tf.linalg.matrix_transpose(dg))

    return tf.matmul(f, f, transpose_a=True), grad


def _lookup(features, name, what):
    try:
        return features[name]
    except KeyError:
        raise ValueError(
            f"{what} has no end point {name!r} (it has: {', '.join(sorted(features))}); build the "
            f"loss network with every end point the loss weights name"
        ) from None


def content_loss(pastiche_features, content_features, weights):
    """Sum over layers of w_l * mean_{H,W,C}((phi_l(p) - phi_l(c))^2), per example.

    Returns `(per_example [B], details)`; details maps `content_loss/{name}` to the unweighted
    per-layer loss and `weighted_content_loss/{name}` to it times w_l (Magenta's summary names).
    `weights` is keyed by the canonical end point names the feature dicts use (see
    `parse_loss_weights`).
    """
    total = None
    details = {}
    for name, weight in weights.items():
        p = tf.cast(_lookup(pastiche_features, name, "pastiche_features"), tf.float32)
        c = tf.cast(_lookup(content_features, name, "content_features"), tf.float32)
        layer = tf.reduce_mean(tf.square(p - c), axis=[1, 2, 3])
        weighted = float(weight) * layer
        details[f"content_loss/{name}"] = layer
        details[f"weighted_content_loss/{name}"] = weighted
        total = weighted if total is None else total + weighted
    if total is None:
        raise ValueError("content loss weights are empty")
    return total, details


def style_loss(pastiche_features, target_grams, weights, coefficients=None):
    """Sum over layers of coefficient_b * w_l * mean_{C,C}((G_l(p) - G_l(s))^2), per example.

    `target_grams` maps each end point to the style Grams aligned with the batch, [B, C, C]
    (gather the dataset's [N, C, C] array by each example's style label). `coefficients` is an
    optional per-example [B] style coefficient (Magenta's `style_coefficients[label]`).
    Returns `(per_example [B], details)` with `style_loss/{name}` (unweighted, no coefficient) and
    `weighted_style_loss/{name}`.
    """
    total = None
    details = {}
    coeff = None if coefficients is None else tf.cast(coefficients, tf.float32)
    for name, weight in weights.items():
        g = gram_matrix(_lookup(pastiche_features, name, "pastiche_features"))
        target = tf.cast(_lookup(target_grams, name, "target_grams"), tf.float32)
        layer = tf.reduce_mean(tf.square(g - target), axis=[1, 2])
        weighted = float(weight) * layer
        if coeff is not None:
            weighted = weighted * coeff
        details[f"style_loss/{name}"] = layer
        details[f"weighted_style_loss/{name}"] = weighted
        total = weighted if total is None else total + weighted
    if total is None:
        raise ValueError("style loss weights are empty")
    return total, details


def total_variation_loss(images, weight):
    """Magenta's total variation term, per example: weight * (l2(dy)/((H-1)*W*C) + l2(dx)/(H*(W-1)*C)).

    l2 is `tf.nn.l2_loss` (sum of squares / 2), as in Magenta's `learning.total_variation_loss`,
    whose batch mean equals the mean of this vector. The paper and Magenta's training do not use
    it (weight 0 by default in our trainer).
    """
    x = tf.cast(images, tf.float32)
    dy = x[:, 1:, :, :] - x[:, :-1, :, :]
    dx = x[:, :, 1:, :] - x[:, :, :-1, :]
    # 0.5 * mean(d^2) == l2_loss(d) / count, per example.
    return float(weight) * 0.5 * (
        tf.reduce_mean(tf.square(dy), axis=[1, 2, 3]) + tf.reduce_mean(tf.square(dx), axis=[1, 2, 3])
    )


def total_loss(pastiche_features, content_features, target_grams, content_weights, style_weights,
               coefficients=None, stylized=None, total_variation_weight=0.0):
    """Magenta's `learning.total_loss` on precomputed loss-network features, per example.

    content + style (+ total variation of `stylized` when its weight is > 0); either weight dict
    may be empty. Returns `(per_example [B], details)`: the per-layer entries of `content_loss`
    and `style_loss` plus the terms `content_loss`, `style_loss`, `total_variation_loss` (those
    that are on) and `total_loss`, all [B].
    """
    total = None
    details = {}
    terms = []
    if content_weights:
        terms.append(("content_loss", content_loss(pastiche_features, content_features, content_weights)))
    if style_weights:
        terms.append(("style_loss", style_loss(pastiche_features, target_grams, style_weights, coefficients)))
    if total_variation_weight:
        if stylized is None:
            raise ValueError("a total variation weight needs the stylized images")
        terms.append(("total_variation_loss", (total_variation_loss(stylized, total_variation_weight), {})))
    if not terms:
        raise ValueError("every loss weight is empty: nothing to minimize")
    for name, (value, layer_details) in terms:
        details.update(layer_details)
        details[name] = value
        total = value if total is None else total + value
    details["total_loss"] = total
    return total, details


def parse_loss_weights(value, network):
    """A dict, or Magenta's flag syntax '{"vgg_16/conv3": 1.0}', -> {canonical end point: float}.

    Keys may be spelled any way `vgg.normalize_end_point` accepts. The string is parsed with
    `ast.literal_eval` (never `eval`). Weights must be finite and >= 0; two keys naming the same
    layer are an error.
    """
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise ValueError(
                f"cannot parse loss weights {value!r}; expected a dict such as "
                f"'{{\"vgg_16/conv3\": 1.0}}'"
            ) from None
    if not isinstance(value, dict):
        raise ValueError(f"loss weights must be a dict of end point -> weight, got {value!r}")
    out = {}
    for key, weight in value.items():
        name = vgg.normalize_end_point(key, network)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ValueError(f"loss weight for {key!r} must be a number, got {weight!r}")
        weight = float(weight)
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"loss weight for {key!r} must be finite and >= 0, got {weight}")
        if name in out:
            raise ValueError(f"loss weights name layer {name} twice (as {key!r} and another key)")
        out[name] = weight
    return out


def loss_end_points(network, *weight_dicts):
    """Canonical end points needed by the given weight dicts, ordered by depth."""
    names = set()
    for weights in weight_dicts:
        names.update(weights)
    return vgg.sort_end_points(names, network)
