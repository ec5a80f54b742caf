"""The UniRepLKNet configs load, hold the authors' recipes, match their parameter counts and
train one iteration at a tiny size."""
import copy
import functools
import math
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, init_default_scope
from mmengine.structures import InstanceData, PixelData

from mmreplk.engine import unireplknet_layer_id

CONFIG_DIR = Path(__file__).parents[2] / 'configs'
GPUS = 8  # the layout the configs state: 8 GPUs x 2 images, as the authors trained

# name: (arch, drop path, gradient checkpointing, num_layers, decay rate, crop, test scale,
# pretrained file named in the header, the authors' README parameters in M), from their
# segmentation/configs/ade20k/*.py and README (the XL row is their L recipe: no XL config).
SEG = {
    'upernet_unireplknet_t_ade20k_512.py':
        ('T', 0.2, False, 9, 1.0, 512, (2048, 512), 'unireplknet_t_in1k_224_acc83.21.pth', 61),
    'upernet_unireplknet_s_ade20k_512.py':
        ('S', 0.3, True, 12, 0.9, 512, (2048, 512), 'unireplknet_s_in1k_224_acc83.91.pth', 86),
    'upernet_unireplknet_s_22k_ade20k_512.py':
        ('S', 0.3, True, 9, 0.9, 512, (2048, 512),
         'unireplknet_s_in22k_to_in1k_384_acc86.44.pth', 86),
    'upernet_unireplknet_s_22k_ade20k_640.py':
        ('S', 0.3, True, 9, 0.9, 640, (2560, 640),
         'unireplknet_s_in22k_to_in1k_384_acc86.44.pth', 86),
    'upernet_unireplknet_b_22k_ade20k_640.py':
        ('B', 0.3, True, 12, 0.9, 640, (2560, 640),
         'unireplknet_b_in22k_to_in1k_384_acc87.40.pth', 130),
    'upernet_unireplknet_l_22k_ade20k_640.py':
        ('L', 0.4, True, 12, 0.85, 640, (2560, 640),
         'unireplknet_l_in22k_to_in1k_384_acc87.88.pth', 254),
    'upernet_unireplknet_xl_22k_ade20k_640.py':
        ('XL', 0.4, True, 12, 0.85, 640, (2560, 640),
         'unireplknet_xl_in22k_to_in1k_384_acc87.96.pth', 425),
}
# name: (arch, drop path, decay rate, weight EMA, pretrained file, README parameters in M), from
# their detection/configs/coco/*.py (all: num_layers 12, gradient checkpointing) and README.
DET = {
    'cascade_mask_rcnn_unireplknet_t_coco.py':
        ('T', 0.3, 0.8, False, 'unireplknet_t_in1k_224_acc83.21.pth', 89),
    'cascade_mask_rcnn_unireplknet_s_coco.py':
        ('S', 0.5, 0.8, False, 'unireplknet_s_in1k_224_acc83.91.pth', 113),
    'cascade_mask_rcnn_unireplknet_s_22k_coco.py':
        ('S', 0.5, 0.8, True, 'unireplknet_s_in22k_to_in1k_384_acc86.44.pth', 113),
    'cascade_mask_rcnn_unireplknet_b_22k_coco.py':
        ('B', 0.6, 0.8, True, 'unireplknet_b_in22k_to_in1k_384_acc87.40.pth', 155),
    'cascade_mask_rcnn_unireplknet_l_22k_coco.py':
        ('L', 0.7, 0.7, True, 'unireplknet_l_in22k_to_in1k_384_acc87.88.pth', 276),
    'cascade_mask_rcnn_unireplknet_xl_22k_coco.py':
        ('XL', 0.7, 0.7, True, 'unireplknet_xl_in22k_to_in1k_384_acc87.96.pth', 443),
}
DIMS = {'T': [80, 160, 320, 640], 'S': [96, 192, 384, 768], 'B': [128, 256, 512, 1024],
        'L': [192, 384, 768, 1536], 'XL': [256, 512, 1024, 2048]}
TINY_ARCH = dict(depths=[1, 1, 4, 1], dims=[8, 16, 32, 64],
                 kernel_sizes=[[3], [13], [13, 3, 3, 13], [7]])


@functools.lru_cache(maxsize=None)
def _parse(name):
    # mmengine scans mmseg's / mmdet's model-zoo metafiles for every `mmseg::` base: parse once.
    return Config.fromfile(str(CONFIG_DIR / name))


def _load(name):
    return copy.deepcopy(_parse(name))


