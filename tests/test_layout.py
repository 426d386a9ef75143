"""The layout keeps the data flow's direction: engines below meters, and the
platform decided in one place."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "smartos_telemetry"


def imported_modules(text, package):
    """Every module ``text`` (a module of ``package``) imports, at any depth,
    as absolute names (relative imports resolved)."""
    found = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def meters_imports(text, package="smartos_telemetry.engines"):
    return {m for m in imported_modules(text, package)
            if m == "smartos_telemetry.meters" or m.startswith("smartos_telemetry.meters.")}


def test_engines_import_nothing_from_the_meters():
    wrong = {}
    for path in (PACKAGE / "engines").rglob("*.py"):
        package = ".".join(("smartos_telemetry", *path.relative_to(PACKAGE).parent.parts))
        found = meters_imports(path.read_text(encoding="utf-8"), package)
        if found:
            wrong[str(path.relative_to(PACKAGE))] = sorted(found)
    assert wrong == {}


def test_the_import_check_sees_every_spelling():
    for text in ("from smartos_telemetry.meters import catalogue\n",
                 "import smartos_telemetry.meters.reduce\n",
                 "def f():\n    from smartos_telemetry.meters.catalogue import CATALOGUE\n",
                 "from ...meters import catalogue\n",
                 "from smartos_telemetry import meters\n"):
        assert meters_imports(text, "smartos_telemetry.engines.dtrace"), text
    assert not meters_imports("from smartos_telemetry import scripts\n")


def compared_platform_names(path):
    """``file:line`` where a platform name is compared (==, !=, in)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if isinstance(side, ast.Constant) and side.value in ("smartos", "linux"):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return found


def test_no_platform_comparisons_outside_the_platform_layer():
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] != "platform":
            found += compared_platform_names(path)
    assert found == []
