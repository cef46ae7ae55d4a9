"""Padded crop: hand-computed windows, the never-clipped guarantee at every edge, exact round trips."""
import numpy as np
import pytest

from fashion2stage.geometry import (CropSpec, box_iou, cover_points, crop, crop_transform, crop_window,
                                    xywh_to_xyxy, xyxy_to_xywh)


def test_window_hand_computed():
    # 100x50 box, padding 1.25 -> 125x62.5, widened to square 125x125 around centre (60, 45)
    w = crop_window([10, 20, 110, 70], CropSpec(64, 64, padding=1.25))
    np.testing.assert_allclose(w, [60 - 62.5, 45 - 62.5, 60 + 62.5, 45 + 62.5])
    # tall crop spec (w:h = 1:2) on a square box: 125x125 padded -> grown (never shrunk) to 125x250
    w = crop_window([0, 0, 100, 100], CropSpec(32, 64, padding=1.25))
    np.testing.assert_allclose(w, [50 - 62.5, 50 - 125, 50 + 62.5, 50 + 125])


def test_box_conversions_and_iou():
    np.testing.assert_allclose(xywh_to_xyxy([10, 20, 30, 40]), [10, 20, 40, 60])
    np.testing.assert_allclose(xyxy_to_xywh([10, 20, 40, 60]), [10, 20, 30, 40])
    iou = box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(iou, [[50 / 150, 0.0, 1.0]])


def _gradient_image(h=90, w=120):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 2, yy * 2, (xx + yy) % 256], axis=2).astype(np.uint8)


@pytest.mark.parametrize("box", [
    [0, 0, 30, 20],          # top-left corner
    [90, 0, 120, 25],        # top-right corner
    [0, 70, 40, 90],         # bottom-left corner
    [100, 60, 120, 90],      # bottom-right corner
    [0, 10, 120, 80],        # left and right edges
    [50, 40, 52, 42],        # tiny
    [-300, -200, 400, 300],  # much larger than the image
])
def test_crop_never_clipped(box):
    img = _gradient_image()
    spec = CropSpec(48, 64, padding=1.25, fill=7)
    out, t = crop(img, box, spec)
    assert out.shape == (64, 48, 3) and out.dtype == np.uint8
    # the whole padded box maps inside the crop: its corners land at least padding-margin inside
    b = t.box_to_crop(box)
    assert b[0] >= -1e-6 and b[1] >= -1e-6 and b[2] <= spec.width + 1e-6 and b[3] <= spec.height + 1e-6
    # crop pixels lying wholly outside the image (by more than one crop pixel of interpolation) are the fill value
    jj, ii = np.meshgrid(np.arange(spec.width) + 0.5, np.arange(spec.height) + 0.5)
    p = t.to_image(np.stack([jj, ii], axis=-1))
    m = t.scale + 1
    outside = (p[..., 0] < -m) | (p[..., 1] < -m) | (p[..., 0] > img.shape[1] + m) | (p[..., 1] > img.shape[0] + m)
    if outside.any():
        assert np.all(out[outside] == 7)


def test_crop_samples_the_right_pixels():
    img = _gradient_image()
    spec = CropSpec(60, 60, padding=1.0)
    out, t = crop(img, [30, 15, 90, 75], spec)  # 60x60 box, scale exactly 1
    assert t.scale == pytest.approx(1.0)
    np.testing.assert_array_equal(out, img[15:75, 30:90])


def test_round_trip_within_a_pixel():
    rng = np.random.default_rng(0)
    spec = CropSpec(192, 256)
    for _ in range(50):
        x1, y1 = rng.uniform(-50, 500, 2)
        box = [x1, y1, x1 + rng.uniform(1, 600), y1 + rng.uniform(1, 600)]
        t = crop_transform(box, spec)
        pts = rng.uniform(-100, 1000, (20, 2))
        np.testing.assert_allclose(t.to_image(t.to_crop(pts)), pts, atol=1e-6)


def test_image_to_crop_to_image_pixels_round_trip():
    """A bright dot found in the crop maps back to its image position within 1 px (downscale path included)."""
    for scale_box in (40, 400):
        img = np.zeros((600, 800, 3), np.uint8)
        img[300:304, 500:504] = 255  # dot centred at (502, 302)
        box = [502 - scale_box / 2, 302 - scale_box / 3, 502 + scale_box / 2, 302 + scale_box / 3]
        out, t = crop(img, box, CropSpec(128, 128))
        ys, xs = np.nonzero(out[..., 0] > 40)
        w = out[ys, xs, 0].astype(float)
        centre_crop = [(np.sum(xs * w) / w.sum()) + 0.5, (np.sum(ys * w) / w.sum()) + 0.5]
        np.testing.assert_allclose(t.to_image(np.array(centre_crop)), [502, 302], atol=1.0)


def test_keypoints_inside_crop_after_cover():
    rng = np.random.default_rng(1)
    spec = CropSpec(96, 128)
    for _ in range(30):
        box = np.array([100, 100, 200, 300], float)
        kpts = rng.uniform([90, 80], [230, 320], (8, 2))  # some keypoints stick out of the box
        t = crop_transform(cover_points(box, kpts), spec)
        k = t.to_crop(kpts)
        assert np.all(k >= 0) and np.all(k[:, 0] <= spec.width) and np.all(k[:, 1] <= spec.height)


def test_grayscale_crop():
    out, _ = crop(np.full((20, 20), 200, np.uint8), [0, 0, 20, 20], CropSpec(16, 16, fill=0))
    assert out.shape == (16, 16) and out[8, 8] == 200 and out[0, 0] == 0