def _transform(pipeline, kind):
    (transform,) = [t for t in pipeline if t['type'] == kind]
    return transform


def test_every_config_of_the_issue_exists():
    names = {p.name for p in CONFIG_DIR.glob('*unireplknet*.py')}
    assert names == set(SEG) | set(DET)


@pytest.mark.parametrize('name', sorted(SEG) + sorted(DET))
def test_header_names_the_pretrained_file_and_the_authors_figures(name):
    header = (CONFIG_DIR / name).read_text().split('_base_')[0]
    text = ' '.join(line.lstrip('# ') for line in header.splitlines())
    row = SEG.get(name) or DET.get(name)
    pretrained, params = row[-2], row[-1]
    assert f'model.backbone.init_cfg.checkpoint={pretrained}' in text
    assert "The authors' README:" in text and f'{params}M parameters' in text
    assert _load(name).model.backbone.init_cfg == dict(type='Pretrained', checkpoint=None)


@pytest.mark.parametrize('name', sorted(SEG))
def test_segmentation_recipe(name):
    arch, drop_path, with_cp, num_layers, rate, crop, scale, _, _ = SEG[name]
    cfg = _load(name)
    assert cfg.default_scope == 'mmseg' and 'mmreplk' in cfg.custom_imports['imports']
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch, backbone.drop_path_rate) == ('UniRepLKNet', arch,
                                                                       drop_path)
    assert backbone.with_cp is with_cp and backbone.norm_cfg.type == 'SyncBN'
    assert cfg.model.decode_head.in_channels == DIMS[arch]
    assert cfg.model.auxiliary_head.in_channels == DIMS[arch][2]
    heads = (cfg.model.decode_head, cfg.model.auxiliary_head)
    assert all(h.norm_cfg.type == 'SyncBN' and h.num_classes == 150 for h in heads)
    assert cfg.model.decode_head.channels == 512 and cfg.model.decode_head.pool_scales == (1, 2,
                                                                                           3, 6)
    assert cfg.model.auxiliary_head.loss_decode.loss_weight == 0.4

    wrapper = cfg.optim_wrapper
    assert wrapper.constructor == 'UniRepLKNetLearningRateDecayOptimizerConstructor'
    assert dict(wrapper.optimizer) == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                                           weight_decay=0.05)
    assert dict(wrapper.paramwise_cfg) == dict(num_layers=num_layers, decay_rate=rate,
                                               decay_type='layer_wise')
    assert cfg.train_dataloader.batch_size * wrapper.accumulative_counts * GPUS == 16
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.begin, warmup.end) == ('LinearLR', 1e-6, 0,
                                                                            1500)
    assert (poly.type, poly.power, poly.eta_min, poly.begin, poly.end) == ('PolyLR', 1.0, 0.0, 0,
                                                                           160000)
    assert cfg.train_cfg.max_iters == 160000

    assert cfg.model.data_preprocessor.size == (crop, crop)
    train = cfg.train_dataloader.dataset.pipeline
    assert _transform(train, 'RandomResize') == dict(type='RandomResize', scale=scale,
                                                     ratio_range=(0.5, 2.0), keep_ratio=True)
    assert _transform(train, 'RandomCrop').crop_size == (crop, crop)
    assert cfg.model.test_cfg.mode == 'whole'
    for pipeline in (cfg.test_pipeline, cfg.val_dataloader.dataset.pipeline,
                     cfg.test_dataloader.dataset.pipeline):
        kinds = [t['type'] for t in pipeline]
        assert kinds.index('Resize') + 1 == kinds.index('ResizeToMultiple')
        assert _transform(pipeline, 'Resize').scale == scale
        assert _transform(pipeline, 'ResizeToMultiple').size_divisor == 32
    ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] if crop == 512 else [0.75, 1.0, 1.25]
    resizes, multiple = cfg.tta_pipeline[1]['transforms'][:2]
    assert [t['scale'] for t in resizes] == [(int(scale[0] * r), int(scale[1] * r))
                                             for r in ratios]
    assert multiple == [dict(type='ResizeToMultiple', size_divisor=32)]


