#!/usr/bin/env python
"""HERE (this machine, with the package registry): build the wheelhouse the device kit installs THERE.

    python benchmarks/device_kit/build_wheelhouse.py            # into .whl/ (ignored by git, carried by the kit)
    python benchmarks/device_kit/build_wheelhouse.py --output DIR

A lent GPU machine runs Python 3.12 (x86-64) with its own torch / torchvision and no package registry
(`../shared/notes/gpu-checklist.md`). What cascade_det needs beyond its own packages travels as wheels that install
there with `pip install --no-index --no-deps --target DIR` over its torch:
  * pure-Python packages at the versions `.ci/constraints.txt` pins, built here (`pip wheel --no-deps`; some are
    sdists only): fvcore, iopath, yacs, omegaconf, hydra-core, antlr4-python3-runtime, termcolor, submitit;
  * compiled ones as the registry's cp312 manylinux wheels (`pip download --python-version 3.12`): pycocotools,
    faster-coco-eval;
  * Detectron2 0.6 as a pure-Python wheel of the registry's sdist, patched as `.ci/install_detectron2.py` patches
    it (no C++ extension; model-zoo configs packaged);
  * cascade_det itself (`pip wheel --no-deps .`).
The machine already has numpy, opencv, Pillow, matplotlib, PyYAML, portalocker, cloudpickle, tabulate, tqdm,
tensorboard, onnx, onnxruntime, safetensors and pytest (KINDS.md of the device tool); they are not carried.
At the end the wheelhouse is checked as pip there will see it: every wheel must be installable by a CPython 3.12 on
x86-64 (`pip install --dry-run` with 3.12's tags), and the whole must stay under `--max-mib` (the working tree and
the wheels travel together, 64 MiB in all).
"""

import argparse
import glob
import os
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PURE = ["fvcore", "iopath", "yacs", "omegaconf", "hydra-core", "antlr4-python3-runtime", "termcolor", "submitit"]
COMPILED = ["pycocotools", "faster-coco-eval"]
# What a CPython 3.12 on x86-64 Linux accepts (pip matches manylinux_2_N exactly: name the usual N).
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
TAGS = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none"]
TAGS += [arg for platform in PLATFORMS for arg in ("--platform", platform)] + ["--platform", "any"]


def pinned() -> dict:
    """{package name: version} from .ci/constraints.txt."""
    versions = {}
    with open(os.path.join(ROOT, ".ci", "constraints.txt")) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                versions[name.strip().lower()] = version.strip()
    return versions


def pip(*args: str) -> None:
    subprocess.check_call([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"])


def detectron2_wheel(output: str) -> None:
    """Detectron2 0.6 as a pure-Python wheel, from the sdist `.ci/install_detectron2.py` fetches and patches."""
    sys.path.insert(0, os.path.join(ROOT, ".ci"))
    import install_detectron2

    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(install_detectron2.fetch(tmp)) as tar:
            tar.extractall(tmp, filter="data")
        tree = os.path.join(tmp, install_detectron2.SDIST[: -len(".tar.gz")])
        install_detectron2.patch_setup(os.path.join(tree, "setup.py"))
        pip("wheel", "--no-deps", "--no-build-isolation", "-w", output, tree)


def build(output: str) -> list:
    os.makedirs(output, exist_ok=True)
    versions = pinned()
    missing = [name for name in PURE + COMPILED if name not in versions]
    if missing:
        sys.exit(f".ci/constraints.txt pins no version of {', '.join(missing)}")
    pip("wheel", "--no-deps", "-w", output, *(f"{name}=={versions[name]}" for name in PURE))
    pip("download", "--no-deps", "--only-binary=:all:", *TAGS, "-d", output,
        *(f"{name}=={versions[name]}" for name in COMPILED))  # fmt: skip
    detectron2_wheel(output)
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", output, ROOT)
    return sorted(glob.glob(os.path.join(output, "*.whl")))


def check(wheels: list, max_mib: float) -> None:
    """The wheels install for CPython 3.12 on x86-64 (pip's dry run with those tags), one version of each, and fit."""
    names = [os.path.basename(w).split("-")[0].lower() for w in wheels]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        sys.exit(f"two wheels of {', '.join(twice)} in the wheelhouse: pip would refuse the install there")
    with tempfile.TemporaryDirectory() as target:
        pip("install", "--dry-run", "--no-index", "--no-deps", "--only-binary=:all:", *TAGS, "--target", target,
            *wheels)  # fmt: skip
    size = sum(os.path.getsize(w) for w in wheels) / 2**20
    if size > max_mib:
        sys.exit(f"the wheelhouse is {size:.1f} MiB, more than --max-mib {max_mib}")
    print(f"{len(wheels)} wheels, {size:.1f} MiB, installable by CPython 3.12 on x86-64:")
    for wheel in wheels:
        print(f"  {os.path.basename(wheel)}")


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=os.path.join(ROOT, ".whl"), help="folder of the wheels (default .whl/)")
    parser.add_argument("--max-mib", type=float, default=40.0, help="the most the wheels may weigh together")
    args = parser.parse_args(argv)
    if glob.glob(os.path.join(args.output, "*.whl")):
        sys.exit(f"{args.output} already holds wheels: remove them (or give another --output), so one version of each")
    wheels = build(args.output)
    check(wheels, args.max_mib)
    return wheels


if __name__ == "__main__":
    main()
