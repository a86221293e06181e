#!/usr/bin/env python3
"""THERE (a lent GPU machine): one command that turns its minutes into the Speed table's CUDA rows.

    # here:   python benchmarks/device_kit/build_wheelhouse.py          (once: .whl/, about 20 MiB)
    # there:  device run, carry [".whl"], command:
    python3 benchmarks/device_kit/run_kit.py --out "$OUT"
    # dry run here, on the CPU at tiny sizes (CI runs it, so the kit cannot rot between lent devices):
    python benchmarks/device_kit/run_kit.py --dry-run --out /tmp/kit

Steps, each in a process of its own with a time limit; a step that fails is recorded and the next one runs:
  1. install the wheelhouse over the machine's own torch (`pip install --no-index --no-deps --target`);
  2. the environment: Python, torch, CUDA, the card (`nvidia-smi`), the installed versions;
  3. the tests marked `device` on the device (`CASCADE_DET_TEST_DEVICE`): parity of our heads with Detectron2's
     built-in cascade, boxes and masks, training and inference; exact resume after a kill;
  4. `benchmarks/benchmark_cascade.py` at 1333x800, batch 2 and batch 8 (each run also has batch-1 rows), fp32 and
     `--amp`: ours vs the built-in, same detections checked;
  5. 200 training iterations of the quickstart config and of `configs/COCO/cascade_rcnn_R_50_FPN_1x.py` on
     generated COCO-size images (640x480, resized to 1333x800 by the recipe), iterations/s from metrics.json.
Everything goes under --out (at most 8 files, as the device tool brings them back): kit.json (every step: command,
status, seconds, output tail), env.json, tests.log, benchmarks.txt, training.txt, summary.md (printed at the end).
Runs with the Python standard library until step 1 has installed the rest, so a broken wheel is a recorded step.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = "configs/Shapes/cascade_rcnn_R_18_FPN.py"
COCO = "configs/COCO/cascade_rcnn_R_50_FPN_1x.py"


class Kit:
    """The steps' runner: each step's command, status, time and output, recorded in kit.json as it goes."""

    def __init__(self, out: str, env: dict):
        self.out, self.env, self.steps = out, env, []

    def run(self, name: str, command: list, timeout: float, log: str = "") -> dict:
        start = time.time()
        try:
            proc = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
            status, output = (
                ("ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"),
                proc.stdout + proc.stderr,
            )
        except subprocess.TimeoutExpired as e:
            status = f"timed out after {timeout:.0f} s"
            output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        except OSError as e:
            status, output = f"could not start ({e})", ""
        step = {"step": name, "command": " ".join(command), "status": status, "seconds": round(time.time() - start, 1)}
        step["output_tail"] = output[-3000:]
        self.steps.append(step)
        if log:
            with open(os.path.join(self.out, log), "a") as f:
                f.write(f"\n===== {name}: {status} ({step['seconds']} s)\n$ {step['command']}\n{output}")
        with open(os.path.join(self.out, "kit.json"), "w") as f:
            json.dump(self.steps, f, indent=1)
        print(f"[kit] {name}: {status} ({step['seconds']} s)", flush=True)
        return step | {"output": output}


def install(kit: Kit, wheels: str, site: str) -> None:
    found = (
        sorted(os.path.join(wheels, w) for w in os.listdir(wheels) if w.endswith(".whl"))
        if os.path.isdir(wheels)
        else []
    )
    if not found:
        kit.steps.append({"step": "install", "status": f"failed (no wheels in {wheels}: build_wheelhouse.py here)"})
        return
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    kit.run("install", command + ["--no-cache-dir", "--upgrade", "--target", site, *found], 120)
    kit.env["PYTHONPATH"] = os.pathsep.join(p for p in (site, ROOT, kit.env.get("PYTHONPATH", "")) if p)


_ENVIRONMENT = """
import json, platform, subprocess, torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    info["device_name"] = torch.cuda.get_device_name(0)
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                         "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except OSError:
    info["nvidia_smi"] = "not found"
