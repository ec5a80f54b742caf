"""Every segmentation config loads, builds, and holds the paper's recipe (SPEC section 2)."""
import copy
import functools
import re
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

ROOT = Path(__file__).parents[2]
# The RepLKNet configs; tests/test_configs/test_unireplknet_configs.py covers the UniRepLKNet ones.
SEG_CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('upernet_replknet*.py')
                     if '_base_' not in p.parts)

# name: (params in millions from the paper, variant, drop path, crop, test mode)
PAPER = {
    'upernet_replknet31b_ade20k.py': (112, '31B', 0.5, 512, 'whole'),
    'upernet_replknet31b_22k_ade20k_640.py': (112, '31B', 0.3, 640, 'slide'),
    'upernet_replknet31l_22k_ade20k_640.py': (207, '31L', 0.3, 640, 'slide'),
    'upernet_replknetxl_ade20k_640.py': (374, 'XL', 0.5, 640, 'slide'),
    'upernet_replknet31b_cityscapes.py': (110, '31B', 0.5, 769, 'whole'),
}

# name: the authors' (global batch, iterations, warm-up end, resize scale of train and test),
# from their released configs (RepLKNet-pytorch, segmentation/configs).
AUTHORS = {
    'upernet_replknet31b_ade20k.py': (128, 40000, 400, (2048, 512)),
    'upernet_replknet31b_22k_ade20k_640.py': (128, 40000, 400, (2048, 512)),
    'upernet_replknet31l_22k_ade20k_640.py': (64, 80000, 800, (2048, 512)),
    'upernet_replknetxl_ade20k_640.py': (32, 160000, 1500, (2048, 512)),
    'upernet_replknet31b_cityscapes.py': (64, 20000, 400, (2049, 1025)),
}
GPUS = 8  # the layout the configs and the README state
SAMPLES = {'ade20k': 5_120_000, 'cityscapes': 1_280_000}
TTA_RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


@functools.lru_cache(maxsize=None)
def _parse(path):
    # mmengine scans every model-zoo metafile of mmseg for each `mmseg::` base (seconds per
    # config on 2 cores), so each file is parsed once per session.
    return Config.fromfile(str(path))


def _load(path):
    return copy.deepcopy(_parse(Path(path)))


def test_every_paper_config_exists():
    assert set(PAPER) <= {p.name for p in SEG_CONFIGS}


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_builds(path):
    from mmseg.registry import MODELS
    cfg = _load(path)
    assert cfg.default_scope == 'mmseg'
    assert cfg.custom_imports == dict(imports=cfg.custom_imports['imports'],
                                      allow_failed_imports=False)
    assert 'mmreplk' in cfg.custom_imports['imports']
    for key in ('test_pipeline', 'tta_model', 'tta_pipeline'):
        assert key in cfg, key
    init_default_scope('mmseg')
    if path.name in PAPER:
        return  # built (and counted) in test_paper_parameter_count
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == 'RepLKNet'


@pytest.mark.parametrize('name', sorted(PAPER))
def test_paper_recipe(name):
    cfg = _load(ROOT / 'configs' / name)
    _, arch, drop_path, crop, mode = PAPER[name]
    backbone = cfg.model.backbone
    assert backbone.arch == arch and backbone.drop_path_rate == drop_path
    assert backbone.with_cp is True and backbone.norm_cfg.type == 'SyncBN'
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=None)
    heads = (cfg.model.decode_head, cfg.model.auxiliary_head)
    assert all(h.norm_cfg.type == 'SyncBN' for h in heads)
    assert cfg.model.decode_head.type == 'UPerHead' and cfg.model.auxiliary_head.type == 'FCNHead'
    assert cfg.model.decode_head.pool_scales == (1, 2, 3, 6)
    assert cfg.model.auxiliary_head.loss_decode.loss_weight == 0.4
    assert cfg.model.data_preprocessor.size == (crop, crop)
    assert cfg.model.test_cfg.mode == mode
    if mode == 'slide':
        assert cfg.model.test_cfg.crop_size == (640, 640) and cfg.model.test_cfg.stride == (426, 426)

    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.betas, optimizer.weight_decay) == (
        'AdamW', 2e-4, (0.9, 0.999), 0.05)
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0.0
    warmup, poly = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.start_factor == 1e-6
    assert poly.type == 'PolyLR' and poly.power == 1.0 and poly.eta_min == 0.0
    assert warmup.end == poly.begin and poly.end == cfg.train_cfg.max_iters

    ratios = [t['scale'] for t in cfg.tta_pipeline[1]['transforms'][0]]
    assert len(ratios) == 6 and len(cfg.tta_pipeline[1]['transforms'][1]) == 2


