"""Cascade Mask R-CNN ViTDet ViT-L 100 epochs: Detectron2's `projects/ViTDet/configs/COCO/
cascade_mask_rcnn_vitdet_l_100ep.py` recipe with our cascade heads. Published: box AP 57.6 / mask AP 50.0 on COCO
val2017 (its README; model id 328021305, `model_final_1a9f28.pkl`). Needs Detectron2 main. The ViT-B recipe
(`cascade_mask_rcnn_vitdet_B_100ep.py`) with:
  backbone   ViT-L/16 (MAE): 1024 channels, 24 blocks of 16 heads, global attention in blocks 5, 11, 17, 23,
             drop path 0.4
  optimizer  layer-wise lr decay 0.8 over the 24 blocks
Initialise from MAE's ImageNet file (train.init_checkpoint=/path/to/mae_pretrain_vit_large.pth); Detectron2's
published checkpoint (`model_final_1a9f28.pkl`) loads as it is. Activation checkpointing
(model.backbone.net.use_act_checkpoint=True) trades training speed for memory.
"""

from cascade_det.modeling.backbones.vit import vit_layer_decay

from detectron2.config import LazyCall as L

from .cascade_mask_rcnn_vitdet_B_100ep import dataloader, lr_multiplier, model, optimizer, test, train  # noqa: F401

model.backbone.net.update(
    embed_dim=1024,
    depth=24,
    num_heads=16,
    drop_path_rate=0.4,
    window_block_indexes=[i for i in range(24) if i % 6 != 5],  # 5, 11, 17, 23: global attention
)
optimizer.params.lr_factor_func = L(vit_layer_decay)(decay_rate=0.8, num_layers=24)
train.output_dir = "./output/coco_cascade_mask_rcnn_vitdet_L_100ep"
