"""Build hook: compile the translation catalogues (.po → .mo) into the
build, so installed copies load the standard binary catalogue.  The .mo
files are built, never committed; `mailbackup/i18n.py` compiles a .po in
memory when no .mo is present (an editable install runs no build).

The guides the commands point to (docs/thunderbird.md) are copied into the
build as mailbackup/help/, so `mailbackup export --help-thunderbird` works
for a pip-installed copy with no docs/ beside it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED_GUIDES = ("thunderbird.md",)


def _i18n() -> ModuleType:
    # Loaded from its file: the package itself (and its dependencies) need not be importable at build time.
    spec = importlib.util.spec_from_file_location("_mailbackup_i18n", HERE / "mailbackup" / "i18n.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildWithCatalogues(build_py):
    def run(self) -> None:
        super().run()
        i18n = _i18n()
        for po in sorted((HERE / "mailbackup" / "locale").glob("*/LC_MESSAGES/*.po")):
            target = Path(self.build_lib) / po.relative_to(HERE).with_suffix(".mo")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(i18n.compile_po(po.read_text(encoding="utf-8")))
            self.announce(f"compiled {po.relative_to(HERE)} -> {target}", level=2)
        for name in SHIPPED_GUIDES:
            target = Path(self.build_lib) / "mailbackup" / "help" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((HERE / "docs" / name).read_bytes())


setup(cmdclass={"build_py": BuildWithCatalogues})
