"""Cascade Mask R-CNN ViTDet ViT-B 100 epochs: Detectron2's `projects/ViTDet/configs/COCO/
cascade_mask_rcnn_vitdet_b_100ep.py` recipe with our cascade heads. Published: box AP 54.0 / mask AP 46.7 on COCO
val2017 (its README; model id 325358525, `model_final_435fa9.pkl`; 64 A100 GPUs x 1 image). Needs Detectron2 main
(its `ViT` and `SimpleFeaturePyramid`; on 0.6 this file raises ImportError saying so). The ViT-L recipe derives
from this file. What it changes from Detectron2's own R50 cascade (`configs/COCO-Detectron2/cascade_mask_rcnn_R_50_
FPN_1x.py`, whose cascade semantics it keeps: re-labelled stages, losses summed, mean of the stages' probabilities,
class-agnostic regression with weights (10, 10, 5, 5) x1, x2, x3, one mask head trained on stage 0's RoIs):
  backbone   ViT-B/16 (MAE), window attention 14x14 in all blocks but 2, 5, 8, 11 (global), relative positions,
             drop path 0.1 (model.backbone.net.use_act_checkpoint=True: activation checkpointing of every block,
             less memory in training; model.backbone.net.frozen_blocks=k freezes the embeddings and k blocks);
             simple feature pyramid p2..p6 (LN) from its stride-16 map; inputs padded to 1024x1024; RGB, ImageNet
             mean and std
  RPN        2 convolutions; 1000 proposals per image in training and at test
  heads      box heads of 4 3x3 convolutions of 256 channels with LN and one fc of 1024 ("4conv1fc"), mask head
             with LN
  data       large-scale jitter 0.1-2.0 at 1024 (`common/data/coco_lsj.py`), 64 images per batch (on any number
             of GPUs, as projects/ViTDet runs; train.reference_world_size=64 scales batch, lr and iterations instead)
  optimizer  AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.1, none on torch norms (the ViT's LayerNorms;
             not Detectron2's channel LN of the pyramid and heads) and the position embedding;
             layer-wise lr decay 0.7 over the 12 blocks (`vit_layer_decay`)
  schedule   184,375 iterations (100 epochs), lr x0.1 at 163,889 and 177,546, 250 linear warm-up iterations from
             0.001; mixed precision (AMP), fp16 gradient compression in DDP
Initialise from MAE's ImageNet file (train.init_checkpoint=/path/to/mae_pretrain_vit_base.pth, recognised and
renamed on load); Detectron2's published ViTDet checkpoint loads as it is:
    python train_net.py --config-file configs/COCO/cascade_mask_rcnn_vitdet_B_100ep.py --eval-only \
        train.init_checkpoint=/path/to/model_final_435fa9.pkl
"""

import torch
from fvcore.common.param_scheduler import MultiStepParamScheduler

from cascade_det.modeling import lazy_cascade_stages
from cascade_det.modeling.backbones.vit import SimpleFeaturePyramid, build_vit, layer_norm, vit_layer_decay

from detectron2.config import LazyCall as L
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.solver import WarmupParamScheduler, get_default_optimizer_params

from ..common.data.coco_lsj import IMAGE_SIZE, dataloader
from ..common.models.cascade_rcnn_fpn import model
from ..common.models.mask_head import add_mask_heads
from ..common.train import test, train

model.backbone = L(SimpleFeaturePyramid)(
    net=L(build_vit)(  # Detectron2's ViT(...), and frozen_blocks (-1: ViTDet trains every block)
        frozen_blocks=-1,
        img_size=IMAGE_SIZE,
        patch_size=16,
        embed_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=True,
        drop_path_rate=0.1,
        norm_layer=L(layer_norm)(eps=1e-6),
        window_size=14,
        window_block_indexes=[0, 1, 3, 4, 6, 7, 9, 10],  # 2, 5, 8, 11: global attention
        residual_block_indexes=[],
        use_rel_pos=True,
        out_feature="last_feat",
    ),
    in_feature="${.net.out_feature}",
    out_channels=256,
    scale_factors=(4.0, 2.0, 1.0, 0.5),
    top_block=L(LastLevelMaxPool)(),
    norm="LN",
    square_pad=IMAGE_SIZE,
)
model.input_format = "RGB"
model.pixel_mean = [123.675, 116.28, 103.53]
model.pixel_std = [58.395, 57.12, 57.375]
model.proposal_generator.head.conv_dims = [-1, -1]  # two 3x3 convolutions of the input's channels
model.proposal_generator.post_nms_topk = (1000, 1000)
model.roi_heads.update(
    **lazy_cascade_stages(conv_dims=[256] * 4, fc_dims=[1024], conv_norm="LN", cls_agnostic_bbox_reg=True)
)
add_mask_heads(model, dataloader, per_stage=False)  # one mask head, trained on stage 0's RoIs (Detectron2's)
model.roi_heads.mask_train_stage = 0
model.roi_heads.mask_head.conv_norm = "LN"

optimizer = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(
        base_lr="${..lr}",
        weight_decay_norm=0.0,
        overrides={"pos_embed": {"weight_decay": 0.0}},
        lr_factor_func=L(vit_layer_decay)(decay_rate=0.7, num_layers=12),
    ),
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=0.1,
)

train.max_iter = 184375  # 100 epochs of 118k images at 64 per batch
# Steps at 88.9% and 96.3% of the run, whatever train.max_iter becomes (a shorter run, reference_world_size scaling):
# the scheduler sees the fraction of the run done, times num_updates.
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[163889, 177546], num_updates=train.max_iter
    ),
    warmup_length=250 / train.max_iter,
    warmup_method="linear",
    warmup_factor=0.001,
)
train.update(
    output_dir="./output/coco_cascade_mask_rcnn_vitdet_B_100ep",
    eval_period=train.max_iter,
    init_checkpoint="",
    per_stage_eval=True,
)
train.amp.enabled = True
train.ddp.fp16_compression = True
train.checkpointer.period = 5000
