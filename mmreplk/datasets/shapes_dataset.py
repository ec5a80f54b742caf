"""mmseg dataset class of the demo data written by :mod:`mmreplk.datasets.demo`.

Kept apart from the generator because it imports mmseg; configs load it through
``custom_imports=dict(imports=['mmreplk', 'mmreplk.datasets.shapes_dataset'])``.
"""
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .demo import DEMO_CLASSES, DEMO_PALETTE


@DATASETS.register_module()
class ReplkShapesDataset(BaseSegDataset):
    """The demo "shapes on a landscape" dataset, in ADE20K layout and label convention.

    Images are ``.jpg``, labels ``.png`` with 0 = unlabelled, so ``reduce_zero_label`` is on.

    Args:
        **kwargs: Arguments of ``mmseg.datasets.BaseSegDataset`` (``data_root``,
            ``data_prefix``, ``pipeline``, ...).
    """

    METAINFO = dict(classes=DEMO_CLASSES, palette=DEMO_PALETTE)

    def __init__(self, **kwargs) -> None:
        super().__init__(img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
                         **kwargs)
