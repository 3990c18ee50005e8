"""Makes the arbitrary-style figures beside checkpoints/arbitrary_v1 (bundled model, demo photo,
the six CC0 demo paintings of image_stylization/assets/paintings):

    python bench/make_arbitrary_figures.py

- checkpoints/arbitrary_v1_contact_sheet.jpg: the photo and each painting (top), the photo in
  each painting's style (bottom); the same picture as
  `image_stylization_transform --input_image=image_stylization/assets/astronaut.jpg
  --style_images=image_stylization/assets/paintings --all_styles --tile_size=192
  --output_dir=out --output_format=jpg`.
- checkpoints/arbitrary_v1_blend_strip.jpg: strength 0 -> 1 from the photo's own style to
  "swirls" (top), and the embedding blend from "swirls" to "waves" (bottom).
"""

import os

import numpy as np
from PIL import Image

from image_stylization import arbitrary, demo_image_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "checkpoints")
TILE = 192


def main():
    model = arbitrary.load_arbitrary_model()
    paintings = sorted(arbitrary.demo_paintings())  # folder order, as the CLI reads them
    sheet = arbitrary.contact_sheet(demo_image_path(), paintings, model, tile_size=TILE)
    swirls, waves = arbitrary.demo_paintings()[:2]
    rows = [arbitrary.interpolation_strip(demo_image_path(), swirls, steps=6, model=model,
                                          tile_size=TILE),
            arbitrary.interpolation_strip(demo_image_path(), swirls, waves, steps=6, model=model,
                                          tile_size=TILE)]
    strip = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)), "white")
    strip.paste(rows[0], (0, 0))
    strip.paste(rows[1], (0, rows[0].height))
    for image, name in ((sheet, "arbitrary_v1_contact_sheet.jpg"),
                        (strip, "arbitrary_v1_blend_strip.jpg")):
        path = os.path.join(OUT, name)
        image.save(path, quality=88, optimize=True)
        print(path, image.size, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
