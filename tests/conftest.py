import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Deterministic, CI-friendly hypothesis profile: no deadlines (CPU timing varies on 2 shared
# cores), derandomized so a CI failure reproduces locally.
settings.register_profile(
    "ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


# tests/ on sys.path: the test modules in tests/<subpackage>/ import tests/helpers.py
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import rect_stack  # noqa: E402


@pytest.fixture
def small_stack():
    return rect_stack()
