"""RoIAlign as a weighted sum of feature-map rows, with a parallel backward.

torchvision's CPU `roi_align` loops over RoIs on one thread, forward and backward (its backward is the slowest
part of a CPU training step of the cascade: three stages pool ~1500 RoIs each). The same operation written as
`embedding_bag(mode="sum", per_sample_weights=...)` over the feature map seen as (N*H*W, C) rows runs on all
cores in both directions, and reads each sampled pixel's C channels as one contiguous row when the features are
channels-last.

`roi_align_rows` computes exactly torchvision's `roi_align(..., aligned=True/False, sampling_ratio=0 or k)`
(Detectron2's ROIAlign / ROIAlignV2): the same sampling grid (ceil(roi size / output size) points per bin
when sampling_ratio is 0), the same bilinear rules at the borders (points beyond one pixel outside contribute 0,
points in (-1, 0] clamp to 0, the last row/column is repeated), averaged over the bin's points. Only the summation
order differs (float rounding). `FastROIPooler` is Detectron2's `ROIPooler` (same level assignment) using it.
"""

import weakref
from typing import List

import torch
from torch.nn import functional as F

from detectron2.layers import ROIAlign
from detectron2.modeling.poolers import ROIPooler, assign_boxes_to_levels, convert_boxes_to_pooler_format
from detectron2.structures import Boxes

from ..errors import ConfigValueError

__all__ = ["FastROIPooler", "roi_align_rows"]


def _sample_taps(rois, height, width, output_size, spatial_scale, sampling_ratio, aligned):
    """For every (RoI, bin, sample point, bilinear corner): the flat pixel index n*H*W + y*W + x and its weight
    (bilinear weight / points in the bin). Returns (indices (E,), weights (E,), offsets (R*P*P,)) for
    embedding_bag: bag b = (roi, ph, pw) owns entries offsets[b]:offsets[b+1]."""
    device, num_rois, p = rois.device, rois.shape[0], output_size
    boxes = rois[:, 1:] * spatial_scale - (0.5 if aligned else 0.0)
    roi_w, roi_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_w, bin_h = roi_w / p, roi_h / p
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full((num_rois,), sampling_ratio, device=device, dtype=torch.long)
    else:
        grid_h, grid_w = torch.ceil(roi_h / p).long(), torch.ceil(roi_w / p).long()
    points = grid_h * grid_w  # sample points per bin, per RoI (0 for an empty RoI: its bins output 0)
    per_roi = points * p * p
    total = int(per_roi.sum())
    roi = torch.repeat_interleave(torch.arange(num_rois, device=device), per_roi)
    local = torch.arange(total, device=device) - (torch.cumsum(per_roi, 0) - per_roi)[roi]
    pts, gw = points[roi], grid_w[roi]
    bin_index, point = local // pts, local % pts
    ph, pw = bin_index // p, bin_index % p
    iy, ix = point // gw, point % gw
    y = boxes[roi, 1] + ph * bin_h[roi] + (iy + 0.5) * bin_h[roi] / grid_h[roi]
    x = boxes[roi, 0] + pw * bin_w[roi] + (ix + 0.5) * bin_w[roi] / gw
    inside = (y >= -1.0) & (y <= height) & (x >= -1.0) & (x <= width)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y_low, x_low = y.long(), x.long()
    y_last, x_last = y_low >= height - 1, x_low >= width - 1
    y_low, x_low = torch.where(y_last, height - 1, y_low), torch.where(x_last, width - 1, x_low)
    y = torch.where(y_last, y_low.to(y.dtype), y)
    x = torch.where(x_last, x_low.to(x.dtype), x)
    y_high = torch.where(y_last, y_low, y_low + 1)
    x_high = torch.where(x_last, x_low, x_low + 1)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    scale = inside.to(y.dtype) / pts.to(y.dtype)
    base = rois[roi, 0].long() * (height * width)
    indices = torch.stack(
        [
            base + y_low * width + x_low,
            base + y_low * width + x_high,
            base + y_high * width + x_low,
            base + y_high * width + x_high,
        ],
        1,
    ).flatten()
    weights = (torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], 1) * scale[:, None]).flatten()
    entries_per_bag = torch.repeat_interleave(points * 4, p * p)
    offsets = torch.cumsum(entries_per_bag, 0) - entries_per_bag
    return indices, weights, offsets


