"""The heatmap codec: encode -> decode round trip, weights of absent points, flip = column reversal."""
import numpy as np

from classifiers.keypoints import decode, encode

CROP = (96, 128)  # width, height
HEAT = (24, 32)


def _grid(x0, x1, y0, y1):
    xs, ys = np.meshgrid(np.linspace(x0, x1, 7), np.linspace(y0, y1, 9))
    pts = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, 2.0)], axis=1)
    return pts, np.stack([encode(p[None], CROP, HEAT, sigma=2.0)[0][0] for p in pts])[None]


def test_round_trip_on_a_point_grid_is_sub_pixel():
    pts, heatmaps = _grid(10.3, 85.9, 9.1, 117.7)  # down to 2.3 heatmap px from the border
    xy, scores = decode(heatmaps, CROP, sigma=2.0)
    err_heatmap_px = np.abs(xy[0] - pts[:, :2]) / 4.0
    assert err_heatmap_px.max() < 0.3  # the zero-padded blur pulls border peaks inward a little
    assert np.all(scores > 0.8)
    xy, _ = decode(heatmaps, CROP, sigma=2.0, blur=False)
    assert (np.abs(xy[0] - pts[:, :2]) / 4.0).max() < 0.01
    pts, heatmaps = _grid(24.3, 71.9, 24.1, 103.7)  # 6 heatmap px (3 sigma) from the border
    xy, _ = decode(heatmaps, CROP, sigma=2.0)
    assert (np.abs(xy[0] - pts[:, :2]) / 4.0).max() < 0.02
    # without refinement the error is up to half a heatmap pixel: refinement is doing the work
    xy_coarse, _ = decode(heatmaps, CROP, sigma=2.0, refine=False)
    assert (np.abs(xy_coarse[0] - pts[:, :2]) / 4.0).max() > 0.2


def test_absent_and_outside_points_get_zero_weight_and_empty_maps():
    pts = np.array([[50.0, 60.0, 2], [50.0, 60.0, 1], [0.0, 0.0, 0], [-3.0, 60.0, 2], [50.0, 128.5, 2]])
    heatmaps, weights = encode(pts, CROP, HEAT, sigma=2.0)
    assert heatmaps.shape == (5, 32, 24) and heatmaps.dtype == np.float32
    assert weights.tolist() == [1, 1, 0, 0, 0]
    assert heatmaps[2:].max() == 0 and np.isclose(heatmaps[0].max(), np.exp(-0.25 / 8), atol=1e-6)


def test_flipping_the_crop_reverses_heatmap_columns():
    p = np.array([[30.7, 70.2, 2]])
    flipped = np.array([[CROP[0] - 30.7, 70.2, 2]])
    h, _ = encode(p, CROP, HEAT)
    hf, _ = encode(flipped, CROP, HEAT)
    np.testing.assert_allclose(h[..., ::-1], hf, atol=1e-6)
