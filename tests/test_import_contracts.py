"""The import contracts of docs/ARCHITECTURE.md ("The seam"), read from the source with `ast`:

* the Jupyter-side packages (kernel, magics, widgets, server) reach sandboxes, policies, flows and the proxy
  only through `jupyter_openshell.services`: they import none of `runtime`, `proxy`, `paths`, `cluster`, and
  of `policy` only its public package;
* the service layer uses only the public APIs below it (no `runtime._x`, `proxy._x`, `policy._x`);
* no module outside `paths.py` joins a state-directory name onto a path (`x / "policies"`): the layout has
  one owner;
* no import cycle between the package's modules (imports inside functions count; `if TYPE_CHECKING:` blocks
  and the package root's entry points, which Jupyter and IPython load, do not).

Each check has a CONTROL: the same checker run on a module that breaks the contract reports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "jupyter_openshell"
JUPYTER_SIDE = ("kernel", "magics", "widgets", "server")
FORBIDDEN_FOR_JUPYTER = ("runtime", "proxy", "paths", "cluster")
BELOW_SERVICES = ("runtime", "proxy", "policy")
# names of the state directory's layout (paths.Layout): joined onto a path anywhere else, they build a path
LAYOUT_NAMES = {
    "ca", "secrets", "policies", "sandboxes", "flows", "run", "kernels", "kernel-channels",
    "kubernetes", "demo", "sandbox.json", "control.sock", "proxy.sock", "sandbox.log", "flows.jsonl",
    "proxy.json", "proxy-auto.json", "proxy-sandboxes.json", "proxy-control.sock", "proxy.log",
    "ca-bundle.pem", "owners.json", "settings.json", "server-id", "kubeconfig", "cluster.json",
}


def _modules() -> dict[str, tuple[Path, bool]]:
    """{dotted name: (file, is a package)} of every module of the package."""
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` (never executed)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.body:
                skipped |= {id(n) for n in ast.walk(child)}
    return skipped


def imports(module: str, source: str, package: bool, known: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) of every import of the package in `source` (the module `module`), resolved to
    the deepest known module; imports under TYPE_CHECKING left out."""
    tree = ast.parse(source)
    skipped = _type_checking_nodes(tree)
    out = []
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            if node.level:
                base = module.split(".") if package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        for target in targets:
            if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
                continue
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            out.append((target, node.lineno))
    return out


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _private(module: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in module.split(".")[2:])


def jupyter_side_violations(module: str, found: list[tuple[str, int]]) -> list[str]:
    bad = []
    for target, line in found:
        area = _area(target)
        if area in FORBIDDEN_FOR_JUPYTER:
            bad.append(f"{module}:{line} imports {target} (go through jupyter_openshell.services)")
        elif area == "policy" and _private(target):
            bad.append(f"{module}:{line} imports {target} (the policy package's private module)")
    return bad


def service_violations(module: str, found: list[tuple[str, int]]) -> list[str]:
    return [
        f"{module}:{line} imports {target} (a private module: use the package's public API)"
        for target, line in found
        if _area(target) in BELOW_SERVICES and _private(target)
    ]


def path_building(module: str, source: str) -> list[str]:
    """`x / "policies"`-style joins of a state layout name (only `paths.Layout` spells them)."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and right.value in LAYOUT_NAMES:
                bad.append(f"{module}:{node.lineno} joins {right.value!r} onto a path (ask paths.Layout)")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {}
    for name, (path, package) in modules.items():
        if name == PACKAGE:  # the root's entry points (Jupyter, IPython) import what they start
            graph[name] = set()
            continue
        graph[name] = {t for t, _ in imports(name, path.read_text(), package, known) if t != name}
    return graph


def test_jupyter_side_goes_through_the_services():
    modules = _modules()
    known = set(modules)
    bad = []
    for name, (path, package) in modules.items():
        if _area(name) in JUPYTER_SIDE:
            bad += jupyter_side_violations(name, imports(name, path.read_text(), package, known))
    assert bad == [], "\n".join(bad)


def test_services_use_only_public_apis():
    modules = _modules()
    known = set(modules)
    bad = []
    for name, (path, package) in modules.items():
        if _area(name) == "services":
            bad += service_violations(name, imports(name, path.read_text(), package, known))
    assert bad == [], "\n".join(bad)


def test_only_paths_spells_the_state_layout():
    bad = []
    for name, (path, _package) in _modules().items():
        if name != f"{PACKAGE}.paths" and _area(name) != "testing":
            bad += path_building(name, path.read_text())
    assert bad == [], "\n".join(bad)


def test_no_import_cycles():
    assert cycles(_graph()) == []


@pytest.mark.parametrize(
    ("module", "source", "check"),
    [
        ("jupyter_openshell.kernel.bad", "from jupyter_openshell.runtime import get_backend\n", "jupyter"),
        ("jupyter_openshell.server.bad", "def f():\n    from ..proxy._server import serve\n", "jupyter"),
        ("jupyter_openshell.magics.bad", "from jupyter_openshell.paths import state_dir\n", "jupyter"),
        ("jupyter_openshell.widgets.bad", "import jupyter_openshell.policy._parse\n", "jupyter"),
        ("jupyter_openshell.services.bad", "from ..runtime._local import LocalBackend\n", "services"),
        ("jupyter_openshell.kernel.bad", "x = state / 'policies' / f'{name}.yaml'\n", "paths"),
    ],
)
def test_control_each_check_sees_a_violation(module, source, check):
    known = set(_modules()) | {module}
    found = imports(module, source, False, known)
    if check == "jupyter":
        assert jupyter_side_violations(module, found)
        assert not jupyter_side_violations(module, imports(module, "from ..services import sandboxes\n",
                                                            False, known))
    elif check == "services":
        assert service_violations(module, found)
    else:
        assert path_building(module, source)


def test_control_a_cycle_is_seen():
    graph = _graph()
    graph["jupyter_openshell.kernel.broker"] = {*graph["jupyter_openshell.kernel.broker"],
                                                "jupyter_openshell.magics.ops"}
    assert ["jupyter_openshell.kernel.broker", "jupyter_openshell.magics.ops"] in cycles(graph)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_lazy_public_exports_are_the_public_api():
    """Each package that re-exports lazily (`_lazy.lazy_exports`) exports exactly its `__all__`, and every
    name resolves (a name missing from the map would make `from package import *` fail)."""
    import importlib

    for package in ("jupyter_openshell.policy", "jupyter_openshell.proxy", "jupyter_openshell.widgets"):
        module = importlib.import_module(package)
        exports = getattr(module, "_EXPORTS", None)
        if exports is not None:
            assert set(exports) == set(module.__all__), package
        for name in module.__all__:
            assert getattr(module, name) is not None, (package, name)
