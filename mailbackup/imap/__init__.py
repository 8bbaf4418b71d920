"""The only package that talks IMAP (and imports imapclient)."""

from __future__ import annotations

import os
import sys
import types
from importlib.machinery import PathFinder


def _imapclient_version() -> tuple[str, tuple[int, int, int, str]] | None:
    """imapclient's version from its ``*.dist-info`` directory name, or None
    when that is not plain to see (then imapclient finds it itself)."""
    spec = PathFinder.find_spec("imapclient")
    if spec is None or not spec.origin:
        return None
    site = os.path.dirname(os.path.dirname(spec.origin))
    try:
        found = [entry.name[len("imapclient-"):-len(".dist-info")] for entry in os.scandir(site)
                 if entry.name.lower().startswith("imapclient-") and entry.name.endswith(".dist-info")]
    except OSError:
        return None
    if len(found) != 1:
        return None
    try:
        major, minor, micro = (int(part) for part in found[0].split("."))
    except ValueError:
        return None
    return found[0], (major, minor, micro, "final")


def _spare_importlib_metadata() -> None:
    """imapclient's `version` module asks importlib.metadata for its own version
    at import: about 20 ms (importing importlib.metadata and scanning every
    installed distribution), a sixth of a whole no-op backup run.  The same
    answer is read here from the one directory that holds it and handed to
    imapclient as its `version` module, shaped as imapclient's own."""
    if "imapclient" in sys.modules or "imapclient.version" in sys.modules:
        return
    found = _imapclient_version()
    if found is None:
        return
    module = types.ModuleType("imapclient.version")
    module.version, module.version_info = found  # type: ignore[attr-defined]
    sys.modules["imapclient.version"] = module


_spare_importlib_metadata()
