"""Register datasets from the command line (`train_net.py --register-coco NAME JSON IMAGE_ROOT`,
`--register-voc NAME DIR SPLIT`), in every process of a run, before its config is read."""

import os
import xml.etree.ElementTree as ET
from typing import Iterable, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances, register_pascal_voc
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASS_NAMES

from ..errors import MissingFileError
from .checks import DatasetError

__all__ = ["register_coco", "register_from_args", "register_voc"]


def _already_registered(flag: str, name: str, source: str, attribute: str) -> bool:
    """Whether `name` is registered already with this same source, the metadata `attribute` ("json_file" for COCO,
    "dirname" for VOC; a second call in one process: nothing to do); an error when it is registered with something
    else. (Not json_file for VOC: Detectron2's COCOEvaluator sets it to the converted ground truth it writes.)"""
    if name not in DatasetCatalog.list():
        return False
    registered = getattr(MetadataCatalog.get(name), attribute, None)
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
        raise MissingFileError(f"{flag} {name}: the annotation file {json_file} does not exist")
    if not os.path.isdir(image_root):
        raise MissingFileError(f"{flag} {name}: the image folder {image_root} does not exist")
    if not _already_registered(flag, name, json_file, "json_file"):
        register_coco_instances(name, {}, os.path.abspath(json_file), os.path.abspath(image_root))


def _voc_class_names(dirname: str) -> List[str]:
    """The classes a VOC-format folder annotates, shared by all its splits (a class seen in one split only still
    gets the same id in every split): VOC's 20 in their usual order when it uses only those, else every name its
    Annotations/*.xml files give, sorted."""
    folder = os.path.join(dirname, "Annotations")
    found = set()
    for file in sorted(os.listdir(folder)):
        if not file.endswith(".xml"):
            continue
        path = os.path.join(folder, file)
        try:
            objects = ET.parse(path).findall("object")
        except ET.ParseError as e:
            raise DatasetError(f"--register-voc: {path} is not valid XML ({e}); fix or remove it") from e
        for obj in objects:
            name = obj.findtext("name")
            if not name or not name.strip():
                raise DatasetError(f"--register-voc: {path} has an <object> without a <name>; give every object one")
            found.add(name.strip())
    if not found:
        raise DatasetError(f"--register-voc: no <object> in the annotation files of {folder}")
    return list(VOC_CLASS_NAMES) if found <= set(VOC_CLASS_NAMES) else sorted(found)


def register_voc(name: str, dirname: str, split: str, class_names: Optional[Sequence[str]] = None) -> None:
    """A Pascal-VOC-format dataset (Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/<split>.txt) under `name`,
    with `class_names` in that order (default: `_voc_class_names`, the same for every split of the folder)."""
    flag = "--register-voc"
    for part in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main", f"{split}.txt")):
        if not os.path.exists(os.path.join(dirname, part)):
            raise MissingFileError(
                f"{flag} {name}: {os.path.join(dirname, part)} does not exist (a VOC-format "
                "folder has Annotations/, JPEGImages/ and ImageSets/Main/<split>.txt)"
            )
    if class_names is not None:
        class_names = [c.strip() for c in class_names]
        if not class_names or any(not c for c in class_names) or len(set(class_names)) != len(class_names):
            raise DatasetError(f"--classes {','.join(class_names)}: give distinct, non-empty class names")
        missing = sorted(set(_voc_class_names(dirname)) - set(class_names))
        if missing:
            raise DatasetError(
                f"{flag} {name}: the annotations of {dirname} name classes that --classes lacks: {', '.join(missing)}"
            )
    if not _already_registered(flag, name, dirname, "dirname"):
        classes = list(class_names) if class_names is not None else _voc_class_names(dirname)
        register_pascal_voc(name, os.path.abspath(dirname), split, 2012, class_names=classes)


def register_from_args(
    coco: Iterable[Sequence[str]] = (), voc: Iterable[Sequence[str]] = (), classes: Optional[str] = None
) -> None:
    """Register what --register-coco and --register-voc name (each a (name, path, path-or-split) triple); `classes`
    (--classes a,b,c) names the VOC datasets' classes in order."""
    for name, json_file, image_root in coco or ():
        register_coco(name, json_file, image_root)
    class_names = classes.split(",") if classes else None
    for name, dirname, split in voc or ():
        register_voc(name, dirname, split, class_names)
