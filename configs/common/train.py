"""Run settings: Detectron2's `common/train.py` plus cascade_det's own keys (read by CascadeTrainer)."""
from detectron2 import model_zoo

train = model_zoo.get_config("common/train.py").train
train.update(
    per_stage_eval=False,  # also report each stage's AP at IoU 0.50..0.95 (and a plot) at every evaluation
    reference_world_size=0,  # >0: batch, lr and schedule scale with the process count (see README)
    allow_unsafe_pickle=False,  # True: load checkpoints with arbitrary unpickling (trusted files only)
    seed=-1,
    # Speed options that keep outputs (cascade_det.modeling.speed): frozen BN folded into the convolutions,
    # channels-last convolutions at inference. Applied by CascadeTrainer.build_model.
    speed=dict(fold_frozen_bn=True, channels_last_inference=True),
)
