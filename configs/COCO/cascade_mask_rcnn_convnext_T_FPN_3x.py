"""Cascade Mask R-CNN ConvNeXt-T FPN 3x: facebookresearch/ConvNeXt `object_detection`'s
`cascade_mask_rcnn_convnext_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco_in1k` recipe. Published:
box AP 50.4 / mask AP 43.7 on COCO val2017 (its README). The Swin-T recipe (`cascade_mask_rcnn_swin_T_FPN_3x.py`:
4conv1fc SyncBN heads, GIoU, class-specific regression, multi-scale crops, 36 epochs, AMP) with:
  backbone   ConvNeXt-T (`cascade_det.modeling.ConvNeXt`: timm's modules, output norms), drop path 0.4, layer
             scale initialised at 1.0
  optimizer  AdamW lr 2e-4, weight decay 0.05 except on 1-D parameters and biases, layer-wise lr decay 0.7 over
             6 layers (`convnext_lr_decay_rate`: stem x0.7^7 ... stage 3 x0.7, FPN and heads x1)
Initialise from the official ImageNet file (train.init_checkpoint=/path/to/convnext_tiny_1k_224_ema.pth, renamed
on load); a published ConvNeXt detector (.pth) loads the same way, converted.
"""

from cascade_det.modeling import ConvNeXt
from cascade_det.modeling.backbones import convnext_layer_decay
from cascade_det.solver import layer_decay_optimizer_params

from detectron2.config import LazyCall as L

from .cascade_mask_rcnn_swin_T_FPN_3x import dataloader, lr_multiplier, model, optimizer, test, train  # noqa: F401

model.backbone.bottom_up = L(ConvNeXt)(
    depths=[3, 3, 9, 3],
    dims=[96, 192, 384, 768],
    drop_path_rate=0.4,
    layer_scale_init_value=1.0,
    out_features=["p0", "p1", "p2", "p3"],
)
optimizer.lr = 2e-4
optimizer.params = L(layer_decay_optimizer_params)(
    base_lr="${..lr}",
    weight_decay="${..weight_decay}",
    lr_factor_func=L(convnext_layer_decay)(decay_rate=0.7, num_layers=6),
)
train.output_dir = "./output/coco_cascade_mask_rcnn_convnext_T_FPN_3x"