@pytest.mark.parametrize('name', sorted(DET))
def test_detection_recipe(name):
    arch, drop_path, rate, ema, _, _ = DET[name]
    cfg = _load(name)
    assert cfg.default_scope == 'mmdet' and 'mmreplk' in cfg.custom_imports['imports']
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch, backbone.drop_path_rate) == ('UniRepLKNet', arch,
                                                                       drop_path)
    assert backbone.with_cp is True and backbone.norm_cfg.type == 'SyncBN'
    assert cfg.model.neck.in_channels == DIMS[arch]
    for head in cfg.model.roi_head.bbox_head:
        assert head.type == 'Shared4Conv1FCBBoxHead' and head.norm_cfg.type == 'SyncBN'
        assert head.reg_decoded_bbox and head.loss_bbox == dict(type='GIoULoss', loss_weight=10.0)

    wrapper = cfg.optim_wrapper
    assert wrapper.constructor == 'UniRepLKNetLearningRateDecayOptimizerConstructor'
    assert dict(wrapper.optimizer) == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                                           weight_decay=0.05)
    assert dict(wrapper.paramwise_cfg) == dict(num_layers=12, decay_rate=rate,
                                               decay_type='layer_wise')
    assert cfg.train_dataloader.batch_size * GPUS == 16
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end) == ('LinearLR', 0.001, 500)
    assert (steps.type, steps.milestones, steps.gamma) == ('MultiStepLR', [27, 33], 0.1)
    assert cfg.train_cfg.max_epochs == 36
    policies = _transform(cfg.train_dataloader.dataset.pipeline, 'AutoAugment').policies
    assert [t['type'] for t in policies[1]] == ['RandomChoiceResize', 'RandomCrop',
                                                 'RandomChoiceResize']
    hooks = cfg.get('custom_hooks', [])
    if ema:
        assert hooks == [dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001,
                              gamma=2000, update_buffers=True, priority=49)]
    else:
        assert not hooks


@pytest.mark.filterwarnings('ignore:Detected call of')
def test_poly_schedule_is_mmcvs_poly_with_warmup():
    """lr(i) = lr (1 - i / (T - 1)) min(1, r + (1 - r) i / (W - 1)): mmcv 1.x's poly policy
    with linear warm-up, which the authors trained with (lr (1 - i / T) min(1, r + (1 - r) i / W)),
    up to mmengine's schedulers reaching their end values one iteration before ``end``
    (shortened 100-fold)."""
    cfg = _load('upernet_unireplknet_s_ade20k_512.py')
    total, warmup = 1600, 15
    schedulers = [dict(cfg.param_scheduler[0], end=warmup), dict(cfg.param_scheduler[1],
                                                                 end=total)]
    model = torch.nn.Linear(1, 1)
    wrapper = build_optim_wrapper(model, dict(type='OptimWrapper',
                                              optimizer=dict(type='AdamW', lr=1e-4)))
    built = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper)) for s in schedulers]
    for i in range(total):
        lr = wrapper.optimizer.param_groups[0]['lr']
        warm = 1e-6 + (1 - 1e-6) * i / (warmup - 1) if i < warmup else 1.0
        assert lr == pytest.approx(1e-4 * (1 - i / (total - 1)) * warm, rel=1e-9,
                                   abs=1e-15), i
        for scheduler in built:
            scheduler.step()


def _build(cfg, deploy=False):
    from mmreplk.tasks import build_model
    return build_model(cfg, deploy=deploy)


@pytest.fixture
def no_init(monkeypatch):
    # Counting needs no initial values; default-initialising ~1e9 weights is what makes full-size
    # builds slow.
    monkeypatch.setattr(torch.nn.Conv2d, 'reset_parameters', lambda self: None)
    monkeypatch.setattr(torch.nn.Linear, 'reset_parameters', lambda self: None)


def _params(model):
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith('auxiliary'))


@pytest.mark.parametrize('name', sorted(SEG))
def test_segmentor_parameters_are_the_authors(name, no_init):
    """The authors' README counts the folded model without the auxiliary head: every ADE20K
    figure is the folded count rounded to whole millions."""
    folded = _params(_build(_load(name), deploy=True))
    assert round(folded / 1e6) == SEG[name][-1], f'{folded / 1e6:.2f}M'


@pytest.mark.parametrize('name', sorted(DET))
def test_detector_parameters_are_the_authors(name, no_init):
    """Folded, the detectors round to the README's S, B and XL figures; T (88.45M) and L
    (275.40M) are 0.6M under its 89M and 276M, within 0.7%."""
    folded = _params(_build(_load(name), deploy=True))
    expected = DET[name][-1] * 1e6
    assert abs(folded - expected) <= 0.007 * expected, f'{folded / 1e6:.2f}M'
    if DET[name][0] in ('S', 'B', 'XL'):
        assert round(folded / 1e6) == DET[name][-1], f'{folded / 1e6:.2f}M'


