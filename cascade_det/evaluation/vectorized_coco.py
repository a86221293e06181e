"""COCO box evaluation with array operations: pycocotools' `COCOeval` (iouType "bbox", its default parameters:
10 IoU thresholds 0.50..0.95, 101 recall points, areas all / small / medium / large, 1 / 10 / 100 detections)
computed over all images and categories at once, instead of a Python loop per image and category.

Why: per-stage evaluation scores 4 detection sets (3 stages and the ensemble) against one ground truth. With
faster-coco-eval, each set builds 100 Python dicts per image and walks its image-category pairs in Python; here the
ground truth is indexed once (`BoxGroundTruth`) and each set is a few sorts and one greedy matching loop over the
detection rank (at most 100 steps), run for every image-category pair, IoU threshold and area range together.

The numbers are pycocotools' (tests/evaluation/test_coco_backend.py compares all 12 metrics and AP at every IoU
threshold with pycocotools and faster-coco-eval), because every step follows `COCOeval.evaluateImg` and
`accumulate`:
- detections of an image and category: sorted by score (stable, so ties keep the results' order), the first 100;
- ground truth: crowd boxes are ignored and can match any number of detections (IoU = intersection over the
  detection's area); in an area range a box whose annotated `area` lies outside is ignored;
- each detection, best score first, takes the unmatched box of highest IoU >= the threshold (the last one in
  annotation order on ties), preferring boxes that are not ignored; a detection matched to an ignored box, or
  unmatched with its box area outside the range, is ignored;
- per category, area range and detection limit: the detections of all images by score (stable, images in id order),
  precision made monotone from the right and read at recall 0, 0.01, ..., 1 (0 beyond the reached recall), -1 for
  a category without unignored ground truth.
"""

from typing import Dict, Tuple

import numpy as np

__all__ = ["AREA_RANGES", "MAX_DETECTIONS", "BoxGroundTruth", "evaluate_box_rows", "summarize"]

# COCOeval's Params (iouType "bbox"), written as it writes them so the floats are the same.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = np.array([[0, 1e5**2], [0, 32**2], [32**2, 96**2], [96**2, 1e5**2]], dtype=np.float64)
MAX_DETECTIONS = (1, 10, 100)


class BoxGroundTruth:
    """A COCO-format ground truth ({"images", "annotations", "categories"}) as arrays, built once and shared by
    every detection set evaluated against it. Images and categories in id order (as COCOeval sorts them);
    annotations of other images or categories are not evaluated (as in COCOeval)."""

    def __init__(self, dataset: dict):
        self.image_ids = np.array(sorted({int(im["id"]) for im in dataset.get("images", [])}), dtype=np.int64)
        self.category_ids = np.array(sorted({int(c["id"]) for c in dataset.get("categories", [])}), dtype=np.int64)
        anns = dataset.get("annotations", [])
        image, known_image = _lookup(self.image_ids, np.array([int(a["image_id"]) for a in anns], dtype=np.int64))
        category, known_category = _lookup(
            self.category_ids, np.array([int(a["category_id"]) for a in anns], dtype=np.int64)
        )
        evaluated = np.flatnonzero(known_image & known_category)
        anns = [anns[i] for i in evaluated]
        image, category = image[evaluated], category[evaluated]
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        area = np.array([a.get("area", b[2] * b[3]) for a, b in zip(anns, boxes)], dtype=np.float64)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
        # By image, then category, then annotation order: the order COCOeval lists an image-category's boxes in.
        order = np.lexsort((np.arange(len(anns)), category, image))
        self.pair = (image * len(self.category_ids) + category)[order]  # image index * K + category index
        self.boxes, self.area, self.crowd = boxes[order], area[order], crowd[order]
        self.category = category[order]
        # ignored[n, a]: box n does not count in area range a (crowd, or its area outside the range)
        outside = (self.area[:, None] < AREA_RANGES[None, :, 0]) | (self.area[:, None] > AREA_RANGES[None, :, 1])
        self.ignored = self.crowd[:, None] | outside
        # unignored boxes per category and area range: the recall's denominator
        self.positives = np.zeros((len(self.category_ids), len(AREA_RANGES)), dtype=np.int64)
        np.add.at(self.positives, self.category, (~self.ignored).astype(np.int64))
        self.pairs, self.pair_start, self.pair_count = np.unique(self.pair, return_index=True, return_counts=True)


