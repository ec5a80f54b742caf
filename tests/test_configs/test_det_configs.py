"""The detection configs load, build, hold the paper's recipe and match its parameter counts."""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DATASETS, MODELS, init_default_scope
from torch.nn.modules.batchnorm import _BatchNorm

from mmreplk.datasets.demo_coco import DEMO_COCO_CLASSES, generate_demo_coco
from mmreplk.datasets.layout import DatasetLayoutError, check_dataset_layout
from mmreplk.models import RepLKNet, reparameterize

CONFIG_DIR = Path(__file__).parents[2] / 'configs'
DEMO_CONFIG = CONFIG_DIR / 'demo' / 'cascade_mask_rcnn_replknet_tiny_demo.py'

# name: (arch, drop-path rate, images per GPU, paper's parameter count)
PAPER = {
    'cascade_mask_rcnn_replknet31b_coco.py': ('31B', 0.6, 1, 137e6),
    'cascade_mask_rcnn_replknet31b_22k_coco.py': ('31B', 0.4, 1, 137e6),
    'cascade_mask_rcnn_replknet31l_22k_coco.py': ('31L', 0.7, 1, 229e6),
    'cascade_mask_rcnn_replknetxl_coco.py': ('XL', 0.5, 4, 392e6),
}
ALL_CONFIGS = [CONFIG_DIR / name for name in PAPER] + [DEMO_CONFIG]


def build_model(cfg):
    init_default_scope('mmdet')
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module', params=list(PAPER))
def paper_model(request):
    """(name, config, model); module scope with params groups the tests of one config, so each
    full-size model is built once and freed before the next."""
    cfg = Config.fromfile(CONFIG_DIR / request.param)
    return request.param, cfg, build_model(cfg)


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=lambda p: p.stem)
def test_config_loads_with_a_top_level_test_pipeline(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports == dict(imports=['mmreplk'], allow_failed_imports=False)
    assert cfg.test_pipeline[0]['type'] == 'LoadImageFromFile'
    assert sorted(cfg.val_evaluator.metric) == ['bbox', 'segm']
    assert cfg.val_evaluator.type == cfg.test_evaluator.type == 'CocoMetric'


def test_full_model_parameter_count_matches_paper(paper_model):
    name, cfg, model = paper_model
    count = sum(p.numel() for p in model.parameters())
    expected = PAPER[name][3]
    assert abs(count - expected) <= 0.015 * expected, \
        f'{count / 1e6:.1f}M parameters vs the paper\'s {expected / 1e6:.0f}M'
    backbone = model.backbone
    assert isinstance(backbone, RepLKNet)
    assert list(model.neck.in_channels) == backbone.channels
    # The paper counts the re-parameterized model (31L: 228.9M folded, 229.6M in training form).
    folded = reparameterize(copy.deepcopy(backbone))
    deployed = count - sum(p.numel() for p in backbone.parameters()) + sum(
        p.numel() for p in folded.parameters())
    assert round(deployed / 1e6) == expected / 1e6, f'{deployed / 1e6:.2f}M folded'


def test_paper_recipe(paper_model):
    name, cfg, model = paper_model
    arch, drop_path, batch, _ = PAPER[name]
    backbone = model.backbone
    assert backbone.arch_setting == RepLKNet.arch_settings[arch]
    assert cfg.model.backbone.drop_path_rate == drop_path
    last_block = backbone.stages[-1].blocks[-1]
    assert last_block.drop_path.drop_prob == pytest.approx(drop_path)
    assert backbone.with_cp and all(block.with_cp for stage in backbone.stages
                                    for block in stage.blocks)
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=None)
    assert cfg.train_dataloader.batch_size == batch
    # XL downstream: a BN on every stage output and mean = std = 127.5 (its arch entry already
    # has no small kernel and dw_ratio 1.5).
    xl = arch == 'XL'
    assert all(isinstance(stage.norm, _BatchNorm) == xl for stage in backbone.stages)
    mean, std = ([127.5] * 3, [127.5] * 3) if xl else ([123.675, 116.28, 103.53],
                                                      [58.395, 57.12, 57.375])
    assert model.data_preprocessor.mean.flatten().tolist() == pytest.approx(mean)
    assert model.data_preprocessor.std.flatten().tolist() == pytest.approx(std)

    neck = model.neck
    assert (neck.out_channels, neck.num_outs) == (256, 5)
    rpn_anchor = model.rpn_head.prior_generator
    assert list(rpn_anchor.scales.tolist()) == [8]
    assert sorted(rpn_anchor.ratios.tolist()) == [0.5, 1.0, 2.0]
    assert [s[0] for s in rpn_anchor.strides] == [4, 8, 16, 32, 64]

    roi_head = model.roi_head
    assert roi_head.num_stages == 3
    assert roi_head.stage_loss_weights == [1, 0.5, 0.25]
    assert [stage.assigner.pos_iou_thr for stage in cfg.model.train_cfg.rcnn] == [0.5, 0.6, 0.7]
    for head_cfg, head in zip(cfg.model.roi_head.bbox_head, roi_head.bbox_head):
        assert head_cfg.type == 'Shared4Conv1FCBBoxHead'
        assert head_cfg.norm_cfg.type == 'SyncBN'
        assert (head.num_shared_convs, head.num_shared_fcs) == (4, 1)
        assert head.reg_decoded_bbox
        assert type(head.loss_bbox).__name__ == 'GIoULoss' and head.loss_bbox.loss_weight == 10
    assert roi_head.bbox_roi_extractor[0].roi_layers[0].output_size == (7, 7)
    assert roi_head.mask_roi_extractor[0].roi_layers[0].output_size == (14, 14)
    assert all(head.num_convs == 4 for head in roi_head.mask_head)

    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 4e-4, 0.05)
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.by_epoch, warmup.end) == ('LinearLR', False, 500)
    assert (steps.type, steps.milestones) == ('MultiStepLR', [27, 33])
    assert cfg.train_cfg.max_epochs == 36


