"""fashion2stage: a garment detector, then region-specific heads on padded crops of each garment.

``from fashion2stage import Reader`` is the Python API (fashion2stage/app/reader.py); the result types live in
fashion2stage.results. Importing the package itself loads neither torch nor any model.
"""
from fashion2stage.offline import set_offline_switches

__version__ = "0.1.0"

__all__ = ["Reader", "ImagePrediction", "GarmentPrediction", "AttributePrediction"]

# before anything imports albumentations, ultralytics or huggingface_hub (see fashion2stage/offline.py)
set_offline_switches()


def __getattr__(name: str):
    # lazy: `import fashion2stage` stays light (a reader of predictions.jsonl needs no torch)
    if name == "Reader":
        from fashion2stage.app.reader import Reader  # noqa: PLC0415
        return Reader
    if name in ("ImagePrediction", "GarmentPrediction", "AttributePrediction"):
        from fashion2stage import results  # noqa: PLC0415
        return getattr(results, name)
    raise AttributeError(f"module 'fashion2stage' has no attribute {name!r}")
