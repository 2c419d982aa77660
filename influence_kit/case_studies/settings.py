"""Run-time settings of the case-study notebooks."""

import os

FAST_MODE_VARIABLE = "INFLUENCE_KIT_FAST"


def fast_mode():
    """Return True when the environment variable ``INFLUENCE_KIT_FAST`` is set.

    Any value other than empty or ``"0"`` switches fast mode on; the test
    suite sets ``INFLUENCE_KIT_FAST=1``. The notebooks then skip their
    robustness checks over extra seeds and settings.
    """
    return os.environ.get(FAST_MODE_VARIABLE, "").strip() not in {"", "0"}
