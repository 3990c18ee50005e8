"""A local web page for blending styles, and the REST API it uses (needs the [app] extra).

  image_stylization_app                                   # http://127.0.0.1:8765
  image_stylization_app --port=9000 --checkpoint=my_styles --max_upload_mb=50

Open the printed address in a browser: drop a photo, pick 2-4 styles, blend them with sliders
(previews while dragging, the full result on release), download the PNG. Drop paintings on the
page to use any painting as a style and blend paintings (the arbitrary-style network, bundled
as arbitrary_v1; one blend takes the model's styles or paintings, not both). Scripts use the
same server: `curl -F image=@photo.jpg -F 'styles={7: 0.5, 19: 0.5}'
http://127.0.0.1:8765/api/stylize -o out.png`. The server listens on loopback only unless --host
says otherwise.
"""

import ipaddress

from absl import flags

from image_stylization import cli

flags.DEFINE_string("host", "127.0.0.1",
                    "Address to listen on. 0.0.0.0 makes the page reachable from other machines.")
flags.DEFINE_integer("port", 8765, "Port to listen on (0: any free port).")
flags.DEFINE_string(
    "checkpoint", None,
    "Model to serve: one of our model directories (model.keras + manifest.json), a .keras file, "
    "or a Magenta TF1 checkpoint (prefix or directory). Default: the bundled 26-style model.",
)
flags.DEFINE_boolean(
    "paintings", True,
    "Offer any painting as a style (drop it on the page; POST /api/paintings) with the "
    "arbitrary-style network. --nopaintings does not load that network.")
flags.DEFINE_string(
    "arbitrary_checkpoint", None,
    "The arbitrary-style model for paintings: a directory written by image_stylization_convert "
    "(manifest kind \"arbitrary\"). Default: the bundled arbitrary_v1.")
flags.DEFINE_float("max_upload_mb", 20.0, "Largest upload (request body) in MB; larger gets 413.")
flags.DEFINE_integer(
    "max_size_limit", 2048,
    "Largest longest side a result may have, in px (about 2.5 GB of memory at 2048 px).")

FLAGS = flags.FLAGS


def check_flags(host, port, max_upload_mb, max_size_limit, paintings=True,
                arbitrary_checkpoint=None):
    if not 0 <= port <= 65535:
        raise cli.UsageError(f"--port must be in 0..65535, got {port}")
    if not max_upload_mb > 0:  # also rejects NaN
        raise cli.UsageError(f"--max_upload_mb must be > 0, got {max_upload_mb}")
    if max_size_limit < 16:
        raise cli.UsageError(f"--max_size_limit must be >= 16, got {max_size_limit}")
    if not host:
        raise cli.UsageError("--host is empty")
    if arbitrary_checkpoint is not None and not paintings:
        raise cli.UsageError("--arbitrary_checkpoint is for paintings; it does not go with "
                             "--nopaintings")


def is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv):
    check_flags(FLAGS.host, FLAGS.port, FLAGS.max_upload_mb, FLAGS.max_size_limit,
                FLAGS.paintings, FLAGS.arbitrary_checkpoint)
    from image_stylization import app

    app.require_app_extra()  # before the model loads: a missing extra is a one-line error
    try:
        sock = app.bind(FLAGS.host, FLAGS.port)
    except OSError as e:
        raise cli.UsageError(
            f"--host/--port: cannot listen on {FLAGS.host}:{FLAGS.port} ({e.strerror or e})"
        ) from None
    print("Loading the models and making the style thumbnails...", flush=True)
    web = app.create_app(checkpoint=FLAGS.checkpoint, max_upload_mb=FLAGS.max_upload_mb,
                         max_size_limit=FLAGS.max_size_limit, paintings=FLAGS.paintings,
                         arbitrary_checkpoint=FLAGS.arbitrary_checkpoint)
    print(f"Serving on {app.url_of(sock)}  (Ctrl-C to stop)", flush=True)
    if not is_loopback(FLAGS.host):
        print(f"Note: --host={FLAGS.host} lets other machines on your network use this server.",
              flush=True)
    app.serve(web, sock)


def console_entry_point():
    cli.run(main)


if __name__ == "__main__":
    console_entry_point()
