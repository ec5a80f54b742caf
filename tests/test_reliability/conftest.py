import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_determinism():
    # Runner(randomness=dict(deterministic=True)) switches this globally for the process.
    previous = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(previous)
