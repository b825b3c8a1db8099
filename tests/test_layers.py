"""The import graph: apps depend one way, selectors never write, model code never imports Django.

Read from the source with ``ast`` (imports inside functions count too), so a new module is
checked without being listed here.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Lowest first: a package may import its own modules and those of packages before it, never one
# after it. ``stickerloop`` is split: its shared modules (errors, roles, lifecycle, media, …) sit
# below every app; its wiring (settings, urls, celery, management commands) sits above them all.
LAYERS = [
    "generation",
    "annotation",
    "annotation.quality",
    "training_bridge",
    "training_bridge.jobs",
    # Experiments evaluate arms with the jobs' evaluation parts; nothing below imports them
    # (the job and model version pages link to their list by URL name).
    "training_bridge.experiments",
    # Pipelines run stages through the triggers, jobs and experiments below them, and hear of
    # publishes and job ends through stickerloop.events; nothing below imports them.
    "training_bridge.pipelines",
    # Webhooks read every app's rows and name their URLs; no app imports webhooks (they announce
    # state changes through stickerloop.events, which imports no app).
    "webhooks",
    # The simulated raters make accounts and candidates through the services below them and
    # otherwise know the platform only as a web site.
    "simulation",
]
WIRING = ("stickerloop.settings", "stickerloop.urls", "stickerloop.celery", "stickerloop.wsgi")
# The metrics read every app's rows at scrape time (stickerloop.metrics.state): wiring too.
# The home page reads every app's selectors for what needs attention (stickerloop.home): wiring.
WIRING_PACKAGES = ("stickerloop.management", "stickerloop.metrics", "stickerloop.home")
# The simulated raters' client, judge, answer policies, profiles and figures know the platform
# only as a web site.
SIMULATION_DJANGO_FREE = tuple(
    f"simulation.{name}" for name in ("client", "judge", "policies", "profiles", "rater", "report")
)
DJANGO_FREE = (
    "generation.pipelines",
    "generation.world",
    "training_bridge.recipes",
    # The export formats: columns and bytes in, files out, so they are tested without a database.
    "training_bridge.exports.tar",
    "training_bridge.exports.columns",
    "training_bridge.exports.card",
    "training_bridge.exports.writers",
    # The statistics of experiments: numbers and pictures in, numbers out.
    "training_bridge.experiments.metrics",
    # The webhook sender's network and signing parts: plain arguments in, so that the README's
    # verification snippet and a receiver's code can mirror them.
    "webhooks.addresses",
    "webhooks.signing",
    "webhooks.transport",
    *SIMULATION_DJANGO_FREE,
)
# The oracle judges are evaluation instruments: nothing that generates, rates, curates or trains
# may see them, or the loop could learn the judge. Only the package itself and the simulated
# raters (top-level packages named here) import it; bench/ is outside the walk.
ORACLE = "generation.world.oracle"
ORACLE_CLIENTS = ("simulation",)
PROJECT_PACKAGES = {
    "stickerloop",
    "generation",
    "annotation",
    "training_bridge",
    "webhooks",
    "simulation",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    found = {}
    for top in sorted(PROJECT_PACKAGES):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


SOURCES = _sources()


def _imports(name: str) -> set[str]:
    """Every project module that ``name`` imports, with relative imports resolved."""
    path = SOURCES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return _imports_in(path.read_text(), package=package)


def _imports_in(source: str, *, package: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in PROJECT_PACKAGES}


def _layer(module: str) -> int | None:
    """The rank of the app that owns ``module`` (the deepest matching package), or None."""
    ranks = [
        i
        for i, package in enumerate(LAYERS)
        if module == package or module.startswith(package + ".")
    ]
    return max(ranks) if ranks else None


def _is_wiring(module: str) -> bool:
    return module in WIRING or module.startswith(WIRING_PACKAGES)


def test_apps_import_only_themselves_and_the_apps_below_them():
    offenders = []
    for name in SOURCES:
        rank = _layer(name)
        if rank is None:
            continue
        for imported in _imports(name):
            other = _layer(imported)
            if other is not None and other > rank:
                offenders.append(f"{name} imports {imported}")
            if imported.startswith("stickerloop") and _is_wiring(imported):
                offenders.append(f"{name} imports the wiring module {imported}")

    assert offenders == []


def test_the_shared_project_modules_import_no_app():
    shared = [name for name in SOURCES if name.startswith("stickerloop") and not _is_wiring(name)]
    offenders = [
        f"{name} imports {imported}"
        for name in shared
        for imported in _imports(name)
        if _layer(imported) is not None
    ]

    assert "stickerloop.errors" in shared
    assert offenders == []


def test_selectors_import_no_services():
    selectors = [name for name in SOURCES if name.split(".")[-1] == "selectors"]
    offenders = [
        f"{name} imports {imported}"
        for name in selectors
        for imported in _imports(name)
        if "services" in imported.split(".")
    ]

    assert len(selectors) >= 4
    assert offenders == []


@pytest.mark.parametrize("package", DJANGO_FREE)
def test_model_code_never_imports_django(package):
    modules = [name for name in SOURCES if name == package or name.startswith(package + ".")]
    imported = set()
    for name in modules:
        for node in ast.walk(ast.parse(SOURCES[name].read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])

    assert modules
    assert imported & {"django", "rest_framework", "stickerloop", "annotation"} == set()


def _imports_the_oracle(name: str, imported: set[str]) -> bool:
    inside = name == ORACLE or name.startswith(ORACLE + ".")
    client = name.split(".")[0] in ORACLE_CLIENTS
    return not (inside or client) and any(
        m == ORACLE or m.startswith(ORACLE + ".") for m in imported
    )


def test_only_the_simulation_imports_the_oracle_judges():
    offenders = [name for name in SOURCES if _imports_the_oracle(name, _imports(name))]

    assert f"{ORACLE}.judge" in SOURCES
    assert offenders == []


@pytest.mark.parametrize(
    ("source", "package"),
    [
        ("from generation.world.oracle import Oracle\n", "training_bridge.recipes"),
        ("def f():\n    from ..world import oracle\n", "generation.pipelines"),
        ("import generation.world.oracle.judge\n", "annotation.quality"),
    ],
)
def test_the_oracle_rule_sees_every_way_of_importing_it(source, package):
    imported = _imports_in(source, package=package)

    assert _imports_the_oracle(f"{package}.module", imported)
    assert not _imports_the_oracle(f"{ORACLE}.judge", imported)
    assert not _imports_the_oracle("simulation.raters", imported)


def test_the_walk_resolves_relative_imports_to_the_layer_above():
    source = "def f():\n    from ..jobs import lifecycle\n    from .exports import run\n"

    imported = _imports_in(source, package="training_bridge.apis")

    assert imported == {
        "training_bridge.jobs",
        "training_bridge.jobs.lifecycle",
        "training_bridge.apis.exports",
        "training_bridge.apis.exports.run",
    }
    assert _layer("training_bridge.jobs.lifecycle") > _layer("training_bridge.apis.exports")
    assert _layer("annotation.quality.services.membership") == LAYERS.index("annotation.quality")


def test_no_app_imports_webhooks():
    offenders = [
        f"{name} imports {imported}"
        for name in SOURCES
        if not name.startswith("webhooks") and not _is_wiring(name)
        for imported in _imports(name)
        if imported.split(".")[0] == "webhooks"
    ]

    assert "webhooks.services.deliveries" in SOURCES
    assert offenders == []