def _lookup(sorted_ids: np.ndarray, values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(the position of each of `values` in `sorted_ids`, whether it is there at all)."""
    index = np.searchsorted(sorted_ids, values)
    if not len(sorted_ids):
        return index, np.zeros(len(values), dtype=bool)
    return index, sorted_ids[np.minimum(index, len(sorted_ids) - 1)] == values


def _box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of XYWH boxes dt (..., 4) and gt (..., 4) broadcast together, as pycocotools' bbIou computes it
    (same operations, same float64 results); for a crowd box, intersection over the detection's area."""
    w = np.minimum(dt[..., 2] + dt[..., 0], gt[..., 2] + gt[..., 0]) - np.maximum(dt[..., 0], gt[..., 0])
    h = np.minimum(dt[..., 3] + dt[..., 1], gt[..., 3] + gt[..., 1]) - np.maximum(dt[..., 1], gt[..., 1])
    inter = w * h
    dt_area, gt_area = dt[..., 2] * dt[..., 3], gt[..., 2] * gt[..., 3]
    union = np.where(crowd, dt_area, dt_area + gt_area - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)


def _match(gt: BoxGroundTruth, pair_of: np.ndarray, rank: np.ndarray, boxes: np.ndarray):
    """Greedy matching (COCOeval.evaluateImg) of detections sorted by pair and score. Returns matched (N, T, A) and
    ignored (N, T, A) booleans, for every IoU threshold T and area range A."""
    n, t_count, a_count = len(boxes), len(IOU_THRESHOLDS), len(AREA_RANGES)
    matched = np.zeros((n, t_count, a_count), dtype=bool)
    ignored = np.zeros((n, t_count, a_count), dtype=bool)
    where, has_gt = _lookup(gt.pairs, pair_of)
    if has_gt.any():
        thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[None, :, None, None]
        # Pairs with ground truth, bucketed by their number of boxes (padded to a power of two), so that one image
        # of a crowd does not pad every other pair to its size.
        dt_rows = np.flatnonzero(has_gt)
        slot = where[dt_rows]  # index into gt.pairs
        slots = np.unique(slot)
        sizes = gt.pair_count[slots]
        widths = 1 << np.ceil(np.log2(np.maximum(sizes, 1))).astype(np.int64)
        for width in np.unique(widths):
            bucket = slots[widths == width]  # (P,) pairs of this bucket
            index = gt.pair_start[bucket][:, None] + np.arange(width)[None, :]
            valid = np.arange(width)[None, :] < gt.pair_count[bucket][:, None]
            index = np.where(valid, index, 0)
            g_boxes, g_crowd = gt.boxes[index], gt.crowd[index] & valid
            g_ignored = gt.ignored[index] | ~valid[..., None]  # (P, G, A)
            g_ignored = np.transpose(g_ignored, (0, 2, 1))[:, None]  # (P, 1, A, G)
            taken = np.zeros((len(bucket), t_count, a_count, width), dtype=bool)
            # the detections of these pairs, by pair then rank
            rows = dt_rows[np.isin(slot, bucket)]
            rows = rows[np.argsort(rank[rows], kind="stable")]  # by rank: one step per rank, all pairs at once
            row_pair = np.searchsorted(bucket, where[rows])
            steps = np.searchsorted(rank[rows], np.arange(int(rank[rows].max()) + 2))
            for start, stop in zip(steps[:-1], steps[1:]):
                at, p = rows[start:stop], row_pair[start:stop]
                iou = _box_iou(boxes[at][:, None, :], g_boxes[p], g_crowd[p])  # (Pa, G)
                iou = np.where(valid[p], iou, -1.0)[:, None, None, :]
                free = ~taken[p] | g_crowd[p][:, None, None, :]
                candidate = free & (iou >= thresholds)  # (Pa, T, A, G)
                choice, found = [], []
                for group in (candidate & ~g_ignored[p], candidate & g_ignored[p]):
                    value = np.where(group, iou, -np.inf)
                    # the last box of the highest IoU (COCOeval replaces its match on equal IoU)
                    last = width - 1 - np.argmax(value[..., ::-1], axis=-1)
                    choice.append(last)
                    found.append(group.any(axis=-1))
                m = np.where(found[0], choice[0], choice[1])
                hit = found[0] | found[1]
                matched[at], ignored[at] = hit, ~found[0] & found[1]
                pi, ti, ai = np.nonzero(hit)
                sub = taken[p]
                sub[pi, ti, ai, m[pi, ti, ai]] = True
                taken[p] = sub
    # unmatched detections outside an area range are ignored in it
    area = boxes[:, 2] * boxes[:, 3]
    outside = (area[:, None] < AREA_RANGES[None, :, 0]) | (area[:, None] > AREA_RANGES[None, :, 1])
    ignored |= ~matched & outside[:, None, :]
    return matched, ignored


def _accumulate(gt: BoxGroundTruth, category: np.ndarray, rank: np.ndarray, scores: np.ndarray, matched, ignored):
    """COCOeval.accumulate: precision (T, R, K, A, M) and recall (T, K, A, M), -1 where a category has no unignored
    ground truth in an area range. Detections sorted by image, category, score; matched and ignored (N, T, A).

    Detections ignored at every IoU threshold of an area range are left out of it: they count neither as true nor
    as false positives, and precision is read at the positions where recall rises, which are true positives, so
    the numbers are COCOeval's (most detections lie outside two of the three size ranges)."""
    t_count, r_count = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)
    k_count, a_count, m_count = len(gt.category_ids), len(AREA_RANGES), len(MAX_DETECTIONS)
    precision = -np.ones((t_count, r_count, k_count, a_count, m_count))
    recall = -np.ones((t_count, k_count, a_count, m_count))
    positives = gt.positives.astype(np.float64)  # (K, A)
    # by category, then score (stable: ties keep image order, then rank), as accumulate's mergesort
    by_score = np.lexsort((np.arange(len(category)), -scores, category))
    # categories with more detections in one image than a limit: only there does the limit change anything
    crowded = [np.zeros(k_count, dtype=bool) for _ in MAX_DETECTIONS]
    for m, limit in enumerate(MAX_DETECTIONS):
        np.logical_or.at(crowded[m], category[rank >= limit], True)
    for a in range(a_count):
        for m in reversed(range(m_count)):  # 100 first: the smaller limits copy it where they change nothing
            if m < m_count - 1:
                same = ~crowded[m]
                precision[:, :, same, a, m] = precision[:, :, same, a, m_count - 1]
                recall[:, same, a, m] = recall[:, same, a, m_count - 1]
            wanted = (gt.positives[:, a] > 0) & (crowded[m] if m < m_count - 1 else True)
            order = by_score[(rank[by_score] < MAX_DETECTIONS[m]) & wanted[category[by_score]]]
            order = order[~ignored[order, :, a].all(axis=1)]  # counted at some IoU threshold
            bounds = np.searchsorted(category[order], np.arange(k_count + 1))
            counted = ~ignored[order, :, a].T  # (T, N): threshold rows, contiguous for the running sums
            hit = matched[order, :, a].T
            tp_all = np.cumsum(hit & counted, axis=1, dtype=np.float64)  # exact integers
            fp_all = np.cumsum(~hit & counted, axis=1, dtype=np.float64)
            for k in np.flatnonzero(wanted):
                lo, hi = bounds[k], bounds[k + 1]
                nd = hi - lo
                if nd == 0:
                    recall[:, k, a, m] = 0
                    precision[:, :, k, a, m] = 0
                    continue
                # the category's own counts: the running sums less what came before its first detection
                tp, fp = tp_all[:, lo:hi], fp_all[:, lo:hi]
                if lo > 0:
                    tp, fp = tp - tp_all[:, lo - 1 : lo], fp - fp_all[:, lo - 1 : lo]
                rc = tp / positives[k, a]
                pr = tp / (fp + tp + np.spacing(1))
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision made monotone from the right
                recall[:, k, a, m] = rc[:, -1]
                for t in range(t_count):
                    at = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                    precision[t, :, k, a, m] = np.where(at < nd, pr[t, np.minimum(at, nd - 1)], 0.0)
    return precision, recall


