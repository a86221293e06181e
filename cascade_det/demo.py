"""Draw a trained model's detections on images, folders, globs or videos; with --per-stage, each cascade stage's own
detections side by side with the model's (the paper's figure, for your images).

    python -m cascade_det.demo --config-file CFG --input image.jpg --output vis/ train.init_checkpoint=model.pth
    python -m cascade_det.demo --config-file CFG --input "photos/*.jpg" --output vis/ --per-stage --weights model.pth
    python -m cascade_det.demo --config-file CFG --input clip.mp4 --output vis/ --confidence-threshold 0.5

Images are written as PNG under the same names, a video as an .mp4 of the same name; nothing existing is
overwritten (the command refuses and names the file). Drawings are Detectron2's Visualizer's, with the class names
the checkpoint carries (a cascade_det training wrote them), else those of the config's datasets (register yours with
--register-coco / --register-voc, as for train_net.py).
"""

import glob
import os
import sys
from typing import List, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from detectron2.data.detection_utils import read_image
from detectron2.utils.visualizer import Visualizer

from .engine.args import config_tool_parser, probability, register_datasets, tool_logging
from .errors import InputError, MissingFileError, UnreadableFileError, exit_on_user_error
from .outputs import check_writable, refuse_existing, write_png
from .predictor import Predictor

__all__ = ["draw", "main", "resolve_inputs"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def resolve_inputs(pattern: str) -> List[str]:
    """The image or video files `pattern` names: a file, a folder (its images, sorted) or a glob."""
    if os.path.isdir(pattern):
        files = sorted(os.path.join(pattern, f) for f in os.listdir(pattern) if f.lower().endswith(IMAGE_EXTENSIONS))
    elif os.path.isfile(pattern):
        files = [pattern]
    else:
        files = sorted(f for f in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(f))
    if not files:
        raise MissingFileError(f"--input {pattern}: no image or video found (a file, a folder of images, or a glob)")
    return files


def draw(predictor: Predictor, image_bgr: np.ndarray, per_stage: bool) -> np.ndarray:
    """The detections drawn on the image (BGR); with `per_stage`, one panel per stage and one for the model's
    detections, side by side, each titled."""
    if not per_stage:
        panels = [("", predictor(image_bgr))]
    else:
        own, stages = predictor(image_bgr, per_stage=True)
        panels = [(f"stage {t}", s) for t, s in enumerate(stages)] + [("output", own)]
    drawn = []
    for title, instances in panels:
        visualizer = Visualizer(image_bgr[:, :, ::-1], predictor.metadata, scale=1.0)
        out = visualizer.draw_instance_predictions(instances).get_image()[:, :, ::-1].copy()
        if title:
            cv2.putText(out, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 3, cv2.LINE_AA)
            cv2.putText(out, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        drawn.append(out)
    return np.concatenate(drawn, axis=1)


def _targets(files: Sequence[str], output: str) -> List[str]:
    targets = []
    for path in files:
        stem, ext = os.path.splitext(os.path.basename(path))
        targets.append(os.path.join(output, stem + (".mp4" if ext.lower() in VIDEO_EXTENSIONS else ".png")))
    for target in targets:
        refuse_existing(target)
    if len(set(targets)) != len(targets):
        raise InputError("two inputs have the same name; draw them into different --output folders")
    return targets


def _video(predictor, path, target, per_stage) -> int:
    """Draw every frame of the video at `path` into an .mp4 at `target`; it appears there only when complete."""
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise UnreadableFileError(f"--input {path}: cannot open the video")
    partial = os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".partial.mp4")
    expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    try:
        frames = _draw_frames(capture, predictor, path, partial, per_stage)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    finally:
        capture.release()
    if frames == 0:
        raise UnreadableFileError(f"--input {path}: the video has no readable frame")
    if expected and frames < expected - max(2, expected // 100):  # (a container's count may be estimated)
        if os.path.exists(partial):
            os.remove(partial)
        raise UnreadableFileError(
            f"--input {path}: the video stopped at frame {frames} of the {expected} its header announces: it is "
            "truncated (an interrupted copy or recording?). Nothing was written for it; use an intact copy."
        )
    refuse_existing(target)
    os.replace(partial, target)
    return frames


def _draw_frames(capture, predictor, path, partial, per_stage) -> int:
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer, frames = None, 0
    with tqdm(total=total, desc=os.path.basename(path), unit="frame") as bar:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            drawn = draw(predictor, frame, per_stage)
            if writer is None:
                writer = cv2.VideoWriter(partial, cv2.VideoWriter_fourcc(*"mp4v"), fps, drawn.shape[1::-1])
                if not writer.isOpened():
                    raise OSError(f"cannot write a video at {partial} (OpenCV has no mp4v encoder here?)")
            writer.write(drawn)
            frames += 1
            bar.update(1)
    if writer is not None:
        writer.release()
    return frames


def main(argv: Sequence[str] = None) -> List[str]:
    parser = config_tool_parser("cascade_det.demo", __doc__, weights=True, register=True)
    parser.add_argument("--input", required=True, help="an image or video, a folder of images, or a glob")
    parser.add_argument("--output", required=True, help="folder to draw into")
    parser.add_argument("--per-stage", action="store_true", help="draw each stage's own detections beside the model's")
    parser.add_argument(
        "--confidence-threshold", type=probability, default=None, help="keep detections scoring this much (0..1)"
    )
    args = parser.parse_args(argv)
    files = resolve_inputs(args.input)
    targets = _targets(files, args.output)
    tool_logging()
    register_datasets(args)
    predictor = Predictor(args.config_file, args.weights, score_thresh=args.confidence_threshold, overrides=args.opts)
    if args.per_stage and not predictor.is_cascade:
        parser.error("--per-stage needs a cascade model (CascadeRCNNROIHeads)")
    images = [(f, t) for f, t in zip(files, targets) if not f.lower().endswith(VIDEO_EXTENSIONS)]
    # Every image is decoded before the first drawing is written: one unreadable file refuses the run whole, instead
    # of leaving half the drawings (and a rerun refused by them).
    for path, _ in images:
        _read(path)
    check_writable(args.output, "--output")
    os.makedirs(args.output, exist_ok=True)
    for path, target in tqdm(images, desc="images", unit="image", disable=len(images) < 2):
        write_png(target, draw(predictor, _read(path), args.per_stage))
    for path, target in zip(files, targets):
        if path.lower().endswith(VIDEO_EXTENSIONS):
            frames = _video(predictor, path, target, args.per_stage)
            print(f"{path}: {frames} frames drawn into {target}")
    print(f"wrote {len(targets)} file(s) into {args.output}")
    return targets


def _read(path: str) -> np.ndarray:
    """The image at `path` (BGR), decoded as training and Predictor decode it (Detectron2's reader: EXIF
    orientation, every bit depth and mode)."""
    try:
        return read_image(path, format="BGR")
    except (OSError, ValueError) as e:
        raise UnreadableFileError(f"--input: cannot read the image {path} ({type(e).__name__}: {e})") from e


if __name__ == "__main__":
    exit_on_user_error(main, sys.argv[1:])
