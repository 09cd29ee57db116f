"""shiftnas: multi-objective, hardware-aware NAS over OFA-style elastic supernets."""

__version__ = "0.1.0"
