"""cascade_det: Cascade R-CNN as a Detectron2 extension.

Detectron2 itself is not listed in install_requires: it is not published on the package registry under its own
name, and its sdist there must be patched to install (see `.ci/install_detectron2.py`). `bash .ci/env.sh`
builds the whole pinned environment.
"""

from setuptools import find_packages, setup

setup(
    name="cascade_det",
    version="0.1.0",
    description="Cascade R-CNN (Cai & Vasconcelos, arXiv 1906.09756) as a Detectron2 extension",
    packages=find_packages(include=["cascade_det", "cascade_det.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.0",
        "torchvision",
        "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.10",
        "pycocotools>=2.0.7",
        "opencv-python-headless",
        "safetensors",
        "matplotlib",
        "omegaconf>=2.1",  # LazyConfig nodes (cascade_det.engine)
        "tabulate",  # the tables in logs and tool output
        "tqdm",  # the tools' progress bars
        "faster-coco-eval>=1.8,<1.9",  # the COCO evaluation backend (C++; pycocotools gives the same numbers)
        "submitit>=1.5,<1.6",  # reads SLURM's environment (node list) for multi-node launches
        "scipy",  # pairs exported detections with the eager model's (cascade_det.export)
        "timm>=1.0.20,<1.1",  # the Swin Transformer and ConvNeXt backbones' modules (cascade_det.modeling.backbones)
    ],
    extras_require={
        "dev": ["pytest", "pytest-timeout"],
        "deploy": ["onnx>=1.16", "onnxruntime>=1.18"],  # python -m cascade_det.export --format onnx
    },
)
