"""Register datasets from the command line (`train_net.py --register-coco NAME JSON IMAGE_ROOT`,
`--register-voc NAME DIR SPLIT`), in every process of a run, before its config is read."""

import os
import xml.etree.ElementTree as ET
from typing import Iterable, List, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances, register_pascal_voc
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASS_NAMES

from .checks import DatasetError

__all__ = ["register_coco", "register_from_args", "register_voc"]


def _already_registered(flag: str, name: str, source: str) -> bool:
    """Whether `name` is registered already with this same source (a second call in one process: nothing to do);
    an error when it is registered with something else."""
    if name not in DatasetCatalog.list():
        return False
    registered = getattr(MetadataCatalog.get(name), "json_file", None) or getattr(
        MetadataCatalog.get(name), "dirname", None
    )
    if registered and os.path.abspath(registered) == os.path.abspath(source):
        return True
    raise DatasetError(
        f"{flag} {name}: a dataset of that name is already registered ({registered or 'builtin'}); choose another name"
    )


def register_coco(name: str, json_file: str, image_root: str) -> None:
    """A COCO-json detection dataset under `name` (Detectron2's `register_coco_instances`: category ids mapped to
    contiguous ids, non-contiguous ids such as COCO's 1..90 included)."""
    flag = "--register-coco"
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"{flag} {name}: the annotation file {json_file} does not exist")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"{flag} {name}: the image folder {image_root} does not exist")
    if not _already_registered(flag, name, json_file):
        register_coco_instances(name, {}, os.path.abspath(json_file), os.path.abspath(image_root))


def _voc_class_names(dirname: str, split: str) -> List[str]:
    """The classes a VOC-format dataset annotates: VOC's 20 in their usual order when it uses only those, else the
    names found in the split's annotation files, sorted."""
    with open(os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")) as f:
        ids = [line.strip() for line in f if line.strip()]
    found = set()
    for image_id in ids:
        tree = ET.parse(os.path.join(dirname, "Annotations", f"{image_id}.xml"))
        found.update(obj.find("name").text for obj in tree.findall("object"))
    return list(VOC_CLASS_NAMES) if found <= set(VOC_CLASS_NAMES) else sorted(found)


def register_voc(name: str, dirname: str, split: str) -> None:
    """A Pascal-VOC-format dataset (Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/<split>.txt) under `name`."""
    flag = "--register-voc"
    for part in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main", f"{split}.txt")):
        if not os.path.exists(os.path.join(dirname, part)):
            raise FileNotFoundError(
                f"{flag} {name}: {os.path.join(dirname, part)} does not exist (a VOC-format "
                "folder has Annotations/, JPEGImages/ and ImageSets/Main/<split>.txt)"
            )
    if not _already_registered(flag, name, dirname):
        register_pascal_voc(name, os.path.abspath(dirname), split, 2012, class_names=_voc_class_names(dirname, split))


def register_from_args(coco: Iterable[Sequence[str]] = (), voc: Iterable[Sequence[str]] = ()) -> None:
    """Register what --register-coco and --register-voc name (each a (name, path, path-or-split) triple)."""
    for name, json_file, image_root in coco or ():
        register_coco(name, json_file, image_root)
    for name, dirname, split in voc or ():
        register_voc(name, dirname, split)
