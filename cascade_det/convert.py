"""Weight layouts of other frameworks, converted to this project's Detectron2 model; and the conversion commands.

    python -m cascade_det.convert mmdet cascade_rcnn_r50_fpn_1x_coco_20200316-3dc56deb.pth cascade_r50_1x.safetensors
    python -m cascade_det.convert to-safetensors output/.../model_final.pth model_final.safetensors

`convert_known_layouts` recognises, in a checkpoint being loaded, an MMDetection Cascade (Mask) R-CNN (converted as
below; ResNet, Swin or ConvNeXt backbone), a torchvision ImageNet ResNet file (`resnet50-*.pth`, the MMDetection
recipe's initialisation: renamed for Detectron2's ResNet), a Swin, ConvNeXt or ViT ImageNet file (official,
MMPretrain, MAE or timm layout; `cascade_det.backbone_layouts`) and a Detectron2 detector whose Swin backbone has the
original layout (Detectron2 main's ViTDet-project Swin checkpoints). Anything else is left to Detectron2's
checkpointer (its own and Caffe2 layouts; Detectron2's ViTDet checkpoints have our names already).

The converted file loads with `train.init_checkpoint=` / `MODEL.WEIGHTS` into a config of MMDetection's recipe
(`configs/COCO/cascade_rcnn_R_50_FPN_1x.py` and the configs derived from it). An MMDetection checkpoint can also be
given there directly: `SafeDetectionCheckpointer` recognises its layout and converts it on load.

What differs between the two frameworks, and how each is handled:
  names        MMDetection v2/v3 `CascadeRCNN` (ResNet / Swin / ConvNeXt, FPN, RPNHead, Shared2FCBBoxHead or
               ConvFCBBoxHead (e.g. 4conv1fc, with its norm), FCNMaskHead per stage) to Detectron2's (`_MMDET_RENAMES`
               below); the ResNet uses torchvision's names, renamed as a torchvision ImageNet file is; Swin and
               ConvNeXt as `cascade_det.backbone_layouts` says (Swin-Transformer-Object-Detection and ConvNeXt's
               detectors are MMDetection v2 files with the original backbones).
  box coder    MMDetection decodes deltas as `d * std + mean`, Detectron2 as `d / weight`. Our MMDetection-recipe
               configs use weight = 1 / std, so the regression layers carry over as they are. For a config with
               other weights, e.g. Detectron2's (10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15) (not exactly the
               inverse of the recipes' stds: 1/0.033 = 30.3), each stage's `fc_reg` rows are multiplied by
               `std * weight` (and `mean * weight` added to the bias): the converted model decodes exactly the boxes
               MMDetection decodes. Loading a checkpoint directly uses the model's own weights.
  classes      both put the background class last (MMDetection v2+, Detectron2's `FastRCNNOutputLayers`), and
               class-specific regression is ordered (class, 4) in both: no permutation. (MMDetection v1 put the
               background first; its checkpoints are not supported.)
  input        MMDetection's ResNet is torchvision-style (stride in the 3x3 conv, RGB, ImageNet mean/std): the
               recipe configs set `stride_in_1x1=False`, `input_format="RGB"` and that mean/std. Nothing in the
               weights changes.
"""

import argparse
import logging
import os
import re
import sys
from typing import Dict, Optional, Sequence, Tuple

import torch

from .backbone_layouts import LAYOUT_NAMES, LAYOUT_PREFIXES, backbone_layout, convert_backbone
from .errors import add_debug_argument, exit_on_user_error
from .outputs import check_writable
from .weights import MODEL_METADATA_KEY, atomic_write, load_weights_file, model_metadata_of, save_safetensors

__all__ = [
    "DETECTRON2_CASCADE_WEIGHTS",
    "MMDET_CASCADE_TARGET_STDS",
    "convert_known_layouts",
    "is_mmdet_state_dict",
    "mmdet_state_dict",
    "mmdet_to_detectron2",
    "stage_box_coder_weights",
    "torchvision_resnet_to_detectron2",
]

logger = logging.getLogger(__name__)

