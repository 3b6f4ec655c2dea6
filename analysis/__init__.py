"""Analysis of a VL-PET study: efficiency-effectiveness frontiers, hypervolume, and the paper-table report.

    from analysis import find_fronts, load_results
    result = find_fronts(load_results("runs/my-study"))    # FrontierResult
    vlpet-report runs/my-study                           # report/ with plots, CSVs and report.md
"""

from analysis.fronts import FrontierResult, find_fronts
from analysis.hypervolume import DEFAULT_REFERENCE, hypervolume_2d, hypervolume_history
from analysis.pareto import pareto_front
from analysis.table import AnalysisError, load_results

__all__ = [
    "DEFAULT_REFERENCE",
    "AnalysisError",
    "FrontierResult",
    "find_fronts",
    "hypervolume_2d",
    "hypervolume_history",
    "load_results",
    "pareto_front",
]
