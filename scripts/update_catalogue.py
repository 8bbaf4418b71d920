"""Keep the translation catalogue in step with the source.

    python scripts/update_catalogue.py          # rewrite mailbackup.pot, merge it into every .po
    python scripts/update_catalogue.py --check  # exit 1 if anything would change or is untranslated

Every ``_("...")`` and ``N_("...")`` literal under mailbackup/ is a message
(read with `ast`, so implicit concatenation counts as one string), and every
``ngettext("... {count} message", "... {count} messages", count)`` a message
with a plural (Thai has one form: ``msgstr[0]``).  An
f-string inside ``_()`` is an error: its text would differ on every call and
never be found in the catalogue; write ``_("... {name} ...").format(name=...)``.
Merging keeps every existing translation, adds new messages untranslated and
drops the ones the source no longer has (printing them).  Translate the empty
``msgstr ""`` entries of ``mailbackup/locale/th/LC_MESSAGES/mailbackup.po``,
then run the tests (tests/test_i18n.py fails on any missing translation).
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mailbackup"
LOCALE = PACKAGE / "locale"
POT = LOCALE / "mailbackup.pot"
MARKERS = ("_", "N_")
PLURAL_MARKER = "ngettext"
PLURALS = "\x00"  # singular and plural of one message, as the .po reader keys them
HEADER = {
    "Project-Id-Version": "mailbackup",
    "MIME-Version": "1.0",
    "Content-Type": "text/plain; charset=UTF-8",
    "Content-Transfer-Encoding": "8bit",
}
LANGUAGE_HEADERS = {"th": {"Language": "th", "Plural-Forms": "nplurals=1; plural=0;"}}


@dataclass
class Message:
    msgid: str
    # "mailbackup/cli/backup.py": files only, as `xgettext --add-location=file` writes them, so
    # that moving a line does not make the catalogue out of date.
    places: list[str] = field(default_factory=list)


def extract(package: Path = PACKAGE) -> tuple[dict[str, Message], list[str]]:
    """Every marked message in source order, and the problems (f-strings in _())."""
    messages: dict[str, Message] = {}
    problems: list[str] = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                 and node.func.id in (*MARKERS, PLURAL_MARKER) and node.args]
        for node in sorted(calls, key=lambda call: (call.lineno, call.col_offset)):
            argument = node.args[0]
            where = f"{relative}:{node.lineno}"
            if node.func.id == PLURAL_MARKER:
                forms = [arg.value for arg in node.args[:2]
                         if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
                if len(forms) != 2:
                    problems.append(f"{where}: ngettext() needs two string literals")
                    continue
                places = messages.setdefault(PLURALS.join(forms), Message(PLURALS.join(forms))).places
                if relative not in places:
                    places.append(relative)
                continue
            if isinstance(argument, ast.JoinedStr):
                problems.append(f"{where}: f-string in {ast.unparse(node.func)}(): use named placeholders and "
                                ".format()")
            elif isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                if not argument.value:
                    problems.append(f"{where}: empty message")
                    continue
                places = messages.setdefault(argument.value, Message(argument.value)).places
                if relative not in places:
                    places.append(relative)
    return messages, problems


# -- reading and writing .po ---------------------------------------------------


def quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\n", "\\n")
    return '"' + escaped.replace("\b", "\\b") + '"'


def po_string(keyword: str, text: str) -> list[str]:
    """``msgid "..."``, or GNU's multi-line form when the text has line breaks."""
    if "\n" not in text.rstrip("\n"):
        return [f"{keyword} {quote(text)}"]
    lines = [f'{keyword} ""']
    pieces = text.split("\n")
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        if last and not piece:
            break
        lines.append(quote(piece + ("" if last else "\n")))
    return lines


def header_text(extra: dict[str, str]) -> str:
    return "".join(f"{key}: {value}\n" for key, value in {**HEADER, **extra}.items())


def render(messages: list[Message], translations: dict[str, str], header: dict[str, str]) -> str:
    blocks = ["\n".join(po_string("msgid", "") + po_string("msgstr", header_text(header)))]
    for message in messages:
        comment = "\n".join(f"#: {place}" for place in message.places)
        lines = [comment] if comment else []
        if "{" in message.msgid:
            lines.append("#, python-brace-format")
        if PLURALS in message.msgid:
            singular, plural = message.msgid.split(PLURALS, 1)
            count = 1 if header.get("Plural-Forms", "").startswith("nplurals=1") else 2
            forms = translations.get(message.msgid, PLURALS * (count - 1)).split(PLURALS)
            lines += po_string("msgid", singular) + po_string("msgid_plural", plural)
            for index in range(count):
                lines += po_string(f"msgstr[{index}]", forms[index] if index < len(forms) else "")
        else:
            lines += po_string("msgid", message.msgid) + po_string("msgstr", translations.get(message.msgid, ""))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def read_translations(path: Path) -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    from mailbackup.i18n import parse_po

    return {msgid: text for msgid, text in parse_po(path.read_text(encoding="utf-8")).items() if msgid}


def po_files() -> list[Path]:
    return sorted(LOCALE.glob("*/LC_MESSAGES/mailbackup.po"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the catalogue is behind")
    args = parser.parse_args()
    messages, problems = extract()
    for problem in problems:
        print(problem, file=sys.stderr)
    ordered = list(messages.values())
    outputs = {POT: render(ordered, {}, {})}
    untranslated = 0
    for po in po_files():
        language = po.parent.parent.name
        known = read_translations(po)
        for gone in sorted(set(known) - set(messages)):
            print(f"{po.relative_to(ROOT)}: dropped (no longer in the source): {gone[:70]!r}", file=sys.stderr)
        missing = [message.msgid for message in ordered if not known.get(message.msgid)]
        untranslated += len(missing)
        print(f"{po.relative_to(ROOT)}: {len(ordered) - len(missing)} translated, {len(missing)} to translate")
        outputs[po] = render(ordered, known, LANGUAGE_HEADERS.get(language, {"Language": language}))
    changed = [path for path, text in outputs.items()
               if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in changed:
            print(f"{path.relative_to(ROOT)} is not up to date: run scripts/update_catalogue.py", file=sys.stderr)
        return 1 if changed or untranslated or problems else 0
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(outputs[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