# MMDetection's cascade recipes (every cascade-rcnn / cascade-mask-rcnn config of v2 and v3): the box coder's
# target stds of stages 0, 1, 2; target means are 0.
MMDET_CASCADE_TARGET_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
# Detectron2's cascade box-coder weights: what a converted checkpoint is scaled for when no model tells otherwise
# (Detectron2's configs and ours of Detectron2's recipe; the MMDetection-recipe configs use 1/std instead).
DETECTRON2_CASCADE_WEIGHTS = ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))

# MMDetection name (after "neck." / "rpn_head." / "roi_head.") -> Detectron2 name; {i}/{t} are numbers.
_MMDET_RENAMES = [
    (r"neck\.lateral_convs\.(\d+)\.conv\.(weight|bias)", lambda i, p: f"backbone.fpn_lateral{int(i) + 2}.{p}"),
    (r"neck\.fpn_convs\.(\d+)\.conv\.(weight|bias)", lambda i, p: f"backbone.fpn_output{int(i) + 2}.{p}"),
    (r"rpn_head\.rpn_conv\.(weight|bias)", lambda p: f"proposal_generator.rpn_head.conv.{p}"),
    (r"rpn_head\.rpn_cls\.(weight|bias)", lambda p: f"proposal_generator.rpn_head.objectness_logits.{p}"),
    (r"rpn_head\.rpn_reg\.(weight|bias)", lambda p: f"proposal_generator.rpn_head.anchor_deltas.{p}"),
    (
        r"roi_head\.bbox_head\.(\d+)\.shared_fcs\.(\d+)\.(weight|bias)",
        lambda t, j, p: f"roi_heads.box_head.{t}.fc{int(j) + 1}.{p}",
    ),
    (
        r"roi_head\.bbox_head\.(\d+)\.shared_convs\.(\d+)\.conv\.(weight|bias)",
        lambda t, j, p: f"roi_heads.box_head.{t}.conv{int(j) + 1}.{p}",
    ),
    (  # ConvModule names its norm by type: bn (BN, SyncBN), gn (GroupNorm), ln
        r"roi_head\.bbox_head\.(\d+)\.shared_convs\.(\d+)\.(?:bn|gn|ln)\.(weight|bias|running_mean|running_var)",
        lambda t, j, p: f"roi_heads.box_head.{t}.conv{int(j) + 1}.norm.{p}",
    ),
    (r"roi_head\.bbox_head\.(\d+)\.fc_cls\.(weight|bias)", lambda t, p: f"roi_heads.box_predictor.{t}.cls_score.{p}"),
    (r"roi_head\.bbox_head\.(\d+)\.fc_reg\.(weight|bias)", lambda t, p: f"roi_heads.box_predictor.{t}.bbox_pred.{p}"),
    (
        r"roi_head\.mask_head\.(\d+)\.convs\.(\d+)\.conv\.(weight|bias)",
        lambda t, j, p: f"roi_heads.mask_head.{t}.mask_fcn{int(j) + 1}.{p}",
    ),
    (r"roi_head\.mask_head\.(\d+)\.upsample\.(weight|bias)", lambda t, p: f"roi_heads.mask_head.{t}.deconv.{p}"),
    (r"roi_head\.mask_head\.(\d+)\.conv_logits\.(weight|bias)", lambda t, p: f"roi_heads.mask_head.{t}.predictor.{p}"),
]
_MMDET_RENAMES = [(re.compile("^" + pattern + "$"), rename) for pattern, rename in _MMDET_RENAMES]


_TORCHVISION_RESNET = re.compile(r"^layer(\d)\.(\d+)\.(conv|bn)(\d)\.(.+)$")
_TORCHVISION_SHORTCUT = re.compile(r"^layer(\d)\.(\d+)\.downsample\.([01])\.(.+)$")


