"""Crop models: a shared backbone with one attribute head per key, and a heatmap keypoint model."""
