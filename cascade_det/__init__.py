"""cascade_det: Cascade R-CNN (Cai & Vasconcelos, arXiv 1906.09756) as a Detectron2 extension.

Importing the package makes Detectron2 0.6 work on this stack (`cascade_det.compat`), registers the cascade ROI
heads (`MODEL.ROI_HEADS.NAME: CascadeRCNNROIHeads`), the box predictors and the embedded dataset, and routes
Detectron2's weight loading through cascade_det's safe reader (`cascade_det.safe_loading`).
"""

from . import compat

compat.apply()

from . import data, modeling, safe_loading  # noqa: E402  (registration runs on import, after the compat fixes)

safe_loading.apply()  # Detectron2's own checkpointers read weights without running pickled code
from .config import add_cascade_config  # noqa: E402
from .errors import Error  # noqa: E402
from .modeling import CascadeOutputLayers, CascadeRCNNROIHeads  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name):
    # `cascade_det.Predictor` is imported when first used: registering the heads does not pull in the engine.
    if name == "Predictor":
        from .predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'cascade_det' has no attribute {name!r}")


__all__ = [
    "CascadeOutputLayers",
    "CascadeRCNNROIHeads",
    "Error",
    "Predictor",
    "add_cascade_config",
    "compat",
    "data",
    "modeling",
]
