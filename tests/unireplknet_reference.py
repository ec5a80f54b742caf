"""Facts of the authors' UniRepLKNet release, written from their unireplknet.py for the tests,
and the randomization that makes every UniRepLKNet fold a real test."""
import torch

from helpers import randomize_bn_stats

BN_KEYS = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')

#: The (kernel, dilation) branches of the authors' DilatedReparamBlock.
AUTHORS_BRANCHES = {
    17: [(5, 1), (9, 2), (3, 4), (3, 5), (3, 7)], 15: [(5, 1), (7, 2), (3, 3), (3, 5), (3, 7)],
    13: [(5, 1), (7, 2), (3, 3), (3, 4), (3, 5)], 11: [(5, 1), (5, 2), (3, 3), (3, 4), (3, 5)],
    9: [(5, 1), (5, 2), (3, 3), (3, 4)], 7: [(5, 1), (3, 2), (3, 3)]}


def authors_keys(depths, kernel_sizes, deploy=False, out_norms=range(4)):
    """State-dict names of the authors' downstream UniRepLKNet (``norm0``.. per output)."""
    keys = [f'downsample_layers.0.{i}.{p}' for i in (0, 1, 3, 4) for p in ('weight', 'bias')]
    keys += [f'downsample_layers.{s}.{i}.{p}' for s in range(1, len(depths)) for i in (0, 1)
             for p in ('weight', 'bias')]
    for s, depth in enumerate(depths):
        for b in range(depth):
            pre = f'stages.{s}.{b}.'
            k = kernel_sizes[s][b]
            bias = ['bias'] if deploy else []
            if k >= 7:
                keys += [pre + f'dwconv.lk_origin.{p}' for p in ['weight'] + bias]
                if not deploy:
                    keys += [pre + f'dwconv.origin_bn.{p}' for p in BN_KEYS]
                    for kk, r in AUTHORS_BRANCHES[k]:
                        keys.append(pre + f'dwconv.dil_conv_k{kk}_{r}.weight')
                        keys += [pre + f'dwconv.dil_bn_k{kk}_{r}.{p}' for p in BN_KEYS]
            else:
                keys += [pre + f'dwconv.{p}' for p in ['weight'] + bias]
            keys += [pre + f'se.{m}.{p}' for m in ('down', 'up') for p in ('weight', 'bias')]
            keys += [pre + 'pwconv1.1.weight', pre + 'pwconv1.1.bias', pre + 'act.1.gamma',
                     pre + 'pwconv2.0.weight']
            if deploy:
                keys.append(pre + 'pwconv2.0.bias')
            else:
                keys += [pre + f'norm.{p}' for p in BN_KEYS]
                keys += [pre + f'pwconv2.2.{p}' for p in BN_KEYS]
                keys += [pre + 'act.1.beta', pre + 'gamma']
    keys += [f'norm{i}.{p}' for i in out_norms for p in ('weight', 'bias')]
    return keys


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Random BN statistics, GRN parameters and layer scales (zeros and 1e-6 at init would hide a
    wrong fold)."""
    randomize_bn_stats(model)
    for name, param in model.named_parameters():
        if name.endswith(('act.1.gamma', 'act.1.beta')):
            param.data.normal_()
        elif name.endswith('gamma'):
            param.data.uniform_(0.5, 1.5)
    return model
