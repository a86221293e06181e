"""Cascade Mask R-CNN R50-FPN 1x in Detectron2's own recipe (its model zoo's `Misc/cascade_mask_rcnn_R_50_FPN_1x`:
box AP 42.1, mask AP 36.4, model id 138602847, `model_final_e9d89b.pkl`), with our cascade heads.

Its published checkpoint loads as it is (every tensor matched) and predicts what Detectron2's built-in
`CascadeROIHeads` predicts:
    python train_net.py --config-file configs/COCO-Detectron2/cascade_mask_rcnn_R_50_FPN_1x.py --eval-only \
        train.init_checkpoint=/path/to/model_final_e9d89b.pkl
What makes it Detectron2's recipe: MSRA R-50 (stride in the 1x1 conv, BGR, Caffe2 mean and std 1; initialise
training from MSRA's R-50.pkl), 2000 RPN proposals in training, re-labelled stages with losses summed, mean of the
stages' probabilities at test, one mask head trained on stage 0's RoIs, multi-scale training (640-800),
90k iterations at batch 16.
"""

from cascade_det.data import build_train_loader

from detectron2 import model_zoo

from ..common.models.cascade_rcnn_fpn import model
from ..common.models.mask_head import add_mask_heads
from ..common.train import test, train

model.roi_heads.mask_train_stage = 0
model.proposal_generator.post_nms_topk = (2000, 1000)

dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.train._target_ = build_train_loader  # Detectron2's loader, resumable exactly
add_mask_heads(model, dataloader, per_stage=False)  # one mask head, trained on stage 0's RoIs
optimizer = model_zoo.get_config("common/optim.py").SGD
lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_1x
train.update(
    max_iter=90000,
    eval_period=90000,
    init_checkpoint="",
    output_dir="./output/coco_detectron2_cascade_mask_rcnn_R_50_FPN_1x",
    per_stage_eval=True,
    reference_world_size=8,
)
