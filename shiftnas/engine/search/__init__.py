"""Searchers over a space (registered in ``SEARCHERS`` by ``search.mode``), the archive, supernet shifting."""

from . import nat, nsga2  # noqa: F401  (register the searchers)
from .base import SEARCHERS, Searcher, SearchFiles, SearchProblem, SearchResult
from .shifting import SHIFT_STRATEGIES

__all__ = ["SEARCHERS", "SHIFT_STRATEGIES", "SearchFiles", "SearchProblem", "SearchResult", "Searcher"]