@pytest.mark.parametrize('name', sorted(AUTHORS))
def test_authors_batch_and_schedule(name):
    cfg = _load(ROOT / 'configs' / name)
    global_batch, iters, warmup_end, _ = AUTHORS[name]
    accumulation = cfg.optim_wrapper.accumulative_counts
    assert accumulation == 1  # the stated layout holds the global batch on 8 GPUs
    assert cfg.train_dataloader.batch_size * accumulation * GPUS == global_batch
    assert cfg.train_cfg.max_iters == iters
    warmup, poly = cfg.param_scheduler
    assert (warmup.begin, warmup.end, poly.begin, poly.end) == (0, warmup_end, warmup_end, iters)
    assert cfg.optim_wrapper.optimizer.lr == 2e-4
    dataset = 'cityscapes' if 'cityscapes' in name else 'ade20k'
    assert global_batch * iters == SAMPLES[dataset]
    assert cfg.train_cfg.val_interval == cfg.default_hooks.checkpoint.interval == iters // 10


def _transform(pipeline, kind):
    (transform,) = [t for t in pipeline if t['type'] == kind]
    return transform


@pytest.mark.parametrize('name', sorted(AUTHORS))
def test_authors_image_scales(name):
    cfg = _load(ROOT / 'configs' / name)
    scale, crop = AUTHORS[name][3], PAPER[name][3]
    train = cfg.train_dataloader.dataset.pipeline
    assert _transform(train, 'RandomResize') == dict(
        type='RandomResize', scale=scale, ratio_range=(0.5, 2.0), keep_ratio=True)
    assert _transform(train, 'RandomCrop').crop_size == (crop, crop)
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        assert _transform(loader.dataset.pipeline, 'Resize').scale == scale
    assert _transform(cfg.test_pipeline, 'Resize').scale == scale
    tta_resizes = cfg.tta_pipeline[1]['transforms'][0]
    assert [t['scale'] for t in tta_resizes] == [
        (int(scale[0] * r), int(scale[1] * r)) for r in TTA_RATIOS]


def _accumulation_options(cfg, k):
    """The --cfg-options the README gives for k-fold gradient accumulation: k times fewer images
    per GPU, and every iteration count of the schedule k times longer."""
    warmup_end, iters = cfg.param_scheduler[0].end, cfg.train_cfg.max_iters
    return {
        'train_dataloader.batch_size': cfg.train_dataloader.batch_size // k,
        'optim_wrapper.accumulative_counts': k,
        'train_cfg.max_iters': iters * k,
        'train_cfg.val_interval': cfg.train_cfg.val_interval * k,
        'default_hooks.checkpoint.interval': cfg.default_hooks.checkpoint.interval * k,
        'param_scheduler.0.end': warmup_end * k,
        'param_scheduler.1.begin': warmup_end * k,
        'param_scheduler.1.end': iters * k,
    }


def _optimizer_step_lrs(cfg):
    """Learning rates of every optimizer step of a training run under ``cfg``'s optimizer
    wrapper and schedulers, driven as mmengine's IterBasedTrainLoop drives them: one data
    batch per iteration, the schedulers stepped after every iteration."""
    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS

    model = torch.nn.Linear(1, 1)
    optim_wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optim_wrapper))
                  for s in cfg.param_scheduler]
    max_iters = cfg.train_cfg.max_iters
    optim_wrapper.initialize_count_status(model, 0, max_iters)
    lrs = []
    optim_wrapper.optimizer.register_step_pre_hook(
        lambda optimizer, *_: lrs.append(optimizer.param_groups[0]['lr']))
    x = torch.ones(1, 1)
    for _ in range(max_iters):
        optim_wrapper.update_params(model(x).sum())
        for scheduler in schedulers:
            scheduler.step()
    return lrs


@pytest.mark.filterwarnings('ignore:Detected call of')
def test_gradient_accumulation_rule_keeps_the_optimizer_steps_and_lr():
    # The Cityscapes schedule, shortened 50-fold to keep the test fast: the rule is the same at
    # any length.
    cfg = _load(ROOT / 'configs' / 'upernet_replknet31b_cityscapes.py')
    iters, warmup_end = cfg.train_cfg.max_iters // 50, cfg.param_scheduler[0].end // 50
    cfg.merge_from_dict({'train_cfg.max_iters': iters, 'param_scheduler.0.end': warmup_end,
                         'param_scheduler.1.begin': warmup_end, 'param_scheduler.1.end': iters})
    k = 4
    reference = _optimizer_step_lrs(cfg)
    assert len(reference) == iters and reference[warmup_end] == pytest.approx(2e-4, rel=1e-6)

    # Accumulation alone: the schedule counts data batches (reference[i] is its value after i
    # of them), so the run makes k times fewer optimizer steps and runs each at the value of
    # its last data batch: the warm-up and the decay take k times fewer steps.
    naive = copy.deepcopy(cfg)
    naive.merge_from_dict({'optim_wrapper.accumulative_counts': k})
    assert _optimizer_step_lrs(naive) == reference[k - 1::k]

    accumulated = copy.deepcopy(cfg)
    accumulated.merge_from_dict(_accumulation_options(cfg, k))
    assert accumulated.train_dataloader.batch_size * k == cfg.train_dataloader.batch_size
    lrs = _optimizer_step_lrs(accumulated)
    assert len(lrs) == iters
    # Optimizer step j follows data batches jk .. jk + k - 1 and runs at the stretched schedule's
    # value after them, j + (k - 1) / k reference steps in: between the reference's steps j and
    # j + 1.
    for j, lr in enumerate(lrs[:-1]):
        low, high = sorted(reference[j:j + 2])
        assert low * (1 - 1e-9) <= lr <= high * (1 + 1e-9), (j, lr, reference[j:j + 2])


