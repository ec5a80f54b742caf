"""State-dict key helpers: prefixes and backbone roots, in original key names."""
from mmreplk.utils import extract_backbone, select_prefix, strip_prefixes


def test_prefix_helpers():
    state = {'module.backbone.stem.w': 1, 'module.head.w': 2, 'stem.b': 3}
    assert strip_prefixes('module.backbone.stem.w', ('module.', 'backbone.')) == 'stem.w'
    assert select_prefix(state, 'module.') == ({'backbone.stem.w': 1, 'head.w': 2}, ['stem.b'])
    kept, dropped = extract_backbone(state, ('stem.',), ('module.', 'backbone.'))
    assert kept == {'stem.w': 1, 'stem.b': 3} and dropped == ['module.head.w']
    kept, dropped = extract_backbone(state, ('stem.',), prefix='module.backbone.')
    assert kept == {'stem.w': 1} and sorted(dropped) == ['module.head.w', 'stem.b']
