"""bench/loop.py keeps the held-out prompts and the oracle away from everything that generates,
rates, curates or trains: those functions (``TRAINING_PATH``) and every function of the module
they call name neither, and ``main`` loads the oracle and imports the held-out prompts only after
the last of them has run."""

import ast
from pathlib import Path

import pytest

DRIVER = Path(__file__).resolve().parent.parent / "bench" / "loop.py"
# What an evaluation-only name looks like: the held-out stream or prompt set, the oracle package.
FORBIDDEN = ("heldout", "held_out", "oracle")


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def _training_path(tree: ast.Module) -> tuple[str, ...]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "TRAINING_PATH" for t in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("bench/loop.py has no TRAINING_PATH")


def _words(node: ast.AST) -> set[str]:
    """Every identifier, attribute, imported module and string constant under ``node``."""
    words: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            words.add(child.id)
        elif isinstance(child, ast.Attribute):
            words.add(child.attr)
        elif isinstance(child, ast.Constant) and isinstance(child.value, str):
            words.add(child.value)
        elif isinstance(child, ast.ImportFrom):
            words.add(child.module or "")
            words.update(alias.name for alias in child.names)
        elif isinstance(child, ast.Import):
            words.update(alias.name for alias in child.names)
    return words


def leaks(source: str) -> dict[str, list[str]]:
    """Per function reachable from TRAINING_PATH (module functions called by name), the
    forbidden words it uses."""
    tree = ast.parse(source)
    functions = _functions(tree)
    todo, seen, found = list(_training_path(tree)), set(), {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        words = _words(functions[name])
        bad = sorted(w for w in words if any(f in w.lower() for f in FORBIDDEN))
        if bad:
            found[name] = bad
        todo.extend(w for w in words if w in functions)
    return found


def test_no_training_or_curation_function_of_the_driver_names_held_out_prompts_or_the_oracle():
    assert leaks(DRIVER.read_text(encoding="utf-8")) == {}


def test_main_loads_the_oracle_and_the_held_out_prompts_after_the_last_training_stage():
    tree = ast.parse(DRIVER.read_text(encoding="utf-8"))
    main = _functions(tree)["main"]
    stages = set(_training_path(tree))
    stage_lines = [n.lineno for n in ast.walk(main) if isinstance(n, ast.Name) and n.id in stages]
    evaluation_lines = [
        n.lineno
        for n in ast.walk(main)
        if any(f in w.lower() for w in _words(n) for f in FORBIDDEN)
        and isinstance(n, ast.ImportFrom | ast.Name)
    ]
    assert len(stage_lines) == len(stages)
    assert evaluation_lines
    assert max(stage_lines) < min(evaluation_lines)


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ('    return sampling.prompts("heldout", 4)\n', "heldout"),
        ("    from generation.world.oracle import Oracle\n", "generation.world.oracle"),
        ("    return {'is_held_out': True}\n", "is_held_out"),
    ],
)
def test_the_check_sees_a_leak_in_a_helper_a_stage_calls(body, word):
    source = (
        'TRAINING_PATH = ("stage_train",)\n'
        "def helper():\n" + body + "def stage_train():\n    return helper()\n"
    )
    assert word in leaks(source)["helper"]
