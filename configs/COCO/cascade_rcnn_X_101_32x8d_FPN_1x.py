"""Cascade R-CNN X101-32x8d-FPN 1x (MMDetection's recipe with a ResNeXt-101 32x8d backbone, torchvision style).
No published MMDetection number for 32x8d; its X101-64x4d 1x reaches box AP 44.7."""

from cascade_det.modeling import FrozenStatsBatchNorm2d

from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import BottleneckBlock, ResNet

from .cascade_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, test, train  # noqa: F401

# ResNet.make_default_stages ties the bottleneck width to the output width (/4); ResNeXt needs its own.
GROUPS, WIDTH = 32, 8
model.backbone.bottom_up.stages = [
    L(ResNet.make_stage)(
        block_class=BottleneckBlock,
        num_blocks=blocks,
        stride_per_block=[stride] + [1] * (blocks - 1),
        in_channels=in_channels,
        out_channels=out_channels,
        bottleneck_channels=GROUPS * WIDTH * 2**k,
        num_groups=GROUPS,
        stride_in_1x1=False,
        norm=L(FrozenStatsBatchNorm2d.norm)(),
    )
    for k, (blocks, stride, in_channels, out_channels) in enumerate(
        [(3, 1, 64, 256), (4, 2, 256, 512), (23, 2, 512, 1024), (3, 2, 1024, 2048)]
    )
]
train.output_dir = "./output/coco_cascade_rcnn_X_101_32x8d_FPN_1x"