def roi_align_rows(features, rois, output_size: int, spatial_scale: float, sampling_ratio: int, aligned: bool):
    """RoIAlign (average) of `features` (N, C, H, W) over `rois` (R, 5: batch index, x0, y0, x1, y1 in image
    pixels) into (R, C, output_size, output_size); differentiable in `features`."""
    n, c, h, w = features.shape
    if rois.numel() == 0:
        return features.new_zeros((0, c, output_size, output_size))
    dtype = features.dtype
    if dtype in (torch.float16, torch.bfloat16):  # in float32, as torchvision's autocast rule for roi_align does
        features = features.float()
    with torch.no_grad():
        indices, weights, offsets = _sample_taps(
            rois.float(), h, w, output_size, spatial_scale, sampling_ratio, aligned
        )
    rows = features.permute(0, 2, 3, 1).reshape(n * h * w, c)  # a view for channels-last features
    pooled = F.embedding_bag(
        indices, rows, offsets, mode="sum", per_sample_weights=weights.to(rows.dtype), include_last_offset=False
    )
    return pooled.view(rois.shape[0], output_size, output_size, c).permute(0, 3, 1, 2).to(dtype)


class FastROIPooler(ROIPooler):
    """Detectron2's `ROIPooler` for ROIAlign / ROIAlignV2 with `roi_align_rows` in place of torchvision's CPU kernel:
    same arguments, same level assignment, same outputs (R, C, P, P) up to float rounding.

    It owns its memory layout: CPU features are read as channels-last rows, converted once per feature map and
    reused while the same maps are pooled again (the cascade pools them once per stage). Features on a GPU, and a
    model being traced or exported, go to torchvision's kernel (parallel on a GPU; an exportable op)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.supports(self):
            raise ConfigValueError(
                f"FastROIPooler computes ROIAlign and ROIAlignV2 only; got pooler_type {kwargs.get('pooler_type')!r}"
            )
        self._channels_last = _LayoutCache()

    @staticmethod
    def supports(pooler: ROIPooler) -> bool:
        """Whether `pooler` pools with ROIAlign / ROIAlignV2 at every level (what this class computes)."""
        return all(isinstance(level, ROIAlign) for level in pooler.level_poolers)

    def forward(self, x: List[torch.Tensor], box_lists: List[Boxes]):
        if x[0].device.type != "cpu" or torch.jit.is_tracing() or torch.jit.is_scripting():
            return super().forward(x, box_lists)
        x = self._channels_last(x)
        rois = convert_boxes_to_pooler_format(box_lists)
        output_size = self.output_size[0]
        if len(self.level_poolers) == 1:
            return self._pool(0, x[0], rois)
        levels = assign_boxes_to_levels(
            box_lists, self.min_level, self.max_level, self.canonical_box_size, self.canonical_level
        )
        output = x[0].new_zeros((rois.shape[0], x[0].shape[1], output_size, output_size))
        for level, features in enumerate(x):
            index = (levels == level).nonzero().squeeze(1)
            if index.numel():
                output = output.index_put((index,), self._pool(level, features, rois[index]))
        return output

    def _pool(self, level, features, rois):
        op = self.level_poolers[level]
        return roi_align_rows(features, rois, self.output_size[0], op.spatial_scale, op.sampling_ratio, op.aligned)


class _LayoutCache:
    """Channels-last copies of the feature maps last given, kept until those maps are freed (weak references), so a
    cascade's stages convert each map once."""

    def __init__(self):
        self._sources: List[weakref.ref] = []
        self._versions: List[int] = []
        self._converted: List[torch.Tensor] = []

    def __call__(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        if all(f.is_contiguous(memory_format=torch.channels_last) for f in features):
            return features  # e.g. a channels-last backbone at inference: nothing to convert or keep
        same = len(self._sources) == len(features) and all(r() is f for r, f in zip(self._sources, features))
        if same and self._versions == [f._version for f in features]:
            return self._converted
        converted = [f.contiguous(memory_format=torch.channels_last) for f in features]
        # The old weak references go first, so that freeing the old copies cannot clear the new ones.
        self._sources = [weakref.ref(f, self._clear) for f in features]
        self._versions = [f._version for f in features]
        self._converted = converted
        return converted

    def _clear(self, ref) -> None:
        if any(r is ref for r in self._sources):  # a map of the current set was freed: the copies go too
            self._sources, self._versions, self._converted = [], [], []
