"""Detection data moved to :mod:`fashion2stage.sources` (the one reader of every source format); re-exported here
for code that imports it from its old place."""
from fashion2stage.sources import read_detection_data  # noqa: F401
