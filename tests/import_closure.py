"""Which project modules a stage really runs: its script, every project module it imports (at module level or inside
functions) and every module it launches with `python -m`, followed to the end. Static (AST), so nothing is imported."""

import ast
from pathlib import Path

PACKAGES = ("acceptability", "stages")


def module_file(root: Path, name: str) -> Path | None:
    """The file of a dotted project module: a .py, or a package's __init__.py."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def with_parents(root: Path, name: str) -> list[Path]:
    """A module and the __init__.py of every package above it: importing a.b.c runs a/__init__ and a/b/__init__."""
    parts = name.split(".")
    found = [module_file(root, ".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    return [path for path in found if path is not None]


def launched_modules(tree: ast.AST) -> set[str]:
    """`-m` followed by a string literal in a list or tuple: a module the code starts as a subprocess."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            items = node.elts
            for first, second in zip(items, items[1:], strict=False):
                if isinstance(first, ast.Constant) and first.value == "-m" and isinstance(second, ast.Constant):
                    found.add(second.value)
    return found


def imported_modules(path: Path, root: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = launched_modules(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from package import module` imports a submodule when one of that name exists
            names.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if module_file(root, f"{node.module}.{alias.name}")
            )
    return {name for name in names if name.split(".")[0] in PACKAGES}


def closure(root: Path, module: str) -> set[Path]:
    """Every project file that running `python -m module` from `root` can execute."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        for path in with_parents(root, todo.pop()):
            if path in seen:
                continue
            seen.add(path)
            todo.extend(imported_modules(path, root))
    return {path.relative_to(root) for path in seen}
