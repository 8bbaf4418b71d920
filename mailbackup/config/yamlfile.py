"""Reading a YAML config file and checking it against the keys keys.py
defines: every problem reported as ``FILE:LINE: what is expected``, all at
once.  The only importer of PyYAML.

Apart from config/__init__.py because PyYAML takes about 15 ms to import, a tenth of
a no-op backup run, and most runs read no config file.
"""

from __future__ import annotations

import datetime as dt
import difflib
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from mailbackup.config.keys import DEFAULTS_ALLOWED, ENTRY_ALLOWED, ENTRY_KEYS, FORBIDDEN, SWEEP_KEYS, Key
from mailbackup.errors import ConfigError
from mailbackup.i18n import N_, _
from mailbackup.text import system_error


def read_document(path: Path) -> dict[str, Any]:
    """The validated document; ConfigError listing every problem otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(_("cannot read config {path}: {error}").format(path=path, error=system_error(exc))) \
            from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(_("{path}:{line}: not UTF-8 text").format(path=path, line=line),
                          hint=_("save the file as UTF-8 (not TIS-620 or Windows-874); Notepad: Save as, "
                                 "Encoding UTF-8")) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(exc, path, text)) from None
    if data is None or node is None:
        return {}
    problems = validate(node, path)
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1
                          else "\n".join([_("{count} problems in the config:").format(count=len(problems)),
                                          *problems]))
    return data  # type: ignore[no-any-return]


def _yaml_problem(exc: yaml.YAMLError, path: Path, text: str) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}" if mark else str(path)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
    hint = _(" (indent with spaces, not tabs)") if "\t" in line[: len(line) - len(line.lstrip())] or "'\\t'" in str(
        problem) else ""
    return _("{where}: not valid YAML: {problem}{hint}").format(where=where, problem=problem, hint=hint)


def validate(node: yaml.Node, path: Path) -> list[str]:
    """Every problem in the document, each as ``file:line: what is expected``, in line order."""
    if not isinstance(node, yaml.MappingNode):
        return [_("{path}:{line}: expected a mapping with `defaults:` and `accounts:`").format(
            path=path, line=_line(node))]
    problems: list[tuple[int, str]] = []
    for key_node, value_node in _pairs(node, path, problems):
        key = key_node.value
        if key == "defaults":
            problems += _check_mapping(value_node, path, DEFAULTS_ALLOWED, "defaults")
        elif key == "accounts":
            problems += _check_accounts(value_node, path)
        else:
            problems.append((_line(key_node), _("unknown key {key!r} at the top{suggestion} (expected defaults or "
                                                "accounts)").format(
                key=key, suggestion=_suggest(key, ["defaults", "accounts"]))))
    return [f"{path}:{line}: {text}" for line, text in sorted(problems, key=lambda item: item[0])]


def _construct(node: yaml.Node) -> Any:
    """The Python value of one node, as safe_load would make it."""
    return SafeConstructor().construct_object(node, deep=True)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _pairs(node: yaml.MappingNode, path: Path, problems: list[tuple[int, str]]) -> list[tuple[yaml.Node, yaml.Node]]:
    """The mapping's key/value nodes; a key given twice is a problem (YAML would keep the last silently)."""
    seen: dict[str, int] = {}
    pairs: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            problems.append((_line(key_node), _("a key must be a plain word")))
            continue
        key = str(key_node.value)
        if key in seen:
            problems.append((_line(key_node), _("{key} given twice in one mapping (first on line {first})").format(
                key=key, first=seen[key])))
            continue
        seen[key] = _line(key_node)
        pairs.append((key_node, value_node))
    return pairs


def _check_accounts(node: yaml.Node, path: Path) -> list[tuple[int, str]]:
    if not isinstance(node, yaml.SequenceNode):
        if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
            return []
        return [(_line(node), _("accounts must be a list: one `- account: NAME` entry per mailbox"))]
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for item in node.value:
        line = _line(item)
        if isinstance(item, yaml.ScalarNode):  # shorthand: `- somchai.j@coj.go.th`
            name = _construct(item)
            problems += _check_value("account", name, ENTRY_KEYS["account"], line)
        elif isinstance(item, yaml.MappingNode):
            problems += _check_mapping(item, path, ENTRY_ALLOWED, N_("an account entry"))
            keys = {key.value: value for key, value in item.value if isinstance(key, yaml.ScalarNode)}
            if "account" not in keys:
                problems.append((line, _("account entry without `account:` (expected `- account: NAME`)")))
                continue
            name = _construct(keys["account"])
        else:
            problems.append((line, _("an account entry must be a mapping (`- account: NAME`) or an account name")))
            continue
        if isinstance(name, str) and name.strip():
            folded = name.strip().casefold()
            if folded in seen:
                problems.append((line, _("account {account} listed twice (first on line {first})").format(
                    account=name, first=seen[folded])))
            seen.setdefault(folded, line)
    return problems


def _check_mapping(node: yaml.Node, path: Path, allowed: dict[str, Key], what: str) -> list[tuple[int, str]]:
    if not isinstance(node, yaml.MappingNode):
        if what == "defaults" and isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
            return []
        return [(_line(node), _("{what} must be a mapping of `key: value` lines").format(what=_(what)))]
    problems: list[tuple[int, str]] = []
    for key_node, value_node in _pairs(node, path, problems):
        key, line = str(key_node.value), _line(key_node)
        if key.lower() in FORBIDDEN:
            problems.append((line, _("passwords do not belong in the config; use `mailbackup auth set`, "
                                     "`mailbackup auth import`, password_command or password_file")))
        elif key not in allowed:
            problems.append((line, _misplaced(key, allowed, what)))
        else:
            value = _construct(value_node)
            problems += _check_value(key, value, allowed[key], line, base=path.resolve().parent)
    return problems


def _misplaced(key: str, allowed: dict[str, Key], what: str) -> str:
    if key in SWEEP_KEYS:
        return _("{key} applies to the whole sweep: put it under `defaults:`").format(key=key)
    if key in ENTRY_KEYS:
        return _("{key} belongs to one account: put it in the account's entry under `accounts:`").format(key=key)
    return _("unknown key {key!r} in {what}{suggestion} (expected one of {keys})").format(
        key=key, what=_(what), suggestion=_suggest(key, list(allowed)), keys=", ".join(sorted(allowed)))


def _suggest(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key.lower(), choices, n=1, cutoff=0.75)
    return _("; did you mean {key}?").format(key=close[0]) if close else ""


def _check_value(key: str, value: Any, spec: Key, line: int, *, base: Path | None = None) -> list[tuple[int, str]]:
    if value is None:
        return [(line, _("{key} has no value (expected {expected})").format(key=key, expected=_(spec.expected)))]
    if not spec.accepts(value):
        return [(line, _("{key} must be {expected}, not {value}").format(
            key=key, expected=_(spec.expected), value=_shown(key, value)))]
    if key == "cafile" and base is not None:
        cafile = base / Path(str(value)).expanduser()
        if not cafile.is_file():
            return [(line, _("cafile {path} does not exist (expected {expected})").format(
                path=cafile, expected=_(spec.expected)))]
    return []


def _shown(key: str, value: Any) -> str:
    if key == "password_command" or not isinstance(value, str | int | float | bool | dt.date):
        return _("a {type}").format(type=type(value).__name__) if not isinstance(value, list) else _("a list")
    text = repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