def torchvision_resnet_to_detectron2(weights: Dict[str, torch.Tensor], prefix: str = "backbone.bottom_up.") -> Dict:
    """Rename a torchvision ResNet/ResNeXt ImageNet state dict (`resnet50-*.pth`: conv1, bn1, layer1.0.conv1, ...,
    layer1.0.downsample.0/1, fc) to Detectron2's ResNet names under `prefix` (stem.conv1, stem.conv1.norm,
    res2.0.conv1, res2.0.conv1.norm, ..., res2.0.shortcut(.norm)). The classifier (fc) and BN step counters
    are dropped. Use it with a torchvision-style backbone (stride in the 3x3 conv: stride_in_1x1=False)."""
    out = {}
    for key, value in weights.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        if key.startswith(("conv1.", "bn1.")):
            name = "stem.conv1." + ("norm." if key.startswith("bn1.") else "") + key.split(".", 1)[1]
        elif m := _TORCHVISION_RESNET.match(key):
            stage, block, kind, index, rest = m.groups()
            name = f"res{int(stage) + 1}.{block}.conv{index}." + ("norm." if kind == "bn" else "") + rest
        elif m := _TORCHVISION_SHORTCUT.match(key):
            stage, block, part, rest = m.groups()
            name = f"res{int(stage) + 1}.{block}.shortcut." + ("norm." if part == "1" else "") + rest
        else:
            raise KeyError(f"{key} is not a torchvision ResNet parameter name")
        out[prefix + name] = value
    return out


def backbone_to_detectron2(
    weights: Dict[str, torch.Tensor], prefix: Optional[str] = None, layout: Optional[str] = None
) -> Dict:
    """A detector's backbone state dict (without "backbone.": ResNet in torchvision's names, or Swin / ConvNeXt / ViT
    in a layout `cascade_det.backbone_layouts` knows; `layout` if the caller has already read it) renamed to our
    model's, under `prefix` (default: where that backbone sits in our detectors, "backbone.bottom_up." or, for a
    ViT, "backbone.net.")."""
    layout = layout or backbone_layout(weights)
    if layout:
        prefix = LAYOUT_PREFIXES[layout] if prefix is None else prefix
        return {prefix + k: v for k, v in convert_backbone(weights, layout).items()}
    return torchvision_resnet_to_detectron2(
        {k: torch.as_tensor(v) for k, v in weights.items()}, prefix or "backbone.bottom_up."
    )


def convert_known_layouts(checkpoint: Dict, model: Optional[torch.nn.Module] = None) -> Dict:
    """`checkpoint` (as `load_weights_file` returns it) with an MMDetection cascade or a torchvision ResNet state
    dict converted to Detectron2's names; any other checkpoint unchanged. `model` supplies the cascade stages'
    box-coder weights for MMDetection checkpoints (default: Detectron2's)."""
    weights = mmdet_state_dict(checkpoint["model"])
    if weights is not None:
        bbox_reg_weights = (stage_box_coder_weights(model) if model is not None else None) or DETECTRON2_CASCADE_WEIGHTS
        logger.info(
            "Reading an MMDetection checkpoint: converting it (names; box-coder stds %s to weights %s)",
            MMDET_CASCADE_TARGET_STDS[: len(bbox_reg_weights)],
            bbox_reg_weights,
        )
        stds = MMDET_CASCADE_TARGET_STDS[: len(bbox_reg_weights)]
        return {"model": mmdet_to_detectron2(weights, stds, bbox_reg_weights), "__author__": "MMDetection"}
    weights = checkpoint["model"]
    if not isinstance(weights, dict):
        return checkpoint
    if "fc.weight" in weights and "layer1.0.conv1.weight" in weights:
        logger.info("Reading torchvision ImageNet ResNet weights; renaming them for the Detectron2 backbone")
        return {"model": torchvision_resnet_to_detectron2(weights), "__author__": "torchvision"}
    # An ImageNet Swin / ConvNeXt file: its own names, or MMPretrain's classifier (backbone.* and head.*, inside the
    # "state_dict" of an mmengine checkpoint).
    inner = weights.get("state_dict") if isinstance(weights.get("state_dict"), dict) else weights
    classifier = {k[len("backbone.") :]: v for k, v in inner.items() if k.startswith("backbone.")}
    for candidate in (inner, classifier):
        layout = backbone_layout(candidate) if candidate else None
        if layout:
            logger.info("Reading %s; renaming it for our backbone", LAYOUT_NAMES[layout])
            return {"model": backbone_to_detectron2(candidate, layout=layout), "__author__": layout}
    # A Detectron2 detector with the original Swin layout in its bottom-up network (Detectron2 main's SwinTransformer).
    bottom_up = {k[len("backbone.bottom_up.") :]: v for k, v in weights.items() if k.startswith("backbone.bottom_up.")}
    if bottom_up and backbone_layout(bottom_up) == "swin-original":
        logger.info("Reading a Detectron2 detector with the original Swin layout; renaming its backbone")
        renamed = {k: v for k, v in weights.items() if not k.startswith("backbone.bottom_up.")}
        return {**checkpoint, "model": {**renamed, **backbone_to_detectron2(bottom_up, layout="swin-original")}}
    return checkpoint


