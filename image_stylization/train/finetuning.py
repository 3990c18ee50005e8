"""Fine-tuning a trained network on new styles (Magenta's `image_stylization_finetune`, paper
Sec. 3.4): the convolution kernels are copied and frozen, only the conditional instance norm
tables (gamma, beta) learn.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from image_stylization import checkpoint as checkpoint_lib
from image_stylization import data
from image_stylization.architecture import architecture_of, weights_of
from image_stylization.errors import ConfigError
from image_stylization.model import build_transformer, conv_layers, norm_layers, num_styles_of
from image_stylization.train import config as config_lib
from image_stylization.train import loop


def finetune(config, checkpoint=None, mode="replace", strategy=None, log=None):
    """Fine-tunes a trained network on new styles.

    `checkpoint`: ours, the bundled model when None, or a Magenta checkpoint.
    mode "replace": a fresh [M, C] table per layer (gamma 1, beta 0) for the M new styles, as
    Magenta. mode "append": the old N rows are kept bit-identical (their gradients are masked to
    zero, so Adam never moves them) and M new rows learn: one N+M-style model.
    `config.preset`/`config.alpha` are taken from the checkpoint. Returns what `train` returns.
    """
    c = config
    if mode not in config_lib.FINETUNE_MODES:
        raise ConfigError(f"--finetune_mode must be one of {', '.join(config_lib.FINETUNE_MODES)}, got {mode!r}")
    config_lib.check(c)
    strategy = strategy or loop.make_strategy(c.strategy, c.tpu)  # before any TF op (see train)
    style = config_lib.read_style(c.style_dataset_file)
    try:
        base = checkpoint_lib.load_model(checkpoint)
        _, preset, alpha = architecture_of(weights_of(base))
    except checkpoint_lib.CheckpointError as e:
        raise ConfigError(f"--checkpoint: {e}") from None
    c = dataclasses.replace(c, preset=preset, alpha=alpha)
    config_lib.check(c)
    setup = config_lib.train_loss_setup(c, style)
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

    def norm_variables(model):
        return [v for l in norm_layers(model) for v in (l.beta, l.gamma)]

    def row_masks(model):
        if mode != "append":
            return {}
        row_mask = np.concatenate([np.zeros([n_old, 1], np.float32), np.ones([m_new, 1], np.float32)])
        return {v.path: tf.constant(row_mask) for v in norm_variables(model)}

    base_source = checkpoint if checkpoint else "bundled:" + os.path.basename(checkpoint_lib.bundled_checkpoint_dir())
    recipe = config_lib.recipe(c, setup, style, mode=f"finetune_{mode}", base_checkpoint=str(base_source),
                               base_num_styles=n_old)
    offset = n_old if mode == "append" else 0
    return loop.run(
        c, strategy=strategy, log=log, style=style, setup=setup, build_model=build,
        style_index=np.arange(m_new) + offset, style_names=names, recipe=recipe,
        select_variables=norm_variables, row_masks=row_masks,
    )
