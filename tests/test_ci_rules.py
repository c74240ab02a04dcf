"""Under CI=true a test skipped by a mark (a missing tool) fails; elsewhere it skips."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
SUITE = """
import pytest

@pytest.mark.skipif(True, reason="bubblewrap not installed")
def test_needs_a_tool():
    pass

def test_decides_for_itself():
    pytest.skip("Cloud only")

def test_runs():
    pass
"""


def test_a_tool_skip_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makeini(INI)
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess("-p", "tests.ci_rules", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1, errors=1)  # failed in setup: an error
    result.stdout.fnmatch_lines(["*skipped under CI=true*bubblewrap not installed*"])


def test_the_same_skip_is_a_skip_off_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeini(INI)
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess("-p", "tests.ci_rules", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=2)
