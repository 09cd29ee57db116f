"""In-memory image data sets split into seeded, disjoint, normalised train / val / test tensors."""

from shiftnas.data import bundled, disk, fashion  # noqa: F401  (register the loaders)
from shiftnas.data.registry import DATASETS, available_datasets, load_dataset
from shiftnas.data.splits import DataSplits

__all__ = ["DATASETS", "DataSplits", "available_datasets", "load_dataset"]
