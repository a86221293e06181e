"""What the speed benchmarks share: their common options, and their `main` (measure, print the table, write
`--json PATH`, never over an earlier file)."""

import argparse
import json
import os
import platform

from cascade_det.outputs import next_free_path
from cascade_det.weights import atomic_write


def write_results(report: dict, path: str) -> str:
    """Write `report` as JSON at `path`, or, if that file exists, beside it as `<name>.<k>.json` for the first free
    k (runs that end in the same second included); whole or not at all. Returns the path written."""
    if os.path.exists(path):
        base, ext = os.path.splitext(path)
        stem, ext = (part.replace("{", "{{").replace("}", "}}") for part in (os.path.basename(base), ext))
        path = next_free_path(os.path.dirname(os.path.abspath(path)), stem + ".{}" + ext)
        print(f"--json file exists; writing {path} instead (nothing is overwritten)")
    with atomic_write(path) as f:
        f.write(json.dumps(report, indent=1).encode())
    print(f"wrote {path}")
    return path


def machine() -> str:
    """The CPU the numbers come from, as a table's caption names it: model, cores, and the vector instructions that
    decide fp32 and int8 speed (AVX-512, VNNI), from /proc/cpuinfo where there is one."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    vector = [name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f")) if flag in flags]
    vnni = "VNNI" if flags & {"avx512_vnni", "avx_vnni"} else "no VNNI"
    return f"{model}, {os.cpu_count()} cores, {'/'.join(vector) or 'no AVX2'}, {vnni}"


def benchmark_main(parse_args, benchmark, print_table, argv=None) -> dict:
    """parse_args(argv) -> benchmark(args) -> print_table(results), and the results written to --json if given;
    the results name the machine (`machine()`)."""
    args = parse_args(argv)
    results = {"machine": machine(), **benchmark(args)}
    print(f"machine: {results['machine']}")
    print_table(results)
    if args.json:
        write_results(results, args.json)
    return results


def timing_parser(description: str, warmup: int) -> argparse.ArgumentParser:
    """The options every speed benchmark takes: the model, the image sizes, how it is timed, --json."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="", help="yacs config (default: Detectron2's Misc cascade R50-FPN)")
    p.add_argument("--sizes", nargs="+", default=["1333x800", "320x320"], help="WxH image sizes")
    p.add_argument("--iters", type=int, default=3, help="timed iterations per repeat")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed iterations per variant before timing")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians are reported")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--json", default="", help="write all measurements here (never over an existing file)")
    return p
