"""Run settings: Detectron2's `common/train.py` plus cascade_det's own keys with their defaults, and `test` (test-time
augmentation) (the table in
`cascade_det.config.OPTIONS`), read, checked and recorded by `cascade_det.engine.Run`."""

from cascade_det.config import lazy_test_defaults, lazy_train_defaults

from detectron2 import model_zoo

train = model_zoo.get_config("common/train.py").train
train.update(**lazy_train_defaults(), seed=-1)
# Test-time augmentation (Detectron2's yacs TEST.AUG): test.aug.enabled=True evaluates with it as well.
test = lazy_test_defaults()
