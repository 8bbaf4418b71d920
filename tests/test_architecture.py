"""The layering of docs/design.md, kept true by a test.

Each top-level module or package of mailbackup/ sits in one layer, and
imports point inward only:

    cli → sweep → restore → verify → sync → archive
        → parts (imap, store, state, config, secrets)
        → core (errors, model, i18n, faults, headers, text, uids, localerrors)

A module may import the modules of its own layer and of the layers below.
No module imports another module's private (``_name``) names: what two
modules share is public in the one that owns it.  Only imap/ talks to
imapclient, only cli/ to click and tqdm, only secrets.py to keyring, only
config/ to yaml.  No module is over MAX_LINES lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mailbackup"

CORE = {"errors", "model", "i18n", "faults", "headers", "text", "uids", "localerrors", "__init__", "_version"}
PARTS = {"imap", "store", "state", "config", "secrets"}
LAYERS = [CORE, PARTS, {"archive"}, {"sync"}, {"verify"}, {"restore"}, {"sweep"}, {"cli", "__main__"}]
ONLY_IN = {"imapclient": "imap", "click": "cli", "tqdm": "cli", "keyring": "secrets",
           "yaml": "config"}  # PyYAML: start-up time, see config/yamlfile.py
MAX_LINES = 500
# Split by the same restructuring (issue 15) in a change of its own.
NOT_YET_SPLIT: set[str] = set()  # a module over the limit while it waits for its split


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).with_suffix("")
        found.append((relative.parts[0], path))
    return found


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def import_nodes(path: Path) -> list[ast.Import | ast.ImportFrom]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in import_nodes(path):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif node.module and node.level == 0:
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


def private_imports(path: Path, own: str) -> list[str]:
    """``from mailbackup.x import _y`` where x is not `own` (``_``, gettext, is public)."""
    found = []
    for node in import_nodes(path):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("mailbackup"):
            continue
        private = [alias.name for alias in node.names if alias.name.startswith("_") and alias.name != "_"
                   and not alias.name.startswith("__")]
        if private and node.module != own:
            found.append(f"{', '.join(private)} from {node.module}")
    return found


def test_no_module_imports_another_modules_private_names():
    wrong = [f"{path.relative_to(PACKAGE)} imports {found}"
             for _top, path in modules() for found in private_imports(path, module_name(path))]
    assert not wrong, "make these public in the module that owns them:\n" + "\n".join(wrong)


def test_the_private_name_check_sees_a_private_import(tmp_path: Path) -> None:
    # The check above must catch the shape it forbids, not pass vacuously.
    probe = tmp_path / "probe.py"
    probe.write_text("from mailbackup.i18n import _, N_\nfrom mailbackup.verify.report import _csv_bytes, csv\n"
                     "from mailbackup import __version__\n", encoding="utf-8")
    assert private_imports(probe, "mailbackup.sweep.logins") == ["_csv_bytes from mailbackup.verify.report"]
    assert private_imports(probe, "mailbackup.verify.report") == []


def test_third_party_libraries_stay_in_their_module():
    wrong = []
    for top, path in modules():
        for name in imported(path):
            owner = ONLY_IN.get(name.split(".")[0])
            if owner and top != owner:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name} (only {owner} may)")
    assert not wrong, "\n".join(wrong)


def test_modules_stay_small():
    long = []
    for _top, path in modules():
        relative = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and relative not in NOT_YET_SPLIT:
            long.append(f"{relative}: {lines} lines")
    assert not long, f"split these by job (at most {MAX_LINES} lines each):\n" + "\n".join(long)