def test_real_names_get_the_authors_rates(no_init):
    """The constructor on the full UniRepLKNet-S UperNet of the S config (decay 0.9, 12 layers)."""
    cfg = _load('upernet_unireplknet_s_ade20k_512.py')
    model = _build(cfg)
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    lrs = {name: group['lr'] for group in wrapper.optimizer.param_groups
           for name in group['param_names']}
    assert set(lrs) == {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {  # name prefix: layer id in the authors' table
        'backbone.downsample_layers.0.': 0, 'backbone.stages.0.': 1,
        'backbone.downsample_layers.1.': 2, 'backbone.stages.1.': 2,
        'backbone.downsample_layers.2.': 3, 'backbone.stages.2.0.': 3, 'backbone.stages.2.5.': 4,
        'backbone.stages.2.26.': 11, 'backbone.downsample_layers.3.': 12,
        'backbone.stages.3.': 12, 'backbone.norm2.': 13, 'decode_head.': 13,
        'auxiliary_head.': 13}
    for prefix, layer_id in expected.items():
        found = {lr for name, lr in lrs.items() if name.startswith(prefix)}
        assert found and all(lr == pytest.approx(1e-4 * 0.9 ** (13 - layer_id)) for lr in found)
    assert len({unireplknet_layer_id(name, 12) for name in lrs}) == 14


def _sync_to_plain_bn(node):
    """SyncBN -> BN everywhere in a config (one process, no process group)."""
    if isinstance(node, dict):
        for value in node.values():
            _sync_to_plain_bn(value)
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
    elif isinstance(node, list):
        for value in node:
            _sync_to_plain_bn(value)


def _tiny_segmentor_cfg(name):
    cfg = _load(name)
    model = cfg.model
    model.backbone.arch = dict(TINY_ARCH)
    model.backbone.init_cfg = None
    model.data_preprocessor.size = (64, 64)
    model.decode_head.update(in_channels=TINY_ARCH['dims'], channels=16)
    model.auxiliary_head.update(in_channels=TINY_ARCH['dims'][2], channels=8)
    _sync_to_plain_bn(model)
    return cfg


def _tiny_detector_cfg(name):
    cfg = _load(name)
    model = cfg.model
    model.backbone.arch = dict(TINY_ARCH)
    model.backbone.init_cfg = None
    width = 16
    model.neck.update(in_channels=TINY_ARCH['dims'], out_channels=width)
    model.rpn_head.update(in_channels=width, feat_channels=width)
    model.roi_head.bbox_roi_extractor.out_channels = width
    model.roi_head.mask_roi_extractor.out_channels = width
    for head in model.roi_head.bbox_head:
        head.update(in_channels=width, conv_out_channels=width, fc_out_channels=32)
    model.roi_head.mask_head.update(in_channels=width, conv_out_channels=width)
    model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=50)
    for stage in model.train_cfg.rcnn:
        stage.sampler.num = 16
    _sync_to_plain_bn(model)
    return cfg


def _segmentation_batch(size=64, num_classes=150):
    from mmseg.structures import SegDataSample
    generator = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(2):
        sample = SegDataSample()
        label = torch.randint(0, num_classes, (1, size, size), generator=generator)
        sample.gt_sem_seg = PixelData(data=label)
        sample.set_metainfo(dict(img_shape=(size, size), ori_shape=(size, size)))
        samples.append(sample)
    inputs = [torch.randint(0, 256, (3, size, size), generator=generator, dtype=torch.uint8)
              for _ in range(2)]
    return dict(inputs=inputs, data_samples=samples)


def _detection_batch(size=96):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    generator = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(2):
        boxes = torch.tensor([[8., 10., 50., 60.], [40., 30., 90., 80.]])
        masks = torch.zeros(2, size, size, dtype=torch.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            masks[i, y1:y2, x1:x2] = 1
        sample = DetDataSample()
        sample.gt_instances = InstanceData(bboxes=boxes, labels=torch.tensor([3, 17]),
                                           masks=BitmapMasks(masks.numpy(), size, size))
        sample.set_metainfo(dict(img_shape=(size, size), ori_shape=(size, size),
                                 scale_factor=(1., 1.)))
        samples.append(sample)
    inputs = [torch.randint(0, 256, (3, size, size), generator=generator, dtype=torch.uint8)
              for _ in range(2)]
    return dict(inputs=inputs, data_samples=samples)


def _train_one_iteration(cfg, batch, scope):
    from mmengine.registry import MODELS
    init_default_scope(scope)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    # The layer-wise rates reach the optimizer: stem below the heads, by the config's rule.
    paramwise = cfg.optim_wrapper.paramwise_cfg
    groups = {g['group_name']: g for g in wrapper.optimizer.param_groups}
    stem = groups['layer_0_decay']['lr']
    assert stem == pytest.approx(1e-4 * paramwise.decay_rate ** (paramwise.num_layers + 1))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = model.train_step(batch, wrapper)
    total = float(losses['loss'].detach())  # the sum of every loss term
    assert math.isfinite(total) and total > 0
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith('backbone.stages.') for n in changed)
    assert any(n.startswith('backbone.downsample_layers.0.') for n in changed)


