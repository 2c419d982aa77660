"""Run-time settings of the case-study notebooks.

In fast mode the notebooks skip their robustness checks over extra seeds
and settings.
"""

from ..settings import FAST_MODE_VARIABLE, fast_mode

__all__ = ["FAST_MODE_VARIABLE", "fast_mode"]
