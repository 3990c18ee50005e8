"""Makes the six painting-like style images in image_stylization/assets/paintings/.

They are drawn here from seeded random numbers (numpy + Pillow only), so the repository ships
style images that are ours to license (CC0-1.0, see the README beside them) and nothing taken from
../shared/data. Each imitates a look that style transfer papers use (brush strokes in a flow
field, wave bands, stained glass, pointillist dots, cubist facets, geometric abstraction);
none is a copy of an artwork.

    python bench/make_paintings.py            # rewrites the six JPEGs (byte-identical)
"""

import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "image_stylization", "assets", "paintings")
W, H = 384, 384


def _jitter(rng, color, amount):
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in color)


def _stroke_field(img, rng, angle_at, color_at, count, length, width):
    draw = ImageDraw.Draw(img)
    for _ in range(count):
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        a = angle_at(x, y)
        dx, dy = math.cos(a) * length / 2, math.sin(a) * length / 2
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=color_at(x, y), width=width)


def swirls(rng):
    """Night sky of short strokes swirling around a few centres, with glowing discs."""
    img = Image.new("RGB", (W, H), (20, 40, 90))
    centres = [(110, 120, 1.0), (270, 90, -1.0), (200, 260, 1.0)]

    def angle(x, y):
        vx = vy = 0.0
        for cx, cy, s in centres:
            d2 = (x - cx) ** 2 + (y - cy) ** 2 + 400
            vx += -s * (y - cy) / d2
            vy += s * (x - cx) / d2
        return math.atan2(vy, vx + 0.002)

    palette = [(30, 70, 160), (60, 110, 200), (140, 180, 230), (230, 220, 120), (20, 40, 100)]

    def color(x, y):
        return _jitter(rng, palette[rng.integers(len(palette))], 12)

    for length, width, count in ((26, 6, 2500), (16, 4, 4000), (10, 2, 4000)):
        _stroke_field(img, rng, angle, color, count, length, width)
    draw = ImageDraw.Draw(img)
    for cx, cy, r in ((320, 40, 22), (60, 50, 14), (330, 200, 12)):
        for k in range(6, 0, -1):
            draw.ellipse([cx - r * k / 3, cy - r * k / 3, cx + r * k / 3, cy + r * k / 3],
                         outline=(250, 230 - 12 * k, 90), width=3)
    # A dark cypress-like flame in the foreground.
    pts = [(40 + 30 * math.sin(t / 6.0) * (1 - t / 40), H - t * 9) for t in range(40)]
    draw.polygon([(10, H)] + pts + [(90, H)], fill=(25, 35, 20))
    return img.filter(ImageFilter.SMOOTH)


