"""Users' data as users hand it in, generated: a Pascal-VOC folder whose image ids are file stems and one of whose
classes appears in the validation split only, and a labelme-style COCO export with string image ids, category id 0
and polygon masks."""

import json
import os
import xml.etree.ElementTree as ET

import cv2
import numpy as np

VOC_CLASSES = ("Tree", "Bush", "Rock")  # "Rock" is in the val split only


def _scene(rng, height=96, width=128):
    """An image with one filled rectangle: (image BGR, (x0, y0, x1, y1))."""
    image = np.full((height, width, 3), 80, np.uint8)
    x0, y0 = int(rng.integers(4, width // 2)), int(rng.integers(4, height // 2))
    x1, y1 = x0 + int(rng.integers(20, width // 2 - 4)), y0 + int(rng.integers(16, height // 2 - 4))
    image[y0:y1, x0:x1] = rng.integers(120, 255, size=3)
    return image, (x0, y0, x1, y1)


def write_voc(folder: str, num_train: int = 8, num_val: int = 4) -> str:
    """A VOC-format folder (Annotations/, JPEGImages/, ImageSets/Main/{train,val}.txt) with ids such as
    "2019_YELL_0003"; the train split annotates Tree and Bush, the val split also Rock. Returns `folder`."""
    for part in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(folder, part), exist_ok=True)
    rng = np.random.default_rng(0)
    splits = {"train": [], "val": []}
    for i in range(num_train + num_val):
        split = "train" if i < num_train else "val"
        classes = VOC_CLASSES[:2] if split == "train" else VOC_CLASSES
        image_id = f"2019_YELL_{i:04d}"
        splits[split].append(image_id)
        image, (x0, y0, x1, y1) = _scene(rng)
        cv2.imwrite(os.path.join(folder, "JPEGImages", f"{image_id}.jpg"), image)
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = f"{image_id}.jpg"
        size = ET.SubElement(root, "size")
        for tag, value in (("width", image.shape[1]), ("height", image.shape[0]), ("depth", 3)):
            ET.SubElement(size, tag).text = str(value)
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = classes[i % len(classes)]
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(box, tag).text = str(value)
        ET.ElementTree(root).write(os.path.join(folder, "Annotations", f"{image_id}.xml"))
    for split, ids in splits.items():
        with open(os.path.join(folder, "ImageSets", "Main", f"{split}.txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
    return folder


def write_labelme_coco(folder: str, num_images: int = 6, categories=(0, 1)) -> tuple:
    """A COCO export as labelme's labelme2coco writes it: string image ids (file stems), category ids from 0,
    polygon segmentations. Returns (json path, image folder)."""
    images_dir = os.path.join(folder, "JPEGImages")
    os.makedirs(images_dir, exist_ok=True)
    rng = np.random.default_rng(1)
    images, annotations = [], []
    for i in range(num_images):
        image, (x0, y0, x1, y1) = _scene(rng)
        stem = f"photo_{i:03d}"
        cv2.imwrite(os.path.join(images_dir, f"{stem}.jpg"), image)
        images.append({"id": stem, "file_name": f"{stem}.jpg", "height": image.shape[0], "width": image.shape[1]})
        polygon = [x0, y0, x1, y0, x1, y1, x0, y1]
        annotations.append(
            {
                "id": i,
                "image_id": stem,
                "category_id": categories[i % len(categories)],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "segmentation": [[float(v) for v in polygon]],
                "iscrowd": 0,
            }
        )
    path = os.path.join(folder, "annotations.json")
    cats = [{"id": c, "name": name} for c, name in zip(categories, ("person", "bicycle", "car"))]
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": cats}, f)
    return path, images_dir
