"""Training and fine-tuning of the N-style network (Magenta's `image_stylization_train` and
`image_stylization_finetune`), a TF2 custom loop for `tf.distribute` around one Keras step.

    from image_stylization import train
    result = train.train(train.TrainConfig(train_dir=..., style_dataset_file=..., content_source=...))

The absl entry points only turn flags into a `TrainConfig`. The package:
- `config`: `TrainConfig`, flag checks, and the loss set-up the style dataset fixes (loss network,
  pooling, VGG weights by sha256, loss weights, style coefficients), checked before anything heavy
  is built;
- `trainer`: `StyleTrainer`, the `keras.Model` whose `train_step` is the one training step
  (`train`, `finetune`, `evaluate`, `bench/train_step.py` and `trainer.fit` all run it);
- `loop`: the resumable distributed loop (iterator, checkpoints, restore fallback, signals,
  progress, summaries, the final model);
- `summaries`: TensorBoard records without the tensorboard package;
- `finetuning`: `finetune()`, new styles on a trained network's frozen kernels.
"""

from image_stylization.errors import ConfigError, DataError, TrainingError  # noqa: F401  (re-exported)
from image_stylization.train.config import (  # noqa: F401
    FINETUNE_MODES,
    MIN_IMAGE_SIZE,
    STRATEGIES,
    LossSetup,
    TrainConfig,
    loss_setup,
    read_style,
)
from image_stylization.train.finetuning import finetune  # noqa: F401
from image_stylization.train.loop import MODEL_SUBDIR, TrainingInterrupted, make_strategy  # noqa: F401
from image_stylization.train.summaries import summary_images, summary_scalar  # noqa: F401
from image_stylization.train.trainer import StyleTrainer, make_optimizer  # noqa: F401


def train(config, strategy=None, log=None):
    """Trains an N-style network from scratch (Magenta's `image_stylization_train`).

    Returns a dict with `step`, `model_dir` (the ready-to-use model), `checkpoint` (the last
    training checkpoint), `metrics` (the last step's losses), `history` (every step's total loss
    in this call), `model` (the live transformer) and `trainer`.
    Raises ConfigError/DataError (one line) for bad flags or data, TrainingInterrupted after a
    SIGTERM/SIGINT checkpoint, TrainingError when the run cannot go on.
    """
    import numpy as np

    from image_stylization import data
    from image_stylization.model import build_transformer
    from image_stylization.train import config as config_lib
    from image_stylization.train import loop

    c = config
    config_lib.check(c)
    # Before any TF op: MultiWorkerMirroredStrategy must configure collectives at startup.
    strategy = strategy or loop.make_strategy(c.strategy, c.tpu)
    style = config_lib.read_style(c.style_dataset_file)
    setup = config_lib.train_loss_setup(c, style)
    data.describe_source(c.content_source)  # a bad source fails here, not in the input pipeline
    return loop.run(
        c, strategy=strategy, log=log, style=style, setup=setup,
        build_model=lambda: build_transformer(style.num_styles, c.preset, c.alpha),
        style_index=np.arange(style.num_styles), style_names=list(style.names),
        recipe=config_lib.recipe(c, setup, style, mode="train"),
    )