def waves(rng):
    """Woodblock-like bands of blue waves with white foam crests on a pale sky."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    sky = np.stack([235 - 0.1 * y, 225 - 0.1 * y, 200 - 0.05 * y], -1)
    img = Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for band in range(9):
        base = 120 + band * 30
        amp, freq, phase = 18 + 4 * band, 0.02 + 0.004 * rng.random(), rng.uniform(0, 6.28)
        crest = [(xx, base - amp * abs(math.sin(freq * xx + phase))) for xx in range(0, W + 4, 4)]
        blue = (10 + 8 * band, 40 + 10 * band, 90 + 12 * band)
        draw.polygon(crest + [(W, H), (0, H)], fill=blue)
        for xx, yy in crest[::2]:  # foam claws
            for k in range(3):
                r = rng.uniform(3, 7)
                draw.arc([xx - r, yy - r - 2 * k, xx + r, yy + r - 2 * k], 180, 330,
                         fill=(245, 245, 235), width=2)
        draw.line(crest, fill=(15, 25, 60), width=2)
    draw.ellipse([290, 40, 340, 90], fill=(200, 60, 50))
    return img


def stained_glass(rng):
    """Voronoi cells in saturated glass colours with dark leading."""
    n = 60
    pts = rng.uniform(0, [W, H], (n, 2))
    palette = np.array([(180, 20, 40), (20, 70, 160), (240, 190, 30), (30, 130, 70),
                        (120, 40, 140), (230, 110, 20), (60, 160, 200)], np.float32)
    colors = palette[rng.integers(len(palette), size=n)] + rng.normal(0, 15, (n, 3))
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    d = (x[..., None] - pts[:, 0]) ** 2 + (y[..., None] - pts[:, 1]) ** 2
    order = np.argsort(d, axis=-1)
    d1 = np.take_along_axis(d, order[..., :1], -1)[..., 0]
    d2 = np.take_along_axis(d, order[..., 1:2], -1)[..., 0]
    img = colors[order[..., 0]]
    shade = 0.75 + 0.25 * np.cos(x / 17.0) * np.sin(y / 23.0)  # uneven glass
    img = img * shade[..., None]
    edge = (np.sqrt(d2) - np.sqrt(d1)) < 5.0
    img[edge] = (25, 20, 20)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def pointillism(rng):
    """A landscape (sky, sun, hills, field) made of small dots of pure colour."""
    img = Image.new("RGB", (W, H), (245, 240, 225))
    draw = ImageDraw.Draw(img)

    def scene(x, y):
        if (x - 280) ** 2 + (y - 90) ** 2 < 40 ** 2:
            return (250, 180, 40)
        hill = 210 + 30 * math.sin(x / 60.0)
        if y < hill:
            return (90, 150, 220) if rng.random() < 0.7 else (240, 240, 250)
        if y < hill + 60:
            return (60, 130, 60) if rng.random() < 0.6 else (200, 190, 60)
        return (220, 120, 40) if rng.random() < 0.5 else (120, 160, 50)

    for _ in range(14000):
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        r = rng.uniform(1.5, 3.2)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=_jitter(rng, scene(x, y), 20))
    return img


def cubist(rng):
    """Overlapping translucent facets in ochre, umber and grey with dark outlines."""
    palette = [(180, 140, 80), (120, 90, 60), (160, 160, 150), (90, 80, 70), (210, 190, 140),
               (70, 90, 100)]
    img = Image.new("RGB", (W, H), (150, 130, 100))
    for _ in range(70):
        layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        k = int(rng.integers(3, 6))
        angles = np.sort(rng.uniform(0, 2 * math.pi, k))
        radius = rng.uniform(30, 110)
        poly = [(cx + radius * math.cos(a) * rng.uniform(0.6, 1.2),
                 cy + radius * math.sin(a) * rng.uniform(0.6, 1.2)) for a in angles]
        color = _jitter(rng, palette[rng.integers(len(palette))], 10)
        draw.polygon(poly, fill=color + (150,), outline=(30, 25, 20, 255), width=3)
        img = Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")
    # Hatching, as pencil lines over paint.
    draw = ImageDraw.Draw(img)
    for _ in range(300):
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        draw.line([(x, y), (x + 12, y - 12)], fill=(60, 50, 40), width=1)
    return img


def geometric(rng):
    """Abstraction on a cream ground: circles, crossing lines, triangles in primary colours."""
    img = Image.new("RGB", (W, H), (238, 228, 205))
    draw = ImageDraw.Draw(img)
    colors = [(200, 30, 40), (30, 60, 160), (240, 190, 20), (20, 20, 20), (40, 140, 90)]
    for _ in range(14):
        cx, cy, r = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(10, 70)
        for k, rr in enumerate(np.linspace(r, r / 4, 3)):
            draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr],
                         fill=colors[(k + int(cx)) % len(colors)])
    for _ in range(25):
        x0, y0, x1, y1 = rng.uniform(0, W, 4)
        draw.line([(x0, y0), (x1, y1)], fill=colors[3], width=int(rng.integers(1, 5)))
    for _ in range(8):
        p = rng.uniform(0, W, (3, 2))
        draw.polygon([tuple(q) for q in p], outline=colors[int(rng.integers(len(colors)))], width=3)
    return img


PAINTINGS = {"swirls": swirls, "waves": waves, "stained_glass": stained_glass,
             "pointillism": pointillism, "cubist": cubist, "geometric": geometric}


def main():
    os.makedirs(OUT, exist_ok=True)
    for seed, (name, make) in enumerate(PAINTINGS.items()):
        img = make(np.random.default_rng(seed))
        path = os.path.join(OUT, f"{name}.jpg")
        img.save(path, format="JPEG", quality=90, optimize=True)
        print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
