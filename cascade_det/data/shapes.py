"""The embedded default dataset: deterministic synthetic shapes in COCO format.

Each image holds 1-6 filled shapes of 4 classes (rectangle, ellipse, triangle, cross), rotated, of varied
scale (about 14% to 55% of the image side) and aspect (1:2 to 2:1), on a noisy gradient background; shapes may
overlap (box IoU up to 0.2) and the later one occludes the earlier. Annotations are amodal: the whole shape's
box and polygon, as COCO annotates occluded objects. The same seed gives byte-identical files.
"""

import json
import math
import os
from typing import Dict, List

import cv2
import numpy as np

__all__ = ["SHAPE_CLASSES", "write_shapes_split"]

SHAPE_CLASSES = ("rectangle", "ellipse", "triangle", "cross")


def _unit_polygon(kind: str) -> np.ndarray:
    """Outline of a shape of unit half-size around the origin, (P, 2) in (x, y)."""
    if kind == "rectangle":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if kind == "ellipse":
        angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if kind == "triangle":
        return np.array([[0, -1], [1, 1], [-1, 1]], dtype=np.float64)
    t = 0.35  # cross: arm half-width
    return np.array(
        [[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1], [-t, t], [-1, t], [-1, -t], [-t, -t]],
        dtype=np.float64,
    )


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth colour gradient plus pixel noise, uint8 (H, W, 3)."""
    corners = rng.uniform(40, 215, size=(2, 2, 3))
    ramp = np.linspace(0.0, 1.0, size)
    wy, wx = ramp[:, None, None], ramp[None, :, None]
    top = corners[0, 0] * (1 - wx) + corners[0, 1] * wx
    bottom = corners[1, 0] * (1 - wx) + corners[1, 1] * wx
    image = top * (1 - wy) + bottom * wy + rng.normal(0, 8, size=(size, size, 3))
    return np.clip(image, 0, 255)


def _draw_image(rng: np.random.Generator, size: int, max_objects: int):
    image = _background(rng, size)
    objects: List[Dict] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            category = int(rng.integers(len(SHAPE_CLASSES)))
            scale = size * math.exp(rng.uniform(math.log(0.07), math.log(0.28)))  # half-size in pixels
            aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
            angle = math.radians(rng.uniform(-30, 30))
            polygon = _unit_polygon(SHAPE_CLASSES[category]) * [scale * math.sqrt(aspect), scale / math.sqrt(aspect)]
            rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            polygon = polygon @ rotation.T
            lo, hi = polygon.min(axis=0), polygon.max(axis=0)
            center = rng.uniform(-lo, size - hi)  # the whole shape inside the image
            polygon = polygon + center
            box = np.concatenate([polygon.min(axis=0), polygon.max(axis=0)])
            if all(_box_iou(box, o["box"]) <= 0.2 for o in objects):
                break
        else:
            continue
        mask = np.zeros((size, size), dtype=np.uint8)
        cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, lineType=cv2.LINE_AA, shift=4)
        local = image[mask > 0].mean(axis=0)
        color = rng.uniform(0, 255, size=3)
        if np.abs(color - local).mean() < 60:  # keep every shape visible against its background
            color = np.where(local > 127, rng.uniform(0, 60, 3), rng.uniform(195, 255, 3))
        image[mask > 0] = color + rng.normal(0, 6, size=(int(mask.sum()), 3))
        objects.append({"category": category, "polygon": polygon, "box": box})
    return np.clip(image, 0, 255).astype(np.uint8), objects


def write_shapes_split(root: str, split: str, num_images: int, seed: int, image_size: int = 128, max_objects: int = 6):
    """Write `root/{split}/*.png` and `root/annotations/instances_{split}.json` (COCO instances format, with
    polygon segmentations and category ids 1..4). Returns the json path. Writes to a temporary name first, so
    an interrupted run never leaves a json that looks complete."""
    rng = np.random.default_rng(seed)
    image_dir = os.path.join(root, split)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        image, objects = _draw_image(rng, image_size, max_objects)
        file_name = f"{image_id:06d}.png"
        cv2.imwrite(os.path.join(image_dir, file_name), image)
        images.append({"id": image_id, "file_name": file_name, "height": image_size, "width": image_size})
        for obj in objects:
            x0, y0, x1, y1 = (float(v) for v in obj["box"])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": obj["category"] + 1,
                    "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                    "area": round(float(cv2.contourArea(obj["polygon"].astype(np.float32))), 2),
                    "segmentation": [[round(float(v), 2) for v in obj["polygon"].reshape(-1)]],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPE_CLASSES)]
    json_path = os.path.join(root, "annotations", f"instances_{split}.json")
    tmp_path = json_path + ".tmp"
    with open(tmp_path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    os.replace(tmp_path, json_path)
    return json_path
