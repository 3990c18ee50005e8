"""Fine-tunes a trained N-style network on new styles (Magenta's `image_stylization_finetune`).

Only the conditional instance normalization parameters (gamma, beta) learn; the convolution
kernels of --checkpoint stay frozen (Sec. 3.4 of the paper: a new style costs 2 x sum(C) numbers).

  image_stylization_finetune --checkpoint=checkpoints/tf_stylize_26 --finetune_mode=append \\
      --style_dataset_file=new_style.tfrecord --content_source=photos/ --train_dir=runs/ft

Takes every flag of image_stylization_train; --num_styles counts the NEW styles. The architecture
(--preset, --alpha) comes from the checkpoint.
"""

from absl import flags

from image_stylization import cli
from image_stylization import image_stylization_train as train_cli

flags.DEFINE_string(
    "checkpoint", None,
    "The trained model: one of our model directories (e.g. <train_dir>/model), a .keras file, a "
    "Magenta checkpoint, or empty for the bundled checkpoints/tf_stylize_26.",
)
flags.DEFINE_enum(
    "finetune_mode", "replace", ["replace", "append"],
    "replace: a fresh gamma/beta table for the new styles only (Magenta). append: keep the "
    "checkpoint's N styles bit-identical and add the new ones (an N+M-style model).",
)

FLAGS = flags.FLAGS


def main(argv):
    config = train_cli.config_from_flags(argv)
    from image_stylization import checkpoint as checkpoint_lib
    from image_stylization import train
    from image_stylization.architecture import architecture_of, weights_of

    checkpoint = FLAGS.checkpoint or None
    explicit = {name: getattr(FLAGS, name) for name in ("preset", "alpha") if FLAGS[name].present}
    if explicit:
        # The checkpoint decides the architecture; explicit flags must agree with it.
        try:
            _, preset, alpha = architecture_of(weights_of(checkpoint_lib.load_model(checkpoint)))
        except checkpoint_lib.CheckpointError as e:
            raise cli.UsageError(f"--checkpoint: {e}") from None
        if explicit.get("preset", preset) != preset or abs(explicit.get("alpha", alpha) - alpha) > 1e-6:
            raise cli.UsageError(
                f"--preset/--alpha {explicit} do not match the checkpoint (preset {preset}, alpha {alpha:g})"
            )
    result = train_cli.run_training(
        lambda: train.finetune(config, checkpoint=checkpoint, mode=FLAGS.finetune_mode)
    )
    print(f"fine-tuned to step {result['step']}; model ({len(result['style_names'])} styles) in "
          f"{result['model_dir']}")


def console_entry_point():
    cli.run(main)


if __name__ == "__main__":
    console_entry_point()
