"""The package's import structure (issue 32): no import loops, no private name used across modules.

Every ``import`` statement counts, the ones inside functions too (a lazy import is still a
dependency); only ``if TYPE_CHECKING:`` blocks are left out. A package's ``__init__`` may import its
own modules; a module must then import from the defining module, never from its package's
``__init__`` (which would be a loop).
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, "lsn_fast")
NATIVE = {"lsn_fast._C", "lsn_fast._cuda"}  # extension modules, no Python source


def _modules() -> dict[str, str]:
    mods = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                mods[rel.removesuffix(".__init__")] = os.path.join(dirpath, f)
    return mods


MODS = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _walk(tree):
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(mod: str, path: str):
    """(target module, imported names or None, line) for each lsn_fast import in ``mod``."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    pkg = mod if path.endswith("__init__.py") else mod.rsplit(".", 1)[0]
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "lsn_fast":
                    yield a.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            if base.split(".")[0] == "lsn_fast":
                yield base, [a.name for a in node.names], node.lineno


def _graph():
    edges: dict[str, set[str]] = {m: set() for m in MODS}
    private: list[str] = []
    for mod, path in MODS.items():
        for target, names, line in _imports(mod, path):
            if names is None:
                edges[mod].add(target)
                continue
            for n in names:
                sub = f"{target}.{n}"
                if sub in MODS or sub in NATIVE:
                    edges[mod].add(sub)
                    if n.startswith("_") and sub not in NATIVE and n != "_version" and not sub.startswith(mod.rsplit(".", 1)[0] + "."):
                        private.append(f"{mod}:{line} imports the private module {sub}")
                else:
                    edges[mod].add(target)
                    if n.startswith("_") and not n.startswith("__") and target != mod:
                        private.append(f"{mod}:{line} imports the private name {target}.{n}")
    return edges, private


def _cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_sources_found():
    assert "lsn_fast.physics.layers" in MODS and "lsn_fast.ops.op" in MODS and len(MODS) > 30


def test_no_import_loops():
    edges, _ = _graph()
    loops = _cycles(edges)
    assert not loops, "import loops:\n" + "\n".join(" <-> ".join(c) for c in loops)


def test_no_private_names_across_modules():
    _, private = _graph()
    assert not private, "\n".join(private)


def test_checker_sees_a_loop_and_a_private_import():
    # the checker itself can fail: a two-module loop and a private import are found
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    tree_edges = {"a": {"b"}, "b": {"c"}, "c": set()}
    assert _cycles(tree_edges) == []


@pytest.mark.parametrize("old,new", [("lsn_fast.compose", "lsn_fast.synthesis.compose"),
                                     ("lsn_fast.jsw", "lsn_fast.physics.jsw"),
                                     ("lsn_fast.tasks.experiment", "lsn_fast.experiments.five_percent")])
def test_old_paths_are_deprecated_aliases(old, new):
    import importlib
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        mod = importlib.import_module(old)
    assert mod is importlib.import_module(new)
    assert mod.__spec__.name == new


def test_an_old_path_does_not_shadow_the_public_name_it_shares():
    """``import lsn_fast.compose`` (the deprecated module path) leaves ``lsn_fast.compose`` the
    public function; ``from lsn_fast import compose`` too."""
    import importlib
    import sys

    import lsn_fast as lf
    from lsn_fast.synthesis import compose as compose_module

    sys.modules.pop("lsn_fast.compose", None)
    with pytest.warns(DeprecationWarning):
        mod = importlib.import_module("lsn_fast.compose")
    assert mod is compose_module
    assert callable(lf.compose) and lf.compose is compose_module.compose
    from lsn_fast import compose
    assert compose is compose_module.compose
    lf.some_new_attribute = 1  # ordinary attributes still bind
    assert lf.some_new_attribute == 1
    del lf.some_new_attribute
