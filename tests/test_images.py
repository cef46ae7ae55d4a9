import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fashion2stage import images
from fashion2stage.errors import ImageReadError, ImageTooLargeError
from fashion2stage.images import image_size, load_image, load_image_bytes


def save(tmp_path, im, name, **kw):
    p = tmp_path / name
    im.save(p, **kw)
    return p


def check_rgb(a, shape):
    assert a.dtype == np.uint8 and a.shape == shape and a.flags.c_contiguous


def test_rgb_png_is_exact(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = load_image(save(tmp_path, Image.fromarray(a), "x.png"))
    check_rgb(out, (5, 7, 3))
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("mode, value, fmt, expect", [
    ("L", 100, "png", (100, 100, 100)),
    ("1", 1, "png", (255, 255, 255)),
    ("CMYK", (0, 255, 255, 0), "tiff", (255, 0, 0)),     # full magenta + yellow = red
    ("I;16", 65535, "png", (255, 255, 255)),
    ("I;16", 257 * 40, "png", (40, 40, 40)),
    ("I", 257 * 128, "tiff", (128, 128, 128)),           # 16-bit range held in 32-bit ints
    ("I", 77, "tiff", (77, 77, 77)),                     # 8-bit range held in 32-bit ints stays as it is
    ("F", 0.5, "tiff", (128, 128, 128)),                 # 0..1 floats
    ("F", 300.0, "tiff", (255, 255, 255)),               # out-of-range floats clipped
])
def test_every_mode_becomes_rgb_uint8(tmp_path, mode, value, fmt, expect):
    p = save(tmp_path, Image.new(mode, (4, 3), value), f"x.{fmt}")
    out = load_image(p)
    check_rgb(out, (3, 4, 3))
    assert tuple(out[1, 2]) == expect


def test_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (255, 0, 0, 255))
    out = load_image(save(tmp_path, rgba, "a.png"))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [255, 0, 0]
    la = Image.new("LA", (1, 1), (0, 128))  # black at half opacity over white
    assert load_image(save(tmp_path, la, "la.png"))[0, 0].tolist() == [127, 127, 127]


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (2, 1), 0)
    p.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    p.putpixel((1, 0), 1)
    path = save(tmp_path, p, "p.png", transparency=0)  # palette entry 0 (blue) is transparent
    out = load_image(path)
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [0, 255, 0]
    assert load_image(save(tmp_path, p, "opaque.png"))[0, 0].tolist() == [0, 0, 255]


def test_exif_rotation_is_applied_to_pixels_and_size(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)  # stored: red left half, blue right half
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the stored left edge becomes the top
    path = save(tmp_path, Image.fromarray(a), "r.jpg", exif=exif, quality=95)
    assert Image.open(path).size == (40, 20)
    assert image_size(path) == (20, 40)
    out = load_image(path)
    check_rgb(out, (40, 20, 3))
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 50    # top is red
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 50  # bottom is blue


def test_plain_size_without_exif(tmp_path):
    assert image_size(save(tmp_path, Image.new("RGB", (9, 4)), "s.jpg")) == (9, 4)


def test_truncated_jpeg(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    good = save(tmp_path, Image.fromarray(a), "g.jpg")
    bad = tmp_path / "t.jpg"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=r"t.jpg: corrupt or truncated image"):
        load_image(bad)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"this is not a picture\n", "not an image"),
    (b"\xff\xd8\xff\xe0garbage", "not an image|cannot open|corrupt"),
])
def test_unreadable_files(tmp_path, content, message):
    p = tmp_path / "x.jpg"
    p.write_bytes(content)
    for fn in (load_image, image_size):
        with pytest.raises(ImageReadError, match=message) as e:
            fn(p)
        assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_non_image_after_ultralytics_patched_pil(tmp_path):
    # Importing ultralytics replaces PIL.Image.open with a wrapper that tries to install pi-heif on an unknown file
    # (ImportError offline); a test worker that trained YOLO first met exactly that.
    from detectors.offline import import_ultralytics
    import_ultralytics()
    import ultralytics.utils.patches  # noqa: F401
    from PIL import Image as PILImage
    assert PILImage.open.__module__.startswith("ultralytics")
    p = tmp_path / "x.jpg"
    p.write_bytes(b"this is not a picture\n")
    for fn in (load_image, image_size):
        with pytest.raises(ImageReadError, match="not an image"):
            fn(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="not a regular file"):
        image_size(tmp_path)


def png_header_only(width, height):
    """A PNG claiming width x height 1-bit pixels, with a tiny (wrong) IDAT: its header alone is a bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def test_decompression_bomb_refused_from_the_header(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(png_header_only(100_000, 100_000))  # 10^10 pixels in ~100 bytes
    assert p.stat().st_size < 200
    for fn in (load_image, image_size, lambda p: load_image_bytes(p.read_bytes(), "up.png")):
        with pytest.raises(ImageTooLargeError, match="too large"):
            fn(p)


def test_max_pixels_is_checked_before_decoding(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    p.write_bytes(png_header_only(3000, 3000))  # 9 MP: below PIL's limits, and its pixel data is bogus
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    with pytest.raises(ImageReadError, match=r"too large: 3000x3000 = 9,000,000 pixels > MAX_PIXELS 1,000"):
        load_image(p)
    monkeypatch.setattr(images, "MAX_PIXELS", 10**8)
    with pytest.raises(ImageReadError, match="corrupt or truncated"):  # now it is decoded, and fails on the data
        load_image(p)


def test_pils_own_bomb_warning_is_an_error(tmp_path, monkeypatch):
    p = tmp_path / "warn.png"
    p.write_bytes(png_header_only(10_000, 9_000))  # 90 MP: above PIL's warning threshold, below its error one
    monkeypatch.setattr(images, "MAX_PIXELS", 10**9)
    with pytest.raises(ImageReadError, match="decompression bomb"):
        image_size(p)


def test_bytes_decode_like_files(tmp_path):
    """An upload goes through the same checks and conversions as a file: EXIF orientation, modes, errors."""
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, Image.fromarray(a), "r.jpg", exif=exif, quality=95)
    np.testing.assert_array_equal(load_image_bytes(path.read_bytes(), "r.jpg"), load_image(path))
    assert load_image_bytes(bytearray(path.read_bytes()), "r.jpg").shape == (40, 20, 3)
    la = save(tmp_path, Image.new("LA", (1, 1), (0, 128)), "la.png")
    assert load_image_bytes(la.read_bytes(), "la.png")[0, 0].tolist() == [127, 127, 127]
    noise = save(tmp_path, Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)),
                 "n.jpg")
    truncated = noise.read_bytes()[: noise.stat().st_size // 2]
    for data, message in ((b"", "up.jpg: empty file"), (b"<html></html>", "up.jpg: not an image"),
                          (truncated, "up.jpg: corrupt or truncated image")):
        with pytest.raises(ImageReadError, match=message) as e:
            load_image_bytes(data, "up.jpg")
        assert "\n" not in str(e.value) and not isinstance(e.value, ImageTooLargeError)


def test_max_pixels_argument(tmp_path):
    path = save(tmp_path, Image.new("RGB", (30, 20)), "s.png")
    assert load_image(path, max_pixels=600).shape == (20, 30, 3)
    for fn in (lambda: load_image(path, max_pixels=599), lambda: load_image_bytes(path.read_bytes(), "s.png", 599)):
        with pytest.raises(ImageTooLargeError, match=r"too large: 30x20 = 600 pixels > the limit 599"):
            fn()
