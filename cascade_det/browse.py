"""Draw the ground truth of a config's datasets (after the training augmentation, if asked), to check data before
training on it. The trainer's dataset checks run first.

    python -m cascade_det.browse --config-file CFG --output vis/ [--split train|test] [--train-augmentation]
    python -m cascade_det.browse --register-coco mine ann.json images/ --config-file configs/Custom/... \
        --output vis/ dataloader.train.dataset.names=mine

One PNG per image (the image id as its name), with the dataset's class names; at most --limit images (0: all).
Nothing existing is overwritten.
"""

import os
import sys
from typing import List, Sequence

from tqdm import tqdm

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.utils.visualizer import Visualizer

from .data import check_datasets
from .engine.args import add_register_arguments, config_tool_parser, non_negative_int, register_datasets
from .engine.run import Run
from .engine.setup import load_config
from .errors import UnreadableFileError, exit_on_user_error
from .outputs import check_writable, refuse_existing, write_png

__all__ = ["main"]


def main(argv: Sequence[str] = None) -> List[str]:
    parser = add_register_arguments(config_tool_parser("cascade_det.browse", __doc__))
    parser.add_argument("--output", required=True)
    parser.add_argument("--split", choices=("train", "test"), default="train")
    parser.add_argument("--train-augmentation", action="store_true", help="draw after the training augmentation")
    parser.add_argument("--limit", type=non_negative_int, default=0, help="draw at most this many images (0: all)")
    args = parser.parse_args(argv)
    register_datasets(args)
    run = Run.of(load_config(args.config_file, args.opts), world_size=1)
    setting = f"{args.split}_datasets"
    names = getattr(run.settings, setting)
    if not names:
        parser.error(f"{run.key(setting)} names no dataset")
    check_datasets(names, split="training" if args.split == "train" else "test", key=run.key(setting))
    mapper = run.build_train_mapper() if args.train_augmentation else None
    written = []
    check_writable(args.output, "--output")
    os.makedirs(args.output, exist_ok=True)
    for name in names:
        metadata = MetadataCatalog.get(name)
        dicts = DatasetCatalog.get(name)
        dicts = dicts[: args.limit] if args.limit else dicts
        for d in tqdm(dicts, desc=name, unit="image"):
            target = os.path.join(args.output, f"{name}_{d.get('image_id', len(written))}.png")
            refuse_existing(target)
            if mapper is None:
                try:  # as training reads it (EXIF orientation, every bit depth and mode)
                    image = read_image(d["file_name"], format="RGB")
                except (OSError, ValueError) as e:
                    raise UnreadableFileError(f"dataset {name}: cannot read the image {d['file_name']}: {e}") from e
                drawn = Visualizer(image, metadata).draw_dataset_dict(d).get_image()
            else:
                mapped = mapper(dict(d))
                image = mapped["image"].permute(1, 2, 0).numpy()
                image = image[:, :, ::-1] if getattr(mapper, "image_format", "BGR") == "BGR" else image
                instances = mapped["instances"]
                labels = [metadata.thing_classes[c] for c in instances.gt_classes.tolist()]
                drawn = (
                    Visualizer(image, metadata).overlay_instances(boxes=instances.gt_boxes, labels=labels).get_image()
                )
            write_png(target, drawn[:, :, ::-1])
            written.append(target)
    print(f"drew {len(written)} images into {args.output}")
    return written


if __name__ == "__main__":
    exit_on_user_error(main, sys.argv[1:])