def is_mmdet_state_dict(weights: Dict) -> bool:
    """True for the state dict of an MMDetection two-stage detector (its FPN and ROI-head names)."""
    return any(k.startswith(("neck.lateral_convs.", "roi_head.bbox_head.")) for k in weights)


def mmdet_to_detectron2(
    weights: Dict[str, torch.Tensor],
    target_stds: Sequence[Sequence[float]] = MMDET_CASCADE_TARGET_STDS,
    bbox_reg_weights: Optional[Sequence[Sequence[float]]] = None,
    target_means: Optional[Sequence[Sequence[float]]] = None,
) -> Dict[str, torch.Tensor]:
    """Rename an MMDetection `CascadeRCNN` state dict to Detectron2's names and re-scale each stage's box
    regression from MMDetection's (stds, means) to Detectron2's `bbox_reg_weights` (one 4-tuple per stage; default
    1 / std, our MMDetection-recipe configs' weights, which leave the layers as they are).

    Raises KeyError for a parameter it does not know (another detector or head type), naming it, rather than
    dropping it silently; ValueError when the number of stages differs from the stds/weights given.
    """
    backbone = {k[len("backbone.") :]: v for k, v in weights.items() if k.startswith("backbone.")}
    out, box_stages = backbone_to_detectron2(backbone), set()
    for key, value in weights.items():
        if key.endswith("num_batches_tracked") or key.startswith("backbone."):
            continue
        for pattern, rename in _MMDET_RENAMES:
            if m := pattern.match(key):
                name = rename(*m.groups())
                break
        else:
            raise KeyError(
                f"{key} is not a parameter of MMDetection's Cascade R-CNN (ResNet / Swin / ConvNeXt, FPN, "
                "RPNHead, Shared2FCBBoxHead / ConvFCBBoxHead with shared convs and fcs, FCNMaskHead); other "
                "architectures are not supported by this converter"
            )
        if ".bbox_pred." in name:
            box_stages.add(int(name.split(".")[2]))
        out[name] = torch.as_tensor(value)

    num_stages = len(box_stages)
    if bbox_reg_weights is None:
        bbox_reg_weights = [tuple(1.0 / s for s in stds) for stds in target_stds]
    for what, per_stage in (("target_stds", target_stds), ("bbox_reg_weights", bbox_reg_weights)):
        if len(per_stage) != num_stages:
            raise ValueError(f"the checkpoint has {num_stages} cascade stages, but {len(per_stage)} {what} were given")
    means = target_means or [(0.0, 0.0, 0.0, 0.0)] * num_stages
    for t in sorted(box_stages):
        scale = torch.tensor([s * w for s, w in zip(target_stds[t], bbox_reg_weights[t])])
        shift = torch.tensor([m * w for m, w in zip(means[t], bbox_reg_weights[t])])
        weight, bias = (f"roi_heads.box_predictor.{t}.bbox_pred.{p}" for p in ("weight", "bias"))
        repeats = out[weight].shape[0] // 4  # class-specific regression: (class, 4) rows
        out[weight] = out[weight] * scale.repeat(repeats)[:, None]
        out[bias] = out[bias] * scale.repeat(repeats) + shift.repeat(repeats)
    return out