for name in ("detectron2", "cascade_det", "torchvision", "numpy", "fvcore", "pycocotools", "faster_coco_eval"):
    try:
        info[name] = __import__(name).__version__
    except Exception as e:
        info[name] = f"not importable: {type(e).__name__}: {e}"
print(json.dumps(info))
"""


def synthetic_coco(folder: str, images: int, size: tuple) -> str:
    """A COCO-json dataset of `images` generated images (random texture, 3 classes of boxes): its json path."""
    script = f"""
import json, os, numpy as np, cv2
folder, (w, h) = {folder!r}, {size!r}
os.makedirs(os.path.join(folder, "images"), exist_ok=True)
rng = np.random.default_rng(0)
images, annotations = [], []
for i in range(1, {images} + 1):
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for k in range(4):
        bw, bh = int(rng.integers(w // 10, w // 4)), int(rng.integers(h // 10, h // 4))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        image[y:y + bh, x:x + bw] = (60 * (k % 3), 200, 255 - 60 * (k % 3))
        annotations.append({{"id": len(annotations) + 1, "image_id": i, "category_id": k % 3 + 1,
                             "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0}})
    cv2.imwrite(os.path.join(folder, "images", f"{{i:05d}}.jpg"), image)
    images.append({{"id": i, "file_name": f"{{i:05d}}.jpg", "width": w, "height": h}})
categories = [{{"id": c, "name": f"class{{c}}"}} for c in (1, 2, 3)]
json.dump({{"images": images, "annotations": annotations, "categories": categories}},
          open(os.path.join(folder, "instances.json"), "w"))
"""
    subprocess.check_call([sys.executable, "-c", script], cwd=ROOT)
    return os.path.join(folder, "instances.json")


def iterations_per_second(output_dir: str) -> str:
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return "no metrics.json"
    with open(path) as f:
        times = [r["time"] for r in map(json.loads, f) if isinstance(r, dict) and "time" in r]
    return f"{len(times) / sum(times):.2f} it/s (over the {len(times)} logged iterations)" if times else "no timing"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT", ""), help="where everything is written ($OUT there)")
    parser.add_argument("--wheels", default=os.path.join(ROOT, ".whl"), help="the wheelhouse (build_wheelhouse.py)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="here: CPU, tiny sizes, no install, seconds per step")
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("--out is required (or $OUT)")
    os.makedirs(args.out, exist_ok=True)
    if os.listdir(args.out):
        parser.error(f"--out {args.out} is not empty: give a new or empty folder")
    device = "cpu" if args.dry_run else args.device
    scratch = os.path.join("/tmp", f"cascade_det_kit_{os.getpid()}")
    env = dict(os.environ, PYTHONUNBUFFERED="1", CASCADE_DET_TEST_DEVICE=device, PYTHONPATH=ROOT)
    os.makedirs(scratch, exist_ok=True)
    kit = Kit(args.out, env)
    if not args.dry_run:
        install(kit, args.wheels, os.path.join(scratch, "site"))

    step = kit.run("environment", [sys.executable, "-c", _ENVIRONMENT], 120)
    with open(os.path.join(args.out, "env.json"), "w") as f:
        f.write(step["output"].strip().splitlines()[-1] if step["status"] == "ok" else json.dumps(step))

    # The exact-resume test runs on the CPU in the suite itself: the dry run leaves it out to stay short.
    skip = "not 2-processes" + (" and not sigkill" if args.dry_run else "")
    pytest = [sys.executable, "-m", "pytest", "-q", "-m", "device", "-k", skip, "-p", "no:cacheprovider", "tests"]
    kit.run("device tests", pytest, 240, log="tests.log")

    benchmark = [sys.executable, "benchmarks/benchmark_cascade.py", "--device", device]
    variants = (
        [(["--smoke"], "smoke")]
        if args.dry_run
        else [
            (
                ["--sizes", "1333x800", "--batch", str(b), "--iters", "5", "--repeats", "2", *amp],
                f"b{b}{'-amp' if amp else ''}",
            )
            for amp in ([], ["--amp"])
            for b in (2, 8)
        ]
    )
    for extra, name in variants:
        json_path = os.path.join(scratch, f"bench_{name}.json")
        kit.run(f"benchmark {name}", benchmark + extra + ["--json", json_path], 150, log="benchmarks.txt")

    iterations = 2 if args.dry_run else 200
    size = (96, 64) if args.dry_run else (640, 480)
    runs = []
    try:
        dataset = synthetic_coco(os.path.join(scratch, "coco_size"), 8 if args.dry_run else 64, size)
    except subprocess.CalledProcessError as e:
        dataset = ""
        kit.steps.append({"step": "generate COCO-size images", "status": f"failed (exit {e.returncode})"})
    common = [f"train.device={device}", f"train.max_iter={iterations}", "train.eval_period=0", "train.final_eval=False"]
    common += [
        f"train.log_period={1 if args.dry_run else 10}",
        f"dataloader.train.num_workers={2 if args.dry_run else 8}",
    ]
    # The COCO recipe without its ImageNet weights (none can travel) and without its 8-GPU scaling: exactly these
    # iterations at batch 8 (2 in the dry run), at a learning rate a randomly initialised R50 survives (this run
    # measures the loop's speed, not what it learns).
    from_scratch = ["train.init_checkpoint=", "train.reference_world_size=0", "optimizer.lr=0.0001"]
    from_scratch += [f"dataloader.train.total_batch_size={2 if args.dry_run else 8}", "train.loss_explosion_factor=0"]
    quick_out = os.path.join(scratch, "quickstart")
    runs.append(("quickstart", quick_out, ["--config-file", QUICKSTART, f"train.output_dir={quick_out}", *common]))
    # The dry run trains the COCO recipe at 128 px instead of its 1333x800 (the CPU would take minutes).
    augment = "dataloader.train.mapper.augmentations.0"
    tiny_coco = [f"{augment}.short_edge_length=64", f"{augment}.max_size=128"] if args.dry_run else []
    if dataset:
        coco_out = os.path.join(scratch, "coco_r50")
        register = ["--register-coco", "kit_coco", dataset, os.path.join(os.path.dirname(dataset), "images")]
        runs.append(
            (
                "COCO R50-FPN 1x",
                coco_out,
                [
                    *register,
                    "--config-file",
                    COCO,
                    f"train.output_dir={coco_out}",
                    *from_scratch,
                    "model.roi_heads.num_classes=3",
                    "dataloader.train.dataset.names=kit_coco",
                    "dataloader.test.dataset.names=kit_coco",
                    *common,
                    *tiny_coco,
                ],
            )
        )
    lines = []
    for name, out, command in runs:
        step = kit.run(f"training {name}", [sys.executable, "train_net.py", *command], 240, log="training.txt")
        lines.append(f"| {name} | {iterations} | {step['status']} | {step['seconds']} | {iterations_per_second(out)} |")

    summary = [
        "# cascade_det device kit",
        "",
        f"device: {device}; env: see env.json",
        "",
        "| step | status | s |",
        "|---|---|---|",
        *(f"| {s['step']} | {s['status']} | {s.get('seconds', '')} |" for s in kit.steps),
        "",
        "| training | iterations | status | s | speed |",
        "|---|---|---|---|---|",
        *lines,
    ]
    tables = []
    if os.path.isfile(os.path.join(args.out, "benchmarks.txt")):
        with open(os.path.join(args.out, "benchmarks.txt")) as f:
            tables = [line for line in f.read().splitlines() if line.startswith(("|", "====="))]
    summary += ["", "## Benchmark tables", "", *tables]
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(summary) + "\n")
    print("\n".join(summary))
    failed = [s["step"] for s in kit.steps if s["status"] != "ok"]
    if failed:
        print(f"[kit] steps that did not pass: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
