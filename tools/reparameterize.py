"""Fold a trained RepLKNet or UniRepLKNet segmentor or detector checkpoint into its deploy form.

Example:
    python tools/reparameterize.py configs/upernet_replknet31b_ade20k.py \
        work_dirs/upernet_replknet31b/iter_40000.pth deploy/upernet_replknet31b.pth --verify

The written checkpoint loads into the same config with
``--cfg-options model.backbone.deploy=True``.
"""
from __future__ import annotations

import argparse
import sys

from mmreplk.apis import (ToolError, add_config_args, checkpoint_trust, exit_on_user_error,
                          load_config)
from mmreplk.deployment import reparameterize_checkpoint
from mmreplk.tasks import synthetic_image


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Re-parameterize a trained checkpoint (fold every BN and small or dilated '
        'kernel of the RepLKNet / UniRepLKNet backbone, and UniRepLKNet\'s GRN bias and layer '
        'scales) so it loads with model.backbone.deploy=True.')
    parser.add_argument('config', help='config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='training-form checkpoint')
    parser.add_argument('out', help='where to write the deploy-form checkpoint')
    parser.add_argument('--verify', nargs='?', const='', metavar='IMAGE',
                        help='run both forms on IMAGE (default: a random 512x512 image) and '
                        'print their max difference; exits 1 above --tolerance')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest accepted max |difference| / max |output| (default 1e-4)')
    add_config_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    image = None if args.verify is None else (args.verify or synthetic_image())
    with exit_on_user_error(), checkpoint_trust(args):
        result = reparameterize_checkpoint(load_config(args.config, args.cfg_options),
                                           args.checkpoint, args.out, verify_image=image)
        print(f'wrote {result.out} ({result.num_tensors_before} -> {result.num_tensors} '
              'tensors); load it with --cfg-options model.backbone.deploy=True')
        if result.max_abs_diff is not None:
            print(f'verify: max |deploy - train| = {result.max_abs_diff:.3e}, max |train| = '
                  f'{result.max_abs_output:.3e}, relative {result.relative_diff:.2e} '
                  f'(tolerance {args.tolerance:g})')
            if result.relative_diff > args.tolerance:
                raise ToolError('the deploy form does not reproduce the training form; check '
                                'that the config matches the checkpoint (norm_cfg, arch)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
