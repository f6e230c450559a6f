"""
What a test does when a system package it needs is absent: elsewhere it
skips with the reason; under ``.ci/run``, which installs the packages as
root and says so in ``TURBERFIELD_SYSTEM_PACKAGES``, it fails, so CI never
skips those tests.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

#: Set (to ``installed``) by ``.ci/run`` once it has installed the system packages.
INSTALLED_ENV = "TURBERFIELD_SYSTEM_PACKAGES"


def required() -> bool:
    """Whether the system packages were installed for this run, so must be present."""
    return os.environ.get(INSTALLED_ENV) == "installed"


def absent(reason: str) -> NoReturn:
    """Skip with ``reason``; fail with it where ``.ci/run`` installed the packages."""
    if required():
        pytest.fail(f"{reason}, though .ci/run installed the system packages")
    pytest.skip(reason)
