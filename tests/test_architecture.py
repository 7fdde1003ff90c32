"""The house rules of docs/ARCHITECTURE.md, checked on the source: imports flow
jobs -> workers -> pipeline, no two modules import each other (directly or round a circle),
nothing imports the rooms by their bare names, `workers/` stays small at its top level, and
the shard loop asks engines only through their declared base."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "batchmt"
LAYERS = {"pipeline": 0, "workers": 1, "jobs": 2}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for room in LAYERS:
        for path in (PACKAGE / room).rglob("*.py"):
            parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found["batchmt." + ".".join(parts)] = path
    return found


MODULES = _modules()


def _imported_names(path: Path) -> list[str]:
    """Every module name an import statement names, wherever it sits (functions and
    TYPE_CHECKING blocks included): `from a import b` gives both `a` and `a.b`."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            base = node.module or ""
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return names


def _owner(name: str) -> str | None:
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for name in _imported_names(path):
            target = _owner(name) if name.startswith("batchmt.") else None
            # A package's own __init__ is implied by importing anything inside it.
            if target and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    return graph


def test_no_bare_imports_of_the_rooms() -> None:
    """`import pipeline` would pick up a user's own package of that name."""
    bare = [
        f"{module}: {name}"
        for module, path in MODULES.items()
        for name in _imported_names(path)
        if name.split(".")[0] in LAYERS
    ]
    assert bare == []


def test_imports_flow_jobs_workers_pipeline() -> None:
    backwards = [
        f"{src} -> {dst}"
        for src, dsts in _graph().items()
        for dst in dsts
        if LAYERS[dst.split(".")[1]] > LAYERS[src.split(".")[1]]
    ]
    assert backwards == []


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_checker_sees_a_cycle(tmp_path: Path) -> None:
    """The rules above must be able to fail: two modules importing each other are found."""
    a = tmp_path / "a.py"
    a.write_text(
        "from batchmt.pipeline.spec import JobSpec\nimport batchmt.pipeline.inputs.corpus\n"
    )
    assert {"batchmt.pipeline.spec", "batchmt.pipeline.inputs.corpus"} <= {
        _owner(n) for n in _imported_names(a) if _owner(n)
    }


@pytest.mark.parametrize("room", sorted(LAYERS))
def test_each_room_stays_small_at_its_top_level(room: str) -> None:
    files = [p.name for p in (PACKAGE / room).glob("*.py")]
    assert len(files) <= 8, sorted(files)


def test_no_symbolic_links_in_the_repository() -> None:
    """A link turns into a small text file in a zip or a Windows checkout, and Ray's
    working-directory upload skips linked folders: every folder is a real one."""
    links: list[str] = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in {"out", "build"}]
        links += [
            os.path.relpath(os.path.join(folder, name), REPO)
            for name in dirs + files
            if os.path.islink(os.path.join(folder, name))
        ]
    assert links == []


@pytest.mark.parametrize("path", sorted((PACKAGE / "workers").rglob("*.py")), ids=str)
def test_engines_are_not_probed_outside_engines(path: Path) -> None:
    """Capabilities are declared on TranslationEngine; nobody outside workers/engines/ asks
    an engine with getattr or isinstance what it can do."""
    if "engines" in path.relative_to(PACKAGE).parts:
        return
    text = path.read_text(encoding="utf-8")
    probes = re.findall(r"(?:getattr|hasattr|isinstance)\(\s*(?:self\.)?engine\b.*", text)
    assert probes == []
    assert "Seq2SeqEngine" not in text and "CausalEngine" not in text


def _exception_classes(paths: list[Path]) -> dict[str, list[str]]:
    """Every class defined in `paths` that is an exception, by name, with its base names."""
    import builtins

    bases: dict[str, list[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = [
                    b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases
                ]

    def is_exception(name: str, seen: frozenset[str] = frozenset()) -> bool:
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, BaseException):
            return True
        return name not in seen and any(is_exception(b, seen | {name}) for b in bases.get(name, []))

    return {name: found for name, found in bases.items() if is_exception(name)}


def _roots_at_batchmt_error(name: str, bases: dict[str, list[str]]) -> bool:
    return name == "BatchmtError" or any(
        _roots_at_batchmt_error(b, bases) for b in bases.get(name, []) if b in bases
    )


def test_every_error_of_the_project_derives_from_batchmt_error() -> None:
    """`except batchmt.BatchmtError` catches whatever the project raises on purpose, and the
    CLI's exit 2 is `UserError`, one branch of that tree (`pipeline/errors.py`)."""
    classes = _exception_classes([*MODULES.values(), PACKAGE / "api.py"])
    assert "SpecError" in classes and "JobFailed" in classes  # the scan finds them at all
    loose = sorted(name for name in classes if not _roots_at_batchmt_error(name, classes))
    assert loose == []


def test_the_error_check_sees_a_loose_error(tmp_path: Path) -> None:
    loose = tmp_path / "loose.py"
    loose.write_text("class A(ValueError):\n    pass\nclass B(A):\n    pass\n")
    classes = _exception_classes([loose])
    assert sorted(classes) == ["A", "B"]
    assert not _roots_at_batchmt_error("B", classes)
