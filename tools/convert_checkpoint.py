"""Convert a released or mmpretrain-converted RepLKNet or UniRepLKNet file into a clean backbone
checkpoint.

Examples:
    python tools/convert_checkpoint.py RepLKNet-31B_ImageNet-1K_224.pth \
        checkpoints/replknet31b_in1k_backbone.pth
    python tools/convert_checkpoint.py unireplknet_t_in1k_224_acc83.21.pth \
        checkpoints/unireplknet_t_in1k_backbone.pth
    python tools/convert_checkpoint.py RepLKNet-31B_ImageNet-1K_224.pth \
        checkpoints/replknet31b_in1k_backbone.safetensors --safetensors

Use the result with ``model.backbone.init_cfg=dict(type='Pretrained', checkpoint=DST)``.
"""
from __future__ import annotations

import argparse
import sys

from mmreplk.apis import add_trust_arg, checkpoint_trust, exit_on_user_error
from mmreplk.deployment import convert_checkpoint
from mmreplk.models import RepLKNet, UniRepLKNet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write the backbone weights of a RepLKNet or UniRepLKNet checkpoint (official, '
        'mmpretrain or downstream layout), dropping the classifier and reporting dropped/missing '
        'keys.')
    parser.add_argument('src', help='released, mmpretrain or downstream checkpoint')
    parser.add_argument('dst', help='output file')
    archs = sorted(set(RepLKNet.arch_settings) | set(UniRepLKNet.arch_settings))
    parser.add_argument('--arch', choices=archs,
                        help='check the weights against this arch of the family the file holds '
                        '(RepLKNet: 31B, 31L, XL; UniRepLKNet: A .. XL); default: the structure '
                        'read off the file')
    parser.add_argument('--safetensors', action='store_true',
                        help='write safetensors instead of a torch pickle')
    add_trust_arg(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with exit_on_user_error(), checkpoint_trust(args):
        report = convert_checkpoint(args.src, args.dst, arch=args.arch,
                                    safetensors=args.safetensors)
    print(report.summary())
    return 0


if __name__ == '__main__':
    sys.exit(main())
