"""Garment detector backends: ultralytics YOLO and torchvision Faster R-CNN, behind one train/predict interface."""
