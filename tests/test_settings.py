"""The fast-mode switch reads one environment variable the same way everywhere."""

import pytest

from influence_kit.case_studies.settings import fast_mode as case_study_fast_mode
from influence_kit.nonconvex.protocol import ProtocolConfig, fast_mode_requested
from influence_kit.settings import fast_mode


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ("", False),
        ("0", False),
        (" 0 ", False),
        ("1", True),
        ("true", True),
    ],
)
def test_fast_mode_rule_shared(value, expected):
    environ = {} if value is None else {"INFLUENCE_KIT_FAST": value}
    assert fast_mode(environ) is expected
    assert fast_mode_requested(environ) is expected
    expected_config = ProtocolConfig.fast() if expected else ProtocolConfig.full()
    assert ProtocolConfig.from_env(environ) == expected_config


def test_case_study_switch_is_shared_function():
    assert case_study_fast_mode is fast_mode
