"""cascade_det's imports point one way: configuration and errors at the bottom, then models, data, weights and
evaluation, then the engine, then the tools. Every import counts, a function's own included: a cycle or an import of
a higher layer fails here, naming the modules."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Layer of each top-level part of the package (a module or a sub-package); a part may import its own layer and
# those below. The package's __init__ registers (compat, modeling, data) and names what users import.
LAYERS = {
    "errors": 0,
    "config": 0,
    "image_ids": 0,
    "compat": 1,
    "weights": 1,
    "backbone_layouts": 1,
    "solver": 1,
    "tracing": 1,
    "modeling": 2,
    "data": 2,
    "convert": 2,
    "evaluation": 3,
    "checkpoint": 3,
    "outputs": 2,
    "safe_loading": 3,
    "engine": 4,
    "predictor": 5,
    "export": 5,
    "quantize": 5,
    "analyze": 6,
    "browse": 6,
    "demo": 6,
    "evaluate": 6,
    "plot_metrics": 6,
    "__init__": 7,
    "run_tool": 8,  # imports the package (registration) to run Detectron2's own tools
}


def module_name(path: str, root: str = ROOT) -> str:
    rel = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def imports_of(path: str, root: str = ROOT):
    """The cascade_det modules `path` imports (absolute names), with the line of each import."""
    name = module_name(path, root)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "cascade_det":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "cascade_det":
                continue
            for alias in node.names:  # `from .pkg import module` imports that module
                sub = f"{target}.{alias.name}"
                yield (sub if _is_module(sub, root) else target), node.lineno


def _is_module(module: str, root: str) -> bool:
    base = os.path.join(root, *module.split("."))
    return os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__init__.py"))


def import_graph(root: str = ROOT):
    """{module: [(imported cascade_det module, line), ...]} for every module of root/cascade_det."""
    graph = {}
    for folder, _, files in os.walk(os.path.join(root, "cascade_det")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                graph[module_name(path, root)] = sorted(set(imports_of(path, root)))
    return graph


def find_cycles(graph):
    """The import cycles of `graph`, each as [m0, m1, ..., m0]."""
    edges = {m: {t for t, _ in targets if t != m} for m, targets in graph.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return cycles


def part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_of_the_package_has_a_layer():
    assert {part(m) for m in import_graph()} == set(LAYERS)


def test_no_module_imports_a_higher_layer():
    wrong = [
        f"{module} (layer {LAYERS[part(module)]}) imports {target} (layer {LAYERS[part(target)]}) at line {line}"
        for module, targets in import_graph().items()
        for target, line in targets
        if LAYERS[part(target)] > LAYERS[part(module)]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_imports_have_no_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_walker_sees_a_cycle_through_a_function_level_import(tmp_path):
    package = tmp_path / "cascade_det"
    (package / "modeling").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "config.py").write_text("def f():\n    from .modeling import heads\n")
    (package / "modeling" / "__init__.py").write_text("")
    (package / "modeling" / "heads.py").write_text("from ..config import f\n")
    cycles = find_cycles(import_graph(str(tmp_path)))
    assert cycles == [["cascade_det.config", "cascade_det.modeling.heads", "cascade_det.config"]]
