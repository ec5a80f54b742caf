import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope='module')
def _restore_determinism_per_module():
    # The demo configs train with randomness.deterministic=True, which switches
    # torch.use_deterministic_algorithms on for the whole process; a module that trains in-process
    # must not leave the dispatcher's later tests in deterministic mode (no measuring).
    previous = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(previous)
