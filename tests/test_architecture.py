"""Imports between rooms go one way (see the rooms in the contributor guide)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tunesmith"
SHARED = {"errors", "config", "files", "__init__"}
ALLOWED = {
    "data": set(),
    "formatting": {"data"},
    "tokenization": {"data", "formatting"},
    "modeling": set(),
    "training": {"data", "formatting", "tokenization", "modeling"},
    "evaluation": {"data", "formatting", "tokenization", "modeling"},
    "export": {"modeling", "training"},
    "reporting": {"data", "formatting", "evaluation"},
    "serving": {"data", "formatting", "modeling", "evaluation"},
    "monitoring": {"data", "evaluation", "serving"},
    "rag": {"data", "formatting", "modeling"},
    "config": set(),
}


def _imported_rooms(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "tunesmith" and len(parts) > 1:
                rooms.add(parts[1])
    return rooms


def test_rooms_import_only_what_they_may() -> None:
    problems = []
    for room, allowed in ALLOWED.items():
        folder = PACKAGE / room
        for path in sorted(folder.rglob("*.py")) if folder.is_dir() else []:
            extra = _imported_rooms(path) - allowed - SHARED - {room}
            if extra:
                problems.append(f"{path.relative_to(PACKAGE)} imports {sorted(extra)}")
    assert problems == []


def test_serving_never_imports_training() -> None:
    folder = PACKAGE / "serving"
    for path in folder.rglob("*.py") if folder.is_dir() else []:
        assert "training" not in _imported_rooms(path), path
