"""What the decoder accepts and how large it decodes (issue 28): only JPEG, PNG, WebP, BMP, TIFF and GIF are opened
(never EPS/PostScript); a large photo is decoded at most MAX_SIDE on its longer side (a JPEG by libjpeg at reduced
scale) with its original upright size kept, and decoding a 25 MP JPEG never holds its full-size pixels."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion2stage.errors import ImageReadError
from fashion2stage.images import MAX_SIDE, load_image, load_photo, load_photo_bytes

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(sorted(EXAMPLES.glob("*.jpg"))[0]).convert("RGB")


@pytest.mark.parametrize("fmt, suffix", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"),
                                         ("TIFF", "tif"), ("GIF", "gif")])
def test_the_accepted_formats_decode(tmp_path, photo, fmt, suffix):
    path = tmp_path / f"x.{suffix}"
    photo.resize((40, 60)).save(path, fmt)
    assert load_image(path).shape == (60, 40, 3)


@pytest.mark.parametrize("fmt, suffix, message", [
    ("EPS", "eps", "PostScript/EPS is not accepted"),  # PIL would hand it to Ghostscript where installed
    ("PPM", "ppm", "not an image"), ("ICO", "ico", "not an image"), ("TGA", "tga", "not an image"),
])
def test_other_formats_are_refused_with_one_line(tmp_path, photo, fmt, suffix, message):
    path = tmp_path / f"x.{suffix}"
    photo.resize((40, 60)).save(path, fmt)
    for load in (lambda: load_image(path), lambda: load_photo_bytes(path.read_bytes(), path.name)):
        with pytest.raises(ImageReadError, match=message) as e:
            load()
        assert "\n" not in str(e.value) and path.name in str(e.value)


def test_a_file_name_with_a_nul_character_is_an_error_not_a_crash(tmp_path):
    with pytest.raises(ImageReadError, match="NUL"):
        load_photo(str(tmp_path / "a\0b.jpg"))


def test_a_large_jpeg_is_decoded_at_reduced_scale_with_its_original_size(tmp_path, photo):
    big = photo.resize((2200, 3344), Image.LANCZOS)
    path = tmp_path / "big.jpg"
    big.save(path, quality=95)
    got = load_photo(path)
    assert (got.width, got.height) == (2200, 3344) and got.pixels.shape == (MAX_SIDE, round(2200 * MAX_SIDE / 3344), 3)
    reference = np.asarray(big.resize(got.pixels.shape[1::-1], Image.LANCZOS), dtype=np.float64)
    assert np.abs(got.pixels - reference).mean() < 3.0  # the same picture, not a crop or a shifted one
    small = tmp_path / "small.jpg"
    photo.save(small, quality=95)
    assert load_photo(small).pixels.shape == load_image(small).shape  # under MAX_SIDE: untouched
    np.testing.assert_array_equal(load_photo(small).pixels, load_image(small))


def test_large_photos_of_other_modes_and_orientations(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 1800 wide, shown upright 1200 wide
    big = photo.resize((1800, 1200))
    big.save(tmp_path / "r.jpg", exif=exif, quality=90)
    r = load_photo(tmp_path / "r.jpg")
    assert (r.width, r.height) == (1200, 1800) and r.pixels.shape == (MAX_SIDE, round(1200 * MAX_SIDE / 1800), 3)
    Image.new("RGBA", (1800, 1200), (10, 20, 30, 0)).save(tmp_path / "a.png", compress_level=1)
    a = load_photo(tmp_path / "a.png")  # fully transparent: white
    assert (a.width, a.height) == (1800, 1200) and a.pixels.shape[1] == MAX_SIDE and a.pixels.min() == 255
    palette = Image.new("P", (1800, 1200), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.save(tmp_path / "p.gif")
    g = load_photo(tmp_path / "p.gif")
    assert (g.width, g.height) == (1800, 1200) and g.pixels.shape[1] == MAX_SIDE and g.pixels[5, 5].tolist() == [0, 255, 0]
    thin = load_photo_bytes(_png(Image.new("RGB", (20000, 1), (9, 9, 9))), "thin.png")
    assert (thin.width, thin.height) == (20000, 1) and thin.pixels.shape == (1, MAX_SIDE, 3)


def _png(im) -> bytes:
    import io
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


PEAK = """
import resource, sys
from fashion2stage.images import load_photo
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
photo = load_photo(sys.argv[1])
print(photo.pixels.shape, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_decoding_a_25_mp_jpeg_never_holds_its_full_size_pixels(tmp_path, photo):
    path = tmp_path / "25mp.jpg"
    photo.resize((5000, 5000)).save(path, quality=90)
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, cwd=root,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, check=True).stdout.split(")")
    grew_mb = int(out[1])
    # a full decode holds 100 MB in PIL alone (4 bytes per RGB pixel) and measured 240 MB; this one measured 51
    assert out[0] == f"({MAX_SIDE}, {MAX_SIDE}, 3" and grew_mb < 80, out