def summarize(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """COCOeval.summarize's 12 numbers (fractions; -1 where nothing is defined) from precision and recall."""

    def mean(values):
        defined = values[values > -1]
        return float(np.mean(defined)) if defined.size else -1.0

    def ap(area=0, limit=2, iou=None):
        p = precision if iou is None else precision[np.flatnonzero(iou == IOU_THRESHOLDS)]
        return mean(p[:, :, :, area, limit])

    def ar(area=0, limit=2):
        return mean(recall[:, :, area, limit])

    return np.array(
        [ap(), ap(iou=0.5), ap(iou=0.75), ap(1), ap(2), ap(3), ar(0, 0), ar(0, 1), ar(), ar(1), ar(2), ar(3)]
    )


def evaluate_box_rows(gt: BoxGroundTruth, rows: np.ndarray) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """COCO box evaluation of detections `rows` (D, 7): image_id, x, y, w, h, score, category_id (dataset ids), as
    pycocotools' COCOeval evaluates them. Returns (stats (12,) as COCOeval.stats, {"precision": (T, R, K, A, M),
    "recall": (T, K, A, M)} as COCOeval.eval). Raises ValueError for an image id the ground truth lacks (pycocotools'
    "Results do not correspond to current coco set")."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    image_ids = rows[:, 0].astype(np.int64)
    image, known = _lookup(gt.image_ids, image_ids)
    if not known.all():
        raise ValueError(
            f"{int((~known).sum())} detections are of images the ground truth does not have, e.g. image id "
            f"{int(image_ids[~known][0])}"
        )
    category, evaluated = _lookup(gt.category_ids, rows[:, 6].astype(np.int64))  # other categories: not evaluated
    rows, image, category = rows[evaluated], image[evaluated], category[evaluated]
    scores = rows[:, 5]
    # by image, category, score (highest first; ties in the results' order)
    order = np.lexsort((np.arange(len(rows)), -scores, category, image))
    rows, image, category, scores = rows[order], image[order], category[order], scores[order]
    pair = image * len(gt.category_ids) + category
    first = np.r_[True, pair[1:] != pair[:-1]] if len(pair) else np.zeros(0, dtype=bool)
    start = np.maximum.accumulate(np.where(first, np.arange(len(pair)), 0)) if len(pair) else pair
    rank = np.arange(len(pair)) - start
    keep = rank < MAX_DETECTIONS[-1]
    pair, rank, category, scores, boxes = pair[keep], rank[keep], category[keep], scores[keep], rows[keep, 1:5]
    matched, ignored = _match(gt, pair, rank, boxes)
    precision, recall = _accumulate(gt, category, rank, scores, matched, ignored)
    return summarize(precision, recall), {"precision": precision, "recall": recall}
