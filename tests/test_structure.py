"""The structure a newcomer relies on: every API has all its pieces, layers import one way, one namespace."""
from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from imgrec import schemas
from imgrec.engines import ENGINES
from imgrec.schemas.tables import TABLES
from imgrec.tasks.normalize import NORMALIZERS, Context

ROOT = Path(__file__).resolve().parents[1]
# Folder -> its package in the one installed namespace (pyproject's package-dir).
FOLDERS = {"schemas": "imgrec.schemas", "connectors": "imgrec.connectors", "tasks": "imgrec.tasks",
           "flows": "imgrec.flows", "imgrec": "imgrec"}


@pytest.mark.parametrize("api", list(schemas.SPECS))
def test_every_api_has_every_piece(api):
    spec = schemas.SPECS[api]
    assert ENGINES[api].spec is spec  # an engine, built from the registry
    assert isinstance(spec.empty, spec.response)  # the simulation answer is a valid response
    assert spec.response.model_validate(spec.empty.to_wire()) == spec.empty
    assert set(spec.tables) <= set(TABLES)
    if spec.input == "url_only":
        assert spec.tables == () and api not in schemas.CATALOG_APIS  # not a catalog API
        return
    assert spec.tables and spec.tables[0] in NORMALIZERS
    rows = NORMALIZERS[spec.tables[0]](spec.empty, Context("r", "s", "k", api, 10, 10, write_output=None)) \
        if not spec.image_out else {"enhanced": []}
    assert set(rows) <= set(TABLES) and set(spec.tables) <= set(rows) | {"enhanced"}


def _imports(path: Path, package: str) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved against its package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                names.add(node.module)
    return names


def _modules(folder: str):
    root = ROOT / folder
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        package_parts = rel.parts[:-1] if rel.name != "__init__" else rel.parts[:-1]
        module = ".".join([FOLDERS[folder], *parts])
        package = ".".join([FOLDERS[folder], *package_parts])
        yield path, module, package


# What each module may import from the project, lowest floor first: the contract (schemas) <- connectors <-
# tasks (the pipeline) <- flows <- the CLI; engines and the service stand beside the pipeline, never under it.
# Every module falls under exactly one entry (the longest prefix that names it).
ALLOWED = {
    "imgrec.schemas": ("imgrec.schemas",),
    "imgrec.models": ("imgrec.models",),
    "imgrec.settings": ("imgrec.schemas", "imgrec.models"),
    "imgrec.logs": ("imgrec.schemas",),
    "imgrec.connectors": ("imgrec.schemas", "imgrec.connectors"),
    "imgrec.engines": ("imgrec.schemas", "imgrec.engines", "imgrec.models"),
    "imgrec.recognizer": ("imgrec.schemas", "imgrec.connectors", "imgrec.engines"),
    "imgrec.inprocess_backend": ("imgrec.schemas", "imgrec.connectors", "imgrec.engines", "imgrec.recognizer"),
    "imgrec.service": ("imgrec.schemas", "imgrec.connectors", "imgrec.engines", "imgrec.recognizer",
                       "imgrec.settings", "imgrec.logs", "imgrec.service"),
    "imgrec.tasks": ("imgrec.schemas", "imgrec.connectors", "imgrec.tasks"),
    # the analysts' reader; an image file asked about is fingerprinted with the engines
    "imgrec.warehouse": ("imgrec.schemas", "imgrec.connectors", "imgrec.tasks", "imgrec.settings", "imgrec.engines"),
    "imgrec.run_backend": ("imgrec.schemas", "imgrec.connectors", "imgrec.tasks", "imgrec.settings",
                           "imgrec.engines", "imgrec.recognizer", "imgrec.inprocess_backend"),
    "imgrec.flows": ("imgrec.schemas", "imgrec.connectors", "imgrec.tasks", "imgrec.flows", "imgrec.settings",
                     "imgrec.logs", "imgrec.run_backend", "imgrec.warehouse"),
    # the top: the command line and its helpers may use every floor; nothing imports them
    "imgrec.cli": ("imgrec",),
    "imgrec.cli_run": ("imgrec",),
    "imgrec.local_server": ("imgrec",),
    "imgrec.samples": ("imgrec",),
    "imgrec": (),  # the namespace package itself
}
TOP = ("imgrec.cli", "imgrec.cli_run", "imgrec.local_server", "imgrec.samples")


def _layer(module: str) -> str:
    matches = [p for p in ALLOWED if module == p or module.startswith(p + ".")]
    assert matches, f"{module} is in no layer: add it to ALLOWED"
    return max(matches, key=len)


@pytest.mark.parametrize("folder", list(FOLDERS))
def test_layers_import_one_way_and_nothing_generic(folder):
    for path, module, package in _modules(folder):
        project = {n for n in _imports(path, package) if n.split(".")[0] in ("imgrec", *FOLDERS)}
        generic = {n for n in project if n.split(".")[0] in ("schemas", "connectors", "tasks", "flows")}
        assert not generic, f"{path}: import through the imgrec namespace, not {generic}"
        layer = _layer(module)
        wrong = {n for n in project if n != "imgrec" and not any(n == a or n.startswith(a + ".") or a == "imgrec"
                                                                 for a in ALLOWED[layer])}
        assert not wrong, f"{module} imports {wrong}: against the layering"
        if layer not in TOP:
            top = {n for n in project if _layer(n) in TOP}
            assert not top, f"{module} imports the command line's {top}"


def test_no_import_circles():
    """Between modules (a package's __init__ aside): A imports B and B imports A, at any distance."""
    graph, packages = {}, set()
    for folder in FOLDERS:
        for path, module, package in _modules(folder):
            graph[module] = {n for n in _imports(path, package) if n != module}
            if path.name == "__init__.py":
                packages.add(module)
    known = set(graph)
    for module in graph:  # resolve `from package import module` names to modules
        graph[module] = {n if n in known else n.rsplit(".", 1)[0] for n in graph[module]} & known
    seen: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        seen[module] = 1
        for dep in sorted(graph[module] - packages):
            if seen.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join(trail[trail.index(dep):] + [dep]))
            if dep not in seen:
                visit(dep, trail + [dep])
        seen[module] = 2

    for module in sorted(known - packages):
        if module not in seen:
            visit(module, [module])


def test_every_package_is_installed():
    """A new sub-folder with an __init__.py must be listed in pyproject, or a wheel would leave it out."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join([package, *rel]))
    assert found <= listed  # (listed beyond these: data-only folders such as engines/weights)
    assert {k: v for k, v in config["package-dir"].items()} == {v: k for k, v in FOLDERS.items()}


CODE = re.compile(r"(AIS|APIG|AIP|IAM|NET|CLIENT|IMGREC)\.[A-Z0-9_]+")


def test_every_error_code_is_in_the_catalogue():
    """A code the project answers or records has its status, message and kind in one place."""
    from imgrec.schemas.errors import CATALOGUE, KINDS

    assert all(entry.kind in KINDS and entry.message for entry in CATALOGUE.values())
    found = {}
    for folder in FOLDERS:
        for path, _, _ in _modules(folder):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.fullmatch(node.value):
                    found.setdefault(node.value, path.name)
    assert len(found) > 30
    missing = {code: where for code, where in found.items() if code not in CATALOGUE}
    assert not missing, f"codes outside schemas/errors.py CATALOGUE: {missing}"
