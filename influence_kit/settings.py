"""Run-time settings shared by the subpackages."""

import os

FAST_MODE_VARIABLE = "INFLUENCE_KIT_FAST"


def fast_mode(environ=None):
    """Return True when the environment variable ``INFLUENCE_KIT_FAST`` is set.

    Any value other than empty or ``"0"`` switches fast mode on; the test
    suite sets ``INFLUENCE_KIT_FAST=1``. Notebooks and protocols then use
    fewer groups, seeds and iterations.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read; ``os.environ`` by default.
    """
    environ = os.environ if environ is None else environ
    return environ.get(FAST_MODE_VARIABLE, "").strip() not in {"", "0"}
