"""Why the web app does not mix the N-style model's named styles with paintings in one blend:
how far apart the two networks render "the same" style.

    python bench/two_networks_gap.py       # needs ../shared/data (the paintings of six styles)

For six of the bundled 26-style model's styles whose painting is in ../shared/data/styles, on
the demo photo at 256 px: the named style (N-style network) against the arbitrary-style network
given that painting, and given the named style's own pastiche of another photo (what a mix
would have to use for a style whose painting is not at hand); against the distance between two
different named styles. Distances are mean |a - b| over pixels and channels, in 0-255 levels.
If "the same style" through the other network is about as far as another style, a blend of
both kinds would jump visibly as soon as a painting joins it, whatever its weight.
"""

import glob
import itertools
import os
import sys

import numpy as np

from image_stylization import image_io
from image_stylization.arbitrary import load_arbitrary_model, predict_style
from image_stylization.stylize import demo_image_path, load_model, stylize

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
PAINTINGS = {19: "van_gogh_starry_night.jpg", 24: "hokusai_great_wave.jpg",
             12: "delaunay_city_of_paris.jpg", 2: "kandinsky_black_spot.jpg",
             5: "kandinsky_composition_vii.jpg", 23: "picabia_udnie.jpg"}


def distance(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean() * 255)


def main():
    styles_dir = os.path.join(DATA, "styles")
    eval_photos = sorted(glob.glob(os.path.join(DATA, "eval", "*")))
    if not os.path.isdir(styles_dir) or not eval_photos:
        sys.exit(f"needs {os.path.normpath(DATA)} (styles/ and eval/)")
    model, arbitrary_model = load_model(), load_arbitrary_model()
    names = model.style_names
    photo = image_io.resize_max(image_io.load_image(demo_image_path()), 256)
    other_photo = image_io.resize_max(image_io.load_image(eval_photos[0]), 256)
    named = {i: stylize(photo, i, model=model) for i in PAINTINGS}
    via_painting, via_pastiche = [], []
    print(f"{'named style':<34}{'vs arbitrary(painting)':>24}{'vs arbitrary(pastiche)':>24}")
    for i, filename in PAINTINGS.items():
        real = stylize(photo, style_image=os.path.join(styles_dir, filename),
                       model=arbitrary_model, max_size=None)
        pastiche = stylize(other_photo, i, model=model)
        rebuilt = stylize(photo, style_embedding=predict_style(pastiche, arbitrary_model),
                          model=arbitrary_model, max_size=None)
        via_painting.append(distance(named[i], real))
        via_pastiche.append(distance(named[i], rebuilt))
        print(f"{f'{i} {names[i]}'[:33]:<34}{via_painting[-1]:>24.1f}{via_pastiche[-1]:>24.1f}")
    between = [distance(named[i], named[j]) for i, j in itertools.combinations(PAINTINGS, 2)]
    print(f"medians: named i vs arbitrary(painting i) {np.median(via_painting):.1f}, vs "
          f"arbitrary(pastiche of i) {np.median(via_pastiche):.1f}; named i vs named j "
          f"{np.median(between):.1f} (closest pair {min(between):.1f}); photo vs named i "
          f"{np.median([distance(photo, named[i]) for i in PAINTINGS]):.1f}")


if __name__ == "__main__":
    main()
