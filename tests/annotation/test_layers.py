"""The import graph of the annotation app: the quality sub-app builds on annotation, never the
reverse, and selectors import no services."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANNOTATION = ROOT / "annotation"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _sources(root: Path):
    for path in sorted(root.rglob("*.py")):
        if "migrations" not in path.parts:
            yield path


def test_annotation_imports_nothing_from_its_quality_sub_app():
    offenders = [
        str(path.relative_to(ROOT))
        for path in _sources(ANNOTATION)
        if "quality" not in path.relative_to(ANNOTATION).parts
        and any(name.startswith("annotation.quality") for name in _imports(path))
    ]

    assert offenders == []


def test_selectors_import_no_services():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ANNOTATION / "selectors.py", ANNOTATION / "quality" / "selectors.py")
        if any(".services" in name or name.endswith("services") for name in _imports(path))
    ]

    assert offenders == []