def test_readme_states_the_schedules_and_the_accumulation_command():
    readme = (ROOT / 'README.md').read_text()
    row = r'^\| `(upernet_\w+\.py)` \| [^|]+ \| 8 x (\d+) = (\d+) \| (\d+)k \| (\d+) \|'
    rows = re.findall(row, readme, flags=re.MULTILINE)
    assert {name for name, *_ in rows} == set(AUTHORS)
    for name, per_gpu, global_batch, kilo_iters, warmup_end in rows:
        cfg = _load(ROOT / 'configs' / name)
        assert cfg.train_dataloader.batch_size == int(per_gpu)
        assert AUTHORS[name][0] == int(global_batch)
        assert (cfg.train_cfg.max_iters, cfg.param_scheduler[0].end) == (
            int(kilo_iters) * 1000, int(warmup_end))

    command = re.search(r'^bash tools/dist_train.sh configs/(\S+) 8 --cfg-options(.*?)^```', readme,
                        flags=re.MULTILINE | re.DOTALL)
    options = dict(token.split('=') for token in command.group(2).split() if '=' in token)
    cfg = _load(ROOT / 'configs' / command.group(1))
    k = int(options['optim_wrapper.accumulative_counts'])
    assert {key: int(value) for key, value in options.items()} == _accumulation_options(cfg, k)


def test_variant_specifics():
    xl = _load(ROOT / 'configs' / 'upernet_replknetxl_ade20k_640.py')
    assert xl.model.data_preprocessor.mean == [127.5] * 3 == xl.model.data_preprocessor.std
    assert xl.model.backbone.norm_intermediate_features is True
    assert xl.param_scheduler[0].end == 1500
    city = _load(ROOT / 'configs' / 'upernet_replknet31b_cityscapes.py')
    assert city.model.decode_head.align_corners and city.model.auxiliary_head.align_corners
    assert city.model.decode_head.num_classes == 19
    assert city.train_dataloader.dataset.type == 'CityscapesDataset'


def _count_params(name, monkeypatch):
    """Parameters of the deployed inference model: the backbone re-parameterized (``deploy=True``:
    small kernels and BNs folded), without the auxiliary head, which only serves the training loss.
    This is what the paper counts: rounded to whole millions, folded counts give its figures for
    ImageNet (31B 79M, 31L 172M), ADE20K (31L 207M) and COCO (31L 229M), where training-form
    counts give 80M, 173M, 208M and 230M (README, "Parameters and FLOPs")."""
    import torch

    from mmreplk.tasks import build_model
    # Counting needs no initial values, and default-initialising ~1e9 conv weights is what makes
    # these builds slow (about 8x).
    monkeypatch.setattr(torch.nn.Conv2d, 'reset_parameters', lambda self: None)
    model = build_model(_load(ROOT / 'configs' / name), deploy=True)
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith('auxiliary'))


@pytest.mark.parametrize('name', sorted(PAPER))
def test_paper_parameter_count(name, monkeypatch):
    count, paper = _count_params(name, monkeypatch), PAPER[name][0]
    assert abs(count - paper * 1e6) <= 0.015 * paper * 1e6, f'{count / 1e6:.2f}M vs {paper}M'
    if 'cityscapes' not in name:  # 111.61M: the paper's 110M is not in the model (below)
        assert round(count / 1e6) == paper, f'{count / 1e6:.2f}M vs {paper}M'


def test_cityscapes_model_is_the_ade20k_model_with_19_classes(monkeypatch):
    # As in the authors' Cityscapes config: of the counted modules only the decode head's
    # classifier (512 inputs + bias per class) differs, so the paper's 2M gap between its ADE20K
    # and Cityscapes counts is not in the model.
    city = _count_params('upernet_replknet31b_cityscapes.py', monkeypatch)
    ade = _count_params('upernet_replknet31b_ade20k.py', monkeypatch)
    assert city == ade - (150 - 19) * (512 + 1)