def test_norm_layers_get_no_weight_decay():
    """The paper's optimizer settings, applied to the (small) demo model."""
    cfg = Config.fromfile(CONFIG_DIR / 'cascade_mask_rcnn_replknet31b_coco.py')
    model = build_model(Config.fromfile(DEMO_CONFIG))
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    norm_params = {id(p) for m in model.modules() if isinstance(m, _BatchNorm)
                   for p in m.parameters()}
    decays = {'norm': set(), 'other': set()}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            decays['norm' if id(param) in norm_params else 'other'].add(group['weight_decay'])
    assert decays == {'norm': {0.0}, 'other': {0.05}}


def test_train_augmentation_picks_paper_scales(tmp_path):
    files = generate_demo_coco(tmp_path, num_train=2, num_val=1, image_size=(120, 160))
    cfg = Config.fromfile(CONFIG_DIR / 'cascade_mask_rcnn_replknet31b_coco.py')
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.update(data_root=str(files.root), metainfo=dict(classes=DEMO_COCO_CLASSES),
                       filter_cfg=None)
    init_default_scope('mmdet')
    dataset = DATASETS.build(dataset_cfg)
    short_sides = set()
    for _ in range(12):
        sample = dataset[0]
        height, width = sample['inputs'].shape[-2:]
        short_sides.add(min(height, width))
        # Both policies end with a keep-ratio resize to (1333, short side 480..800).
        assert max(height, width) <= 1333
        boxes = sample['data_samples'].gt_instances.bboxes.tensor
        assert (boxes[:, 2:] <= torch.tensor([width, height])).all()
    assert short_sides <= set(range(480, 801, 32)) and len(short_sides) > 1


def test_demo_config_matches_generated_classes():
    cfg = Config.fromfile(DEMO_CONFIG)
    assert tuple(cfg.train_dataloader.dataset.metainfo.classes) == DEMO_COCO_CLASSES
    model = build_model(cfg)
    assert all(head.num_classes == len(DEMO_COCO_CLASSES) for head in model.roi_head.bbox_head)
    assert all(head.num_classes == len(DEMO_COCO_CLASSES) for head in model.roi_head.mask_head)


@pytest.mark.parametrize('missing', ['root', 'annotations'])
def test_missing_coco_stops_with_layout_message(tmp_path, missing):
    root = tmp_path / 'coco'
    if missing == 'annotations':
        for folder in ('train2017', 'val2017'):
            (root / folder).mkdir(parents=True)
            (root / folder / '0.jpg').write_bytes(b'x')
    cfg = Config.fromfile(CONFIG_DIR / 'cascade_mask_rcnn_replknet31b_coco.py')
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = str(root) + '/'
    with pytest.raises(DatasetLayoutError) as err:
        check_dataset_layout(cfg)
    message = str(err.value)
    expected_path = root if missing == 'root' else root / 'annotations/instances_train2017.json'
    assert str(expected_path) in message.replace('//', '/')
    assert 'annotations/instances_train2017.json' in message and 'val2017/' in message
    assert 'cocodataset.org' in message
