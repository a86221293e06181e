"""Run one of Detectron2's own tools (its `tools/` scripts) with cascade_det in place.

    python -m cascade_det.run_tool visualize_json_results --input inference/iter_0000599/coco_instances_results.json \
        --output vis/ --dataset cascade_shapes_val
    python -m cascade_det.run_tool visualize_data --config-file configs/Shapes/cascade_rcnn_R_18_FPN.yaml \
        --source annotation --output vis/
    python -m cascade_det.run_tool path/to/any_detectron2_script.py ARGS

The tool runs as `__main__` after `import cascade_det`, which applies the compat fixes the installed Detectron2
needs, registers the cascade heads and the embedded datasets, and makes `detectron2.config.get_cfg()` include
cascade_det's yacs keys, so the tools read our yacs configs. A name without ".py" is a module of Detectron2's
`tools` package (installed with Detectron2), a path is run as a script.
"""

import os
import runpy
import sys

import cascade_det

import detectron2.config
import detectron2.config.config

__all__ = ["main"]


def _get_cfg_with_cascade_keys(original):
    def get_cfg():
        return cascade_det.add_cascade_config(original())

    get_cfg.__doc__ = original.__doc__
    return get_cfg


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if argv else 2)
    tool, args = argv[0], argv[1:]
    get_cfg = _get_cfg_with_cascade_keys(detectron2.config.config.get_cfg)
    detectron2.config.get_cfg = detectron2.config.config.get_cfg = get_cfg
    if tool.endswith(".py"):
        if not os.path.isfile(tool):
            raise SystemExit(f"python -m cascade_det.run_tool: {tool} does not exist")
        sys.argv = [tool, *args]
        runpy.run_path(tool, run_name="__main__")
    else:
        module = tool if "." in tool else f"tools.{tool}"
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
