"""Reports of a run: Pareto files, the subnet pick, plots and terminal tables."""

from .pareto import PICKS, front_rows, pick, write_front
from .plots import plot_front, plot_hypervolume
from .table import front_table

__all__ = ["PICKS", "front_rows", "pick", "write_front", "plot_front", "plot_hypervolume", "front_table"]
