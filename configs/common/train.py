"""Run settings: Detectron2's `common/train.py` plus cascade_det's own keys with their defaults (the table in
`cascade_det.config.OPTIONS`), read, checked and recorded by `cascade_det.engine.Run`."""

from cascade_det.config import lazy_train_defaults

from detectron2 import model_zoo

train = model_zoo.get_config("common/train.py").train
train.update(**lazy_train_defaults(), seed=-1)
