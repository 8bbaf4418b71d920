"""The layering of ../shared/STYLE.md, kept true by a test.

Imports point inward only: cli → engines (sync, verify, report, migrate,
export, sweep, schedule) → parts (imap, store, state, config, secrets,
throttle) → core (errors, model, i18n, faults, headers).  Only imap/ talks
to imapclient, only cli/ to click and tqdm, only secrets.py to keyring,
only configfile.py to yaml.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mailbackup"

CORE = {"errors", "model", "i18n", "faults", "headers", "text", "__init__", "_version"}
PARTS = {"imap", "store", "state", "config", "secrets"}
LAYERS = [CORE, PARTS, {"archive"}, {"sync"}, {"verify"}, {"restore"}, {"sweep"}, {"cli", "__main__"}]
ONLY_IN = {"imapclient": "imap", "click": "cli", "tqdm": "cli", "keyring": "secrets",
           "yaml": "config"}  # PyYAML: start-up time, see configfile.py


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).with_suffix("")
        found.append((relative.parts[0], path))
    return found


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "mailbackup":
                names.update(f"mailbackup.{alias.name}" for alias in node.names)
    return names


def layer_of(top: str) -> int:
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"mailbackup/{top} is in no layer: add it to tests/test_architecture.py")


def test_every_module_has_a_layer():
    for top, _ in modules():
        layer_of(top)


def test_imports_point_inward():
    wrong = []
    for top, path in modules():
        for name in imported(path):
            if not name.startswith("mailbackup.") or name.count(".") < 1:
                continue
            target = name.split(".")[1]
            if not ((PACKAGE / target).is_dir() or (PACKAGE / f"{target}.py").exists()):
                continue  # a name, like __version__, not a module
            if layer_of(target) > layer_of(top):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not wrong, "imports pointing outward:\n" + "\n".join(wrong)


def test_third_party_libraries_stay_in_their_module():
    wrong = []
    for top, path in modules():
        for name in imported(path):
            owner = ONLY_IN.get(name.split(".")[0])
            if owner and top != owner:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name} (only {owner} may)")
    assert not wrong, "\n".join(wrong)
