"""The floor table of docs/design.md ("Layout") matches the code: every module has a floor, and every
import inside the package goes to the same floor or one below."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cdprune"


def floors() -> dict[str, int]:
    layout = (ROOT / "docs" / "design.md").read_text().split("## 8.")[1]
    table = {}
    for row in re.finditer(r"^\| (\d+) \| ([^|]+)\|", layout, re.M):
        for name in re.findall(r"`([^`]+)`", row.group(2)):
            table[name.rstrip("/").removesuffix(".py")] = int(row.group(1))
    return table


def room(module: str) -> str:
    """'cdprune.runs.loading' -> 'runs': a top-level module or package is one room of the table."""
    return module.split(".")[1]


def package_imports():
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(("cdprune", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        here = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                names = [node.module] if node.module else [a.name for a in node.names]
                for name in names:
                    yield module, ".".join(base + [name]), node.lineno


def test_every_module_has_a_floor():
    table = floors()
    rooms = {room(m) for m, _, _ in package_imports() if m.count(".") >= 1} - {"__main__", "cli"}
    assert rooms - set(table) == set(), "add these to the floor table of docs/design.md"


def test_imports_go_down_the_floors():
    table = floors()
    upward = [f"{m} (floor {table[room(m)]}) imports {t} (floor {table[room(t)]}), line {line}"
              for m, t, line in package_imports()
              if m.count(".") >= 1 and t.count(".") >= 1 and room(m) in table and room(t) in table
              and table[room(t)] > table[room(m)]]
    assert upward == []
