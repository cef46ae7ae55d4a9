"""Keypoint model parts: masked loss by hand, flip of crop + points, flip test symmetry, predictor subsets, the
crop -> image mapping of predictions."""
import numpy as np
import torch

from classifiers.keypoint_data import affine_about_centre, flip_crop, garment_crop, type_mask, warp_crop
from classifiers.keypoints import OUTPUTS, HeatmapModel, KeypointPredictor, heatmap_loss
from fashion2stage.nets import TorchNet
from fashion2stage.geometry import CropSpec
from fashion2stage.jitter import JitterSampler
from fashion2stage.labels import LabelSet
from fashion2stage.records import Garment

LABELS = LabelSet(garment_types=["blouse", "skirt"],
                  keypoints=["left_cuff", "right_cuff", "centre", "left_hem", "right_hem"],
                  keypoints_per_type={"blouse": ["left_cuff", "right_cuff", "centre"],
                                      "skirt": ["left_hem", "right_hem"]})


def test_masked_loss_by_hand():
    pred = torch.zeros(2, 3, 2, 2)
    target = torch.zeros(2, 3, 2, 2)
    target[0, 0] = 1.0  # error 1 everywhere: per-map MSE 1
    target[0, 1, 0, 0] = 2.0  # one pixel error 2: per-map MSE 4 / 4 = 1 ... but masked out below
    target[1, 2, 1, 1] = 2.0  # per-map MSE 1
    target[1, 0] = 3.0  # per-map MSE 9, masked out
    weights = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    # counted maps: (0,0) -> 1, (0,2) -> 0, (1,2) -> 1; mean over 3 counted maps
    assert torch.isclose(heatmap_loss(pred, target, weights), torch.tensor(2.0 / 3.0))
    assert heatmap_loss(pred, target, torch.zeros(2, 3)) == 0  # nothing labelled: zero, not NaN


def test_type_mask_follows_the_label_set_subsets():
    assert type_mask(LABELS, "blouse").tolist() == [1, 1, 1, 0, 0]
    assert type_mask(LABELS, "skirt").tolist() == [0, 0, 0, 1, 1]


def _dotted_crop():
    """A 40x48 crop with a distinct colour dot under each labelled point."""
    img = np.zeros((48, 40, 3), np.uint8)
    kpts = np.array([[5.5, 10.5, 2], [30.5, 12.5, 2], [20.5, 30.5, 1], [0, 0, 0], [0, 0, 0]])
    for k, (x, y, v) in enumerate(kpts):
        if v > 0:
            img[int(y), int(x)] = (50 * (k + 1), 255, 0)
    return img, kpts


def test_flip_moves_points_with_the_pixels_and_swaps_left_right():
    img, kpts = _dotted_crop()
    perm = LABELS.flip_permutation()
    img_f, kpts_f = flip_crop(img, kpts, perm)
    # the point now called left_cuff is where the right cuff's dot went, and that pixel holds right_cuff's colour
    np.testing.assert_allclose(kpts_f[0], [40 - 30.5, 12.5, 2])
    assert tuple(img_f[int(kpts_f[0, 1]), int(kpts_f[0, 0])]) == (100, 255, 0)
    assert tuple(img_f[int(kpts_f[2, 1]), int(kpts_f[2, 0])]) == (150, 255, 0)  # centre stays centre
    assert kpts_f[3].tolist() == [0, 0, 0]
    img_ff, kpts_ff = flip_crop(img_f, kpts_f, perm)
    np.testing.assert_array_equal(img_ff, img)
    np.testing.assert_allclose(kpts_ff, kpts)


def test_rotation_moves_points_with_the_pixels():
    img, kpts = _dotted_crop()
    img = np.repeat(np.repeat(img, 4, 0), 4, 1)  # 4x4 blocks survive bilinear resampling
    kpts = kpts.copy()
    kpts[:, :2] = np.where(kpts[:, 2:] > 0, (np.floor(kpts[:, :2]) + 0.5) * 4, 0)
    out, k = warp_crop(img, kpts, affine_about_centre(160, 192, 17.0, 0.9), fill=0)
    for i in range(3):
        x, y = k[i, :2]
        assert out[int(y), int(x), 1] > 200, i


def test_flip_test_is_symmetric_under_mirroring_the_input():
    torch.manual_seed(0)
    model = HeatmapModel(5, pretrained=False, deconv_channels=(8, 8, 8))
    model.final.weight.data.normal_(std=0.5)  # make the untrained maps differ between points
    spec = CropSpec(64, 64)
    pred = KeypointPredictor(TorchNet(model, outputs=OUTPUTS), LABELS, spec, 2.0, (0.5,) * 3, (0.5,) * 3)
    crops = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    h = pred.heatmaps(crops, flip_test=True)
    h_mirror = pred.heatmaps(crops[:, :, ::-1], flip_test=True)
    perm = LABELS.flip_permutation()
    np.testing.assert_allclose(h_mirror[:, perm][..., ::-1], h, atol=1e-5)
    assert not np.allclose(pred.heatmaps(crops, flip_test=False), h, atol=1e-5)


def test_predict_gives_crop_points_nan_outside_the_subset_and_maps_to_the_image():
    torch.manual_seed(0)
    spec = CropSpec(64, 64)
    model = HeatmapModel(5, pretrained=False, deconv_channels=(8, 8, 8))
    pred = KeypointPredictor(TorchNet(model, outputs=OUTPUTS), LABELS, spec, 2.0,
                             (0.5,) * 3, (0.5,) * 3)
    image = np.random.default_rng(1).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    garment = Garment("skirt", np.array([10.0, 20.0, 70.0, 100.0]), keypoints=np.zeros((5, 3)))
    crop_img, t, _ = garment_crop(image, garment, spec, JitterSampler.none(), np.random.default_rng(0))
    out = pred.predict(crop_img[None], ["skirt"])
    assert out.shape == (1, 5, 3)
    assert np.isnan(out[0, :3]).all() and np.isfinite(out[0, 3:]).all()
    assert ((out[0, 3:, :2] >= 0) & (out[0, 3:, :2] <= 64)).all()
    in_image = t.to_image(out[0])
    # the crop window is the box padded 1.25x and squared: 100 px wide, centred on the box
    np.testing.assert_allclose(in_image[3:, :2], out[0, 3:, :2] * 100 / 64 + [-10.0, 10.0])
    np.testing.assert_allclose(in_image[3:, 2], out[0, 3:, 2])
