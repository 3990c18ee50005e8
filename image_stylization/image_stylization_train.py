"""Trains an N-style transfer network (Dumoulin et al. 2017; Magenta's `image_stylization_train`).

  image_stylization_train --train_dir=runs/paper --style_dataset_file=styles.tfrecord \\
      --content_source=tfds:imagenet2012 --tfds_manual_dir=/data/ilsvrc2012

Rerunning the same command resumes from the last checkpoint in --train_dir. The ready-to-use model
is written to <train_dir>/model at the end. See image_stylization.train.
"""

import sys

from absl import flags

from image_stylization import cli

# Flags named as Magenta's where Magenta has them.
flags.DEFINE_string("train_dir", None, "Directory for checkpoints, TensorBoard events and the final model.")
flags.DEFINE_string("style_dataset_file", None, "Style dataset (TFRecord) from image_stylization_create_dataset.")
flags.DEFINE_integer("num_styles", None, "Number of styles; checked against the style dataset (default: the dataset's).")
flags.DEFINE_integer("train_steps", 40000, "Number of training steps.")
flags.DEFINE_integer("batch_size", 16, "Global batch size (content images per step).")
flags.DEFINE_integer("image_size", 256, "Size of the square content crops.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (beta_1 0.9, beta_2 0.999, epsilon 1e-8).")
flags.DEFINE_string("content_weights", None,
                    "Content loss weights per end point, e.g. '{\"vgg_16/conv3\": 1.0}' (the default).")
flags.DEFINE_string("style_weights", None,
                    "Style loss weights per end point; default 1e-4 on conv1..conv4, as Magenta.")
flags.DEFINE_string("style_coefficients", None, "Per-style multipliers of the style weights, e.g. '[1.0, 2.0]'.")
flags.DEFINE_float("clip_gradient_norm", 0.0, "Clip each gradient tensor to this norm (slim's per-tensor clipping); 0 = off.")
flags.DEFINE_float("total_variation_weight", 0.0, "Total variation loss weight (Magenta's training uses none).")
flags.DEFINE_float("alpha", 1.0, "Width multiplier of the network.")
flags.DEFINE_enum("preset", "paper", ["paper", "android_26"], "Network architecture.")
flags.DEFINE_string(
    "content_source", None,
    "Content photos: a folder (recursive) or glob of images; TFRecords with image/encoded "
    "(a directory of train-* shards, a glob, or tfrecord:PATH); or tfds:imagenet2012[:split].",
)
flags.DEFINE_string("imagenet_data_dir", None, "Magenta's flag: a directory of inception train-* TFRecords "
                    "(same as --content_source=tfrecord:DIR).")
flags.DEFINE_string("tfds_data_dir", None, "TensorFlow Datasets data_dir for tfds: sources.")
flags.DEFINE_string("tfds_manual_dir", None, "Folder with ILSVRC2012_img_train.tar (tfds prepares imagenet2012 from it).")
flags.DEFINE_enum("loss_network", None, ["vgg16", "vgg19"], "Loss network; must be the style dataset's (default).")
flags.DEFINE_string("vgg_weights", None, "VGG weights file (default: the one the style dataset was made with).")
flags.DEFINE_enum("vgg_pooling", None, ["avg", "max"], "VGG pooling; must be the style dataset's (default).")
flags.DEFINE_integer("seed", 0, "Seed of the initial weights, crops, file order and style labels.")
flags.DEFINE_integer("save_interval_steps", 500, "Checkpoint every this many steps (and on SIGTERM/SIGINT).")
flags.DEFINE_integer("summary_interval_steps", 100, "TensorBoard scalars every this many steps (images 10x rarer).")
flags.DEFINE_integer("keep_checkpoints", 3, "Number of training checkpoints kept in --train_dir.")
flags.DEFINE_string("tpu", None, "TPU to train on: 'local' on a TPU VM, or a TPU name / grpc:// address.")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                  "Distribution: default (all GPUs if several), mirrored, multi_worker (TF_CONFIG).")
flags.DEFINE_boolean(
    "mixed_precision", False,
    "bfloat16 compute on TPU and CPU (transformer and VGG loss network; about 2x the steps/s on a CPU "
    "with AMX/AVX512_BF16, slower on CPUs without them), float16 with loss scaling on GPU.")
flags.DEFINE_boolean(
    "jit_compile", False,
    "Compile the whole forward and backward pass with XLA. For GPU/TPU; on CPU it is slower than the "
    "default (oneDNN's convolutions beat XLA's) and its first step takes ~3x longer.")
flags.DEFINE_integer("shuffle_buffer", 256, "Shuffle buffer of serialized examples (TFRecord and tfds sources).")

FLAGS = flags.FLAGS


def config_from_flags(argv):
    from image_stylization import train

    content_source = FLAGS.content_source
    if FLAGS.imagenet_data_dir:
        if content_source:
            raise cli.UsageError("give --content_source or --imagenet_data_dir, not both")
        content_source = "tfrecord:" + FLAGS.imagenet_data_dir
    return train.TrainConfig(
        train_dir=cli.require(FLAGS.train_dir, "train_dir"),
        style_dataset_file=cli.require(FLAGS.style_dataset_file, "style_dataset_file"),
        content_source=cli.require(content_source, "content_source"),
        num_styles=FLAGS.num_styles,
        train_steps=FLAGS.train_steps,
        batch_size=FLAGS.batch_size,
        image_size=FLAGS.image_size,
        learning_rate=FLAGS.learning_rate,
        content_weights=FLAGS.content_weights,
        style_weights=FLAGS.style_weights,
        style_coefficients=FLAGS.style_coefficients,
        clip_gradient_norm=FLAGS.clip_gradient_norm,
        total_variation_weight=FLAGS.total_variation_weight,
        alpha=FLAGS.alpha,
        preset=FLAGS.preset,
        loss_network=FLAGS.loss_network,
        vgg_weights=FLAGS.vgg_weights,
        vgg_pooling=FLAGS.vgg_pooling,
        seed=FLAGS.seed,
        save_interval_steps=FLAGS.save_interval_steps,
        summary_interval_steps=FLAGS.summary_interval_steps,
        keep_checkpoints=FLAGS.keep_checkpoints,
        strategy=FLAGS.strategy,
        tpu=FLAGS.tpu,
        mixed_precision=FLAGS.mixed_precision,
        jit_compile=FLAGS.jit_compile,
        shuffle_buffer=FLAGS.shuffle_buffer,
        tfds_data_dir=FLAGS.tfds_data_dir,
        tfds_manual_dir=FLAGS.tfds_manual_dir,
        command=" ".join([sys.argv[0].rsplit("/", 1)[-1]] + sys.argv[1:]),
    )


def run_training(fn):
    """Runs `fn()`; an interrupted run exits 128+signal, a diverged one exits 1, with one line."""
    from image_stylization import train

    try:
        return fn()
    except train.TrainingInterrupted as e:
        print(f"{sys.argv[0].rsplit('/', 1)[-1]}: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except train.TrainingError as e:
        print(f"{sys.argv[0].rsplit('/', 1)[-1]}: error: {e}", file=sys.stderr)
        sys.exit(1)


def main(argv):
    config = config_from_flags(argv)
    from image_stylization import train

    result = run_training(lambda: train.train(config))
    print(f"trained to step {result['step']}; model in {result['model_dir']}")


def console_entry_point():
    cli.run(main)


if __name__ == "__main__":
    console_entry_point()
