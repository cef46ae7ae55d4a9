"""Crop models: a shared backbone with one attribute head per key, and a heatmap keypoint model."""
from fashion2stage.offline import set_offline_switches

set_offline_switches()  # before albumentations or timm is imported (fashion2stage/offline.py)