def stage_box_coder_weights(model: torch.nn.Module) -> Optional[Tuple[Tuple[float, ...], ...]]:
    """The box-coder weights of each cascade stage of a built model, or None if it has no cascade predictors."""
    predictors = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    if not isinstance(predictors, torch.nn.ModuleList):
        return None
    return tuple(tuple(float(w) for w in p.box2box_transform.weights) for p in predictors)


def mmdet_state_dict(loaded: Dict) -> Optional[Dict]:
    """The detector state dict inside a loaded MMDetection checkpoint (its "state_dict" entry, or the dict
    itself), or None if it is not one."""
    weights = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    return weights if isinstance(weights, dict) and is_mmdet_state_dict(weights) else None


def _four_floats(text: str) -> Tuple[float, ...]:
    values = tuple(float(v) for v in text.split(","))
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: give 4 comma-separated numbers (x, y, w, h)")
    return values


def _write(weights: Dict[str, torch.Tensor], path: str, author: str, metadata: Optional[Dict] = None) -> None:
    """Write `weights` (and the model's `metadata`, if known) as .safetensors or a .pth checkpoint."""
    if path.endswith(".safetensors"):
        save_safetensors(weights, path, metadata)
    else:
        extra = {MODEL_METADATA_KEY: metadata} if metadata else {}
        with atomic_write(path) as f:
            torch.save({"model": weights, "__author__": author, **extra}, f)
    print(f"wrote {len(weights)} tensors to {path}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cascade_det.convert", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    mmdet = sub.add_parser("mmdet", help="an MMDetection v2/v3 Cascade (Mask) R-CNN checkpoint to our names")
    mmdet.add_argument(
        "--target-stds",
        type=_four_floats,
        nargs="+",
        default=MMDET_CASCADE_TARGET_STDS,
        help="the checkpoint's box-coder stds, one x,y,w,h per stage (default: MMDetection's recipes)",
    )
    mmdet.add_argument(
        "--bbox-reg-weights",
        type=_four_floats,
        nargs="+",
        default=None,
        help="the target config's box-coder weights per stage (default: 1/std, our MMDetection-recipe configs'; "
        "Detectron2's own configs use 10,10,5,5 20,20,10,10 30,30,15,15)",
    )
    export = sub.add_parser("to-safetensors", help="a checkpoint's model weights, as they are, to .safetensors")
    for command in (mmdet, export):
        command.add_argument("input", help="the checkpoint to read (.pth, .pkl, .safetensors)")
        command.add_argument("output", help="the file to write (.safetensors, or .pth for mmdet); must not exist")
        command.add_argument(
            "--allow-unsafe-pickle",
            action="store_true",
            help="unpickle arbitrary objects (runs code the file may carry: trusted files only)",
        )
        add_debug_argument(command)
    args = parser.parse_args(argv)
    if os.path.exists(args.output):
        parser.error(f"{args.output} exists; not overwriting it")
    suffixes = (".safetensors", ".pth") if args.command == "mmdet" else (".safetensors",)
    if not args.output.endswith(suffixes):
        parser.error(f"{args.output}: the output must end in {' or '.join(suffixes)}")
    check_writable(os.path.dirname(args.output) or ".", "the output's folder")
    checkpoint = load_weights_file(args.input, allow_unsafe_pickle=args.allow_unsafe_pickle)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    if args.command == "to-safetensors":
        weights = {k: torch.as_tensor(v) for k, v in checkpoint["model"].items()}
        _write(weights, args.output, "", model_metadata_of(checkpoint, args.input))
        return
    weights = mmdet_state_dict(checkpoint["model"])
    if weights is None:
        parser.error(f"{args.input} is not an MMDetection detector checkpoint (no neck.* / roi_head.* parameters)")
    _write(
        mmdet_to_detectron2(weights, args.target_stds, args.bbox_reg_weights),
        args.output,
        "MMDetection (cascade_det.convert)",
    )


if __name__ == "__main__":
    exit_on_user_error(main, sys.argv[1:])
