"""Every module imports alone, and no module-level imports of cnnlab form a circle."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cnnlab

PACKAGE = Path(cnnlab.__file__).resolve().parent
MODULES = sorted(
    "cnnlab." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py")
    if path.name != "__main__.py"
)

# A first interpreter imports every module and lists the third-party modules they pulled in. A
# second imports those once, then forks a child per cnnlab module; each child starts with no
# cnnlab module loaded, so it imports its module alone, as a fresh interpreter would (circles
# and missing imports among cnnlab's own modules show), in a fraction of the time.
_LIST_THIRD_PARTY = textwrap.dedent("""
    import importlib, sys
    for name in sys.argv[1:]:
        importlib.import_module(name)
    print("\\n".join(m for m in list(sys.modules) if m.split(".")[0] != "cnnlab"))
""")
_FORK_EACH = textwrap.dedent("""
    import contextlib, importlib, os, sys, traceback
    modules, third_party = sys.argv[1:], sys.stdin.read().split()
    for name in third_party:
        with contextlib.suppress(BaseException):
            importlib.import_module(name)
    failed = []
    for name in modules:
        pid = os.fork()
        if pid == 0:
            try:
                importlib.import_module(name)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            failed.append(name)
    print("FAILED", *failed)
    sys.exit(1 if failed else 0)
""")


def test_every_module_imports_alone_in_a_fresh_interpreter():
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    third_party = subprocess.run([sys.executable, "-c", _LIST_THIRD_PARTY, *MODULES], capture_output=True,
                                 text=True, env=env, timeout=300, check=True).stdout
    result = subprocess.run([sys.executable, "-c", _FORK_EACH, *MODULES], input=third_party,
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert len(MODULES) > 80


def _imports(module: str, everywhere: bool = False) -> set[str]:
    """cnnlab modules a module imports: at its top level, or with ``everywhere`` also inside
    functions (lazy imports) and under ``if TYPE_CHECKING:`` (type imports)."""
    parts = module.split(".")[1:]
    path = PACKAGE.joinpath(*parts, "__init__.py") if PACKAGE.joinpath(*parts).is_dir() \
        else PACKAGE.joinpath(*parts).with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree) if everywhere else tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cnnlab"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("cnnlab."))
    return found & set(MODULES)


def _module_level_imports(module: str) -> set[str]:
    """cnnlab modules a module imports at its top level (not inside functions)."""
    return _imports(module)


def _circles(graph: dict[str, set[str]]) -> list[str]:
    # A package's __init__ re-exporting its own submodules is not a circle between modules.
    edges = {m: {t for t in targets if not (t == m.rsplit(".", 1)[0] and m.startswith(t + "."))}
             for m, targets in graph.items()}
    circles = []
    for start in MODULES:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for target in edges[node]:
                if target == start:
                    circles.append(" -> ".join([*path, start]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))
    return circles


def test_no_import_circles():
    assert _circles({module: _module_level_imports(module) for module in MODULES}) == []


def test_no_import_circles_through_type_or_lazy_imports():
    """A circle made only of imports inside functions or under TYPE_CHECKING is still a circle:
    the two modules depend on each other, whichever imports first."""
    assert _circles({module: _imports(module, everywhere=True) for module in MODULES}) == []


def test_experiment_schema_imports_nothing_of_the_stages():
    assert _module_level_imports("cnnlab.config") <= {"cnnlab.errors"}


def test_the_store_is_the_ground_floor():
    """The store imports no models, data, training or analysis, not even lazily: only the schema
    of experiments, the errors and the atomic writer."""
    allowed = {"cnnlab.config", "cnnlab.errors", "cnnlab.files"}
    for module in MODULES:
        if module == "cnnlab.store" or module.startswith("cnnlab.store."):
            outside = {m for m in _imports(module, everywhere=True)
                       if m != "cnnlab.store" and not m.startswith("cnnlab.store.")}
            assert outside <= allowed, (module, sorted(outside - allowed))
