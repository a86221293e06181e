"""Install Detectron2 0.6 as pure Python from the registry's `pb1-detectron2==0.6` sdist.

That sdist is upstream v0.6 (commit d1e04565) without `detectron2/layers/csrc/`, so a plain `pip install`
always fails while building the C++ extension; `pip download` fails too (an extra names a URL dependency).
We therefore fetch the file from the index ourselves, check its sha256, drop the extension from setup.py,
make `detectron2.model_zoo` package the config files the sdist already holds, and install that tree.
Cascade R-CNN needs none of the C++ ops: ROIAlign and NMS come from torchvision, and `cascade_det.compat`
provides a `detectron2._C` that raises a clear error only if a C++-only op is used.

Usage: python install_detectron2.py [pip install options...]
"""

import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile

SDIST = "pb1-detectron2-0.6.tar.gz"
SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"


def index_url() -> str:
    from pip._internal.models.index import PyPI

    return (os.environ.get("PIP_INDEX_URL") or PyPI.simple_url).rstrip("/")


def fetch(dest: str) -> str:
    from pip._internal.network.session import PipSession

    session = PipSession()
    page = session.get(f"{index_url()}/pb1-detectron2/", headers={"Accept": "text/html"})
    page.raise_for_status()
    links = [u for u in re.findall(r'href="([^"#]+)', page.text) if u.endswith("/" + SDIST)]
    if not links:
        sys.exit(f"{SDIST} is not listed on the package index {index_url()}")
    data = session.get(links[0]).content
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"{SDIST}: sha256 {digest} != expected {SHA256}; refusing to install it")
    path = os.path.join(dest, SDIST)
    with open(path, "wb") as f:
        f.write(data)
    return path


def patch_setup(path: str) -> None:
    with open(path) as f:
        text = f.read()
    text = text.replace("ext_modules=get_extensions(),", "")
    text = text.replace(
        'package_data={"detectron2.model_zoo": get_model_zoo_configs()},',
        'package_data={"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]},',
    )
    if "ext_modules=" in text or "configs/**/*.yaml" not in text:
        sys.exit(f"{path}: unexpected setup.py layout; expected upstream Detectron2 v0.6")
    with open(path, "w") as f:
        f.write(text)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fetch(tmp)) as tar:
            tar.extractall(tmp, filter="data")
        tree = os.path.join(tmp, SDIST[: -len(".tar.gz")])
        patch_setup(os.path.join(tree, "setup.py"))
        cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", *sys.argv[1:], tree]
        subprocess.check_call(cmd)


if __name__ == "__main__":
    main()
