"""The import graph of fastclap/ and kernels/ (parsed with ast, nothing imported): no cycle among modules, and no
module importing a layer above its own.

Layers, lowest first (a module may import its own package and any lower layer, nothing else):

   -1  fastclap (the root package: the version and lazy attributes; it imports nothing statically)
    0  fastclap.config, fastclap.serialization, fastclap.paths, fastclap.lazy, fastclap.cli (cli reaches its subcommands through importlib
       names; statically it imports only the root, and the subcommands import its shared ``error: ...`` handling)
    1  fastclap.kernels (the kernels/ folder), fastclap.data
    2  fastclap.losses
    3  fastclap.model, fastclap.compat
    4  fastclap.engine
    5  fastclap.evaluation
    6  fastclap.trainer (the training run), fastclap.evaluate
  6.5  fastclap.train (the trainer's command line: parses, then imports fastclap.trainer)
    7  fastclap.experiment
    8  fastclap.__main__

config and data stand apart: they import no torch-level layer of fastclap (losses, model, engine, ...); config
does not import torch at all (checked here at module level and, in tests/test_config_package.py, by importing it).
Every import counts - at module level, inside functions (lazy imports) and under ``TYPE_CHECKING`` - since a
lazy import is still a dependency and a lazy cycle is still a cycle.
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = {
    "fastclap": -1, "config": 0, "serialization": 0, "paths": 0, "lazy": 0, "cli": 0,
    "kernels": 1, "data": 1,
    "losses": 2,
    "model": 3, "compat": 3,
    "engine": 4,
    "evaluation": 5,
    "trainer": 6, "train": 6.5, "evaluate": 6,
    "experiment": 7,
    "__main__": 8,
}
HEAVY = ("torch", "numpy", "triton", "deepspeed", "transformers", "opensmile", "soundfile")


def _modules():
    """Dotted module name -> file, for every module of fastclap/ and kernels/ (installed as fastclap.kernels)."""
    out = {}
    for folder, package in (("fastclap", "fastclap"), ("kernels", "fastclap.kernels")):
        for dirpath, dirs, files in os.walk(os.path.join(ROOT, folder)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, name), os.path.join(ROOT, folder))[:-3].split(os.sep)
                    if rel[-1] == "__init__":
                        rel = rel[:-1]
                    out[".".join([package, *rel])] = os.path.join(dirpath, name)
    return out


MODULES = _modules()


def _targets(module, path, node):
    """Modules of fastclap an import statement of ``module`` names (the longest known prefix of each)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if path.endswith("__init__.py") else module.split(".")[:-1]
            base = base[:len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module
        names = [f"{prefix}.{a.name}" for a in node.names]
    out = set()
    for name in names:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES and name != module:
            out.add(name)
    return out


def _graph():
    edges = {}
    for module, path in MODULES.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        edges[module] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[module] |= _targets(module, path, node)
    return edges


def _layer_of(module):
    parts = module.split(".")
    return "fastclap" if len(parts) == 1 else parts[1]


def _cycles(edges):
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_every_module_has_a_layer():
    assert len(MODULES) > 60 and "fastclap.kernels.smooth_clap" in MODULES and "fastclap.config.schema" in MODULES
    assert {_layer_of(m) for m in MODULES} <= set(LAYERS), {_layer_of(m) for m in MODULES} - set(LAYERS)


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_cycle_detection_sees_a_lazy_cycle():
    """Control: a cycle closed by an import inside a function (the shape the model towers once had) is found."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_no_layer_imports_a_higher_one():
    bad = []
    for module, targets in _graph().items():
        own = _layer_of(module)
        for target in sorted(targets):
            other = _layer_of(target)
            if other != own and LAYERS[other] >= LAYERS[own]:
                bad.append(f"{module} ({own}, layer {LAYERS[own]}) imports {target} ({other}, layer {LAYERS[other]})")
    assert not bad, "\n".join(bad)


def test_config_imports_nothing_heavy_at_module_level():
    """The config package's module-level imports: no torch-level library (DeepSpeed's schema is consulted only
    when the DeepSpeed keys are checked, inside that function)."""
    bad = []
    for module, path in MODULES.items():
        if _layer_of(module) != "config":
            continue
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                bad += [f"{module}: {n}" for n in names if n.split(".")[0] in HEAVY]
    assert not bad, bad
