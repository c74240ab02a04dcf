"""A pytest plugin: under `CI=true` a test skipped for want of a tool fails instead.

The sandbox, git-jail and browser tests skip on a laptop without bubblewrap or Chromium, with a
reason. In CI that skip would hide the security tests silently, so a test whose `skip`/`skipif`
mark applied is reported failed there, with the reason. A skip the test decides itself
(`pytest.skip(...)` in its body, e.g. a case that does not apply to one JIRA deployment) stays a
skip: it says nothing about the machine. Loaded by tests/conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

SKIP_MARKS = ("skip", "skipif")


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    marked = any(item.iter_markers(name) for name in SKIP_MARKS)
    if on_ci() and report.skipped and call.when == "setup" and marked:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"
    return report
