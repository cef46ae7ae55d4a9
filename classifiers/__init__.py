"""Crop models: a shared backbone with one attribute head per key, and a heatmap keypoint model."""
import fashion2stage  # noqa: F401  (sets the libraries' offline switches before albumentations or timm is imported)
