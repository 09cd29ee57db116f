"""In-memory image data sets split into seeded, disjoint, normalised train / val / test tensors."""

from shiftnas.data.registry import available_datasets, load_dataset
from shiftnas.data.splits import DataSplits

__all__ = ["DataSplits", "available_datasets", "load_dataset"]