@pytest.mark.parametrize('name', sorted(SEG))
def test_segmentation_config_trains_one_iteration_at_a_tiny_size(name):
    _train_one_iteration(_tiny_segmentor_cfg(name), _segmentation_batch(), 'mmseg')


@pytest.mark.parametrize('name', sorted(DET))
def test_detection_config_trains_one_iteration_at_a_tiny_size(name):
    _train_one_iteration(_tiny_detector_cfg(name), _detection_batch(), 'mmdet')


def test_docs_accumulation_command_keeps_the_global_batch_and_the_schedule():
    """docs/unireplknet.md's command for fewer GPUs: GPUs x images x k = 16, and every iteration
    count of the schedule k times longer, so the optimizer makes the authors' 160k steps."""
    doc = (CONFIG_DIR.parent / 'docs' / 'unireplknet.md').read_text()
    command = re.search(r'^bash tools/dist_train.sh configs/(\S+) (\d+) --cfg-options(.*?)^```',
                        doc, flags=re.MULTILINE | re.DOTALL)
    cfg = _load(command.group(1))
    options = {key: int(value) for key, value in
               (token.split('=') for token in command.group(3).split() if '=' in token)}
    k = options['optim_wrapper.accumulative_counts']
    per_gpu = options.get('train_dataloader.batch_size', cfg.train_dataloader.batch_size)
    assert int(command.group(2)) * per_gpu * k == 16 and k > 1
    iters, warmup = cfg.train_cfg.max_iters, cfg.param_scheduler[0].end
    expected = {
        'optim_wrapper.accumulative_counts': k,
        'train_cfg.max_iters': iters * k,
        'train_cfg.val_interval': cfg.train_cfg.val_interval * k,
        'default_hooks.checkpoint.interval': cfg.default_hooks.checkpoint.interval * k,
        'param_scheduler.0.end': warmup * k,
        'param_scheduler.1.end': iters * k,
    }
    assert {key: value for key, value in options.items()
            if key != 'train_dataloader.batch_size'} == expected
    assert cfg.param_scheduler[1].begin == 0  # the poly decay needs no begin of its own


# name: (input H, W, the authors' README FLOPs in G); the 640 ADE20K figures are at 2560x640.
README_FLOPS = {
    'upernet_unireplknet_t_ade20k_512.py': (512, 2048, 946),
    'upernet_unireplknet_s_ade20k_512.py': (512, 2048, 1036),
    'upernet_unireplknet_b_22k_ade20k_640.py': (640, 2560, 1850),
    'upernet_unireplknet_l_22k_ade20k_640.py': (640, 2560, 2507),
    'upernet_unireplknet_xl_22k_ade20k_640.py': (640, 2560, 3420),
    'cascade_mask_rcnn_unireplknet_t_coco.py': (800, 1280, 749),
    'cascade_mask_rcnn_unireplknet_s_coco.py': (800, 1280, 835),
    'cascade_mask_rcnn_unireplknet_b_22k_coco.py': (800, 1280, 978),
    'cascade_mask_rcnn_unireplknet_l_22k_coco.py': (800, 1280, 1385),
    'cascade_mask_rcnn_unireplknet_xl_22k_coco.py': (800, 1280, 1952),
}


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(README_FLOPS))
def test_flops_of_the_folded_model_are_the_authors(name, no_init):
    """Minutes per config on CPU (the folded model traced once at full size)."""
    from mmreplk.analysis import get_model_complexity
    height, width, flops = README_FLOPS[name]
    result = get_model_complexity(_load(name), shape=(height, width), deploy=True)
    assert abs(result.flops / 1e9 - flops) <= 0.01 * flops, f'{result.flops / 1e9:.1f}G'
