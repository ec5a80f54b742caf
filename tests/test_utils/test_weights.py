"""The one weight loader: each strictness mode accepts what it promises and names the rest."""
import pytest
import torch
from helpers import TINY_ARCH
from torch import nn

from mmreplk.models import RepLKNet, is_folded
from mmreplk.utils import (STRICTNESS, CheckpointMismatchError, deploy_only_keys, holds_keys_ending,
                           load_weights)


class TwoLayers(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.first = nn.Linear(width, width)
        self.second = nn.Linear(width, 2)


def _weights(**edits):
    state = {key: torch.randn_like(value) for key, value in TwoLayers().state_dict().items()}
    state.update(edits)
    return {key: value for key, value in state.items() if value is not None}


@pytest.mark.parametrize('strict', STRICTNESS)
def test_every_mode_loads_an_exact_fit(strict):
    weights = _weights()
    model = TwoLayers()
    report = load_weights(model, weights, strict)
    assert sorted(report.loaded) == sorted(weights) and not report.missing
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[key])


@pytest.mark.parametrize('strict,accepted', [('exact', False), ('complete', True),
                                             ('partial', True), ('lenient', True)])
def test_extra_keys(strict, accepted):
    weights = _weights(**{'head.weight': torch.zeros(1)})
    if not accepted:
        with pytest.raises(CheckpointMismatchError, match='unexpected keys.*head.weight'):
            load_weights(TwoLayers(), weights, strict)
        return
    assert load_weights(TwoLayers(), weights, strict).dropped == ['head.weight']


@pytest.mark.parametrize('strict,accepted', [('exact', False), ('complete', False),
                                             ('partial', True), ('lenient', True)])
def test_missing_keys(strict, accepted):
    weights = _weights(**{'second.bias': None})
    if not accepted:
        with pytest.raises(CheckpointMismatchError, match='second.bias'):
            load_weights(TwoLayers(), weights, strict)
        return
    model = TwoLayers()
    before = model.second.bias.clone()
    assert load_weights(model, weights, strict).missing == ['second.bias']
    torch.testing.assert_close(model.second.bias, before)


@pytest.mark.parametrize('strict,accepted', [('exact', False), ('complete', False),
                                             ('partial', False), ('lenient', True)])
def test_wrong_shapes(strict, accepted):
    weights = _weights(**{'second.weight': torch.zeros(3, 4)})
    if not accepted:
        with pytest.raises(CheckpointMismatchError, match=r'second.weight.*\(3, 4\)'):
            load_weights(TwoLayers(), weights, strict)
        return
    report = load_weights(TwoLayers(), weights, strict)
    assert 'second.weight' in report.dropped and 'second.weight' not in report.loaded


def test_partial_needs_half_of_the_module():
    with pytest.raises(CheckpointMismatchError, match='only 1 of 4 keys found'):
        load_weights(TwoLayers(), {'first.bias': torch.zeros(4)}, 'partial')


@pytest.mark.parametrize('strict', STRICTNESS)
def test_every_mode_names_a_training_deploy_mismatch(strict):
    folded = RepLKNet(arch=TINY_ARCH, deploy=True).state_dict()
    assert is_folded(folded) and not is_folded(RepLKNet(arch=TINY_ARCH).state_dict())
    with pytest.raises(CheckpointMismatchError, match='deploy=True'):
        load_weights(RepLKNet(arch=TINY_ARCH), folded, strict)


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown strictness 'loose'"):
        load_weights(TwoLayers(), _weights(), 'loose')


class Foldable(nn.Module):
    deploy_only_keys = ('fused.weight',)

    def __init__(self, deploy: bool) -> None:
        super().__init__()
        self.fused = nn.Linear(2, 2) if deploy else None
        self.branch = None if deploy else nn.Linear(2, 2)


def test_the_loader_reads_the_deploy_form_off_the_module_it_loads_into():
    model = nn.Sequential(Foldable(deploy=False))
    assert deploy_only_keys(model) == {'fused.weight'} and not deploy_only_keys(TwoLayers())
    folded = Foldable(deploy=True).state_dict()
    assert holds_keys_ending({'0.' + k: v for k, v in folded.items()}, ['fused.weight'])
    assert not holds_keys_ending({'0.unfused.weight': 1}, ['fused.weight'])
    with pytest.raises(CheckpointMismatchError, match='holds a deploy .folded.-form model'):
        load_weights(model, {'0.' + k: v for k, v in folded.items()}, 'lenient')

