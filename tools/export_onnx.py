"""Export the deploy form of a RepLKNet segmentor to ONNX and check it with onnxruntime.

Example:
    python tools/export_onnx.py configs/upernet_replknet31b_ade20k.py \
        work_dirs/upernet_replknet31b/iter_40000.pth deploy/upernet_replknet31b.onnx

The graph takes float32 BGR images (N, 3, H, W) in [0, 255] (normalization included) and
returns logits (N, num_classes, H, W). Needs ``pip install onnx onnxruntime`` for the check.
"""
from __future__ import annotations

import argparse
import sys

from mmreplk.apis import add_config_args, checkpoint_trust, exit_on_user_error, load_config
from mmreplk.deployment import DEFAULT_RTOL, export_onnx


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export a segmentor (re-parameterized) to ONNX; onnxruntime must match '
        'PyTorch within --rtol x max |output|.')
    parser.add_argument('config', help='segmentation config')
    parser.add_argument('checkpoint', help='training-form or re-parameterized checkpoint')
    parser.add_argument('out', help='output .onnx file')
    parser.add_argument('--shape', type=int, nargs=2, default=[512, 512], metavar=('H', 'W'),
                        help='image size of the graph (default 512 512)')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (default 17)')
    parser.add_argument('--rtol', type=float, default=DEFAULT_RTOL,
                        help=f'accepted max |ort - torch| / max |torch| (default {DEFAULT_RTOL:g})')
    parser.add_argument('--no-check', action='store_true', help='skip the onnxruntime check')
    add_config_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with exit_on_user_error(), checkpoint_trust(args):
        result = export_onnx(load_config(args.config, args.cfg_options), args.checkpoint,
                             args.out, shape=args.shape, opset=args.opset,
                             check=not args.no_check, rtol=args.rtol)
    print(f'wrote {result.path} (input {result.input_shape}, batch dynamic)')
    if result.max_abs_diff is not None:
        print(f'onnxruntime vs PyTorch: max |diff| = {result.max_abs_diff:.3e}, max |output| '
              f'= {result.max_abs_output:.3e} (tolerance {result.rtol:g} x max |output|)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
