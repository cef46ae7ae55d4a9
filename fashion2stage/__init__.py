"""fashion2stage: a garment detector, then region-specific heads on padded crops of each garment."""
__version__ = "0.1.0"
