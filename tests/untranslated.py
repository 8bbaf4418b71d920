"""Finds English left in Thai output: runs of English words that are not a
name, a command, an option, a path or text the program quotes from elsewhere
(a server's reply, a system error, a file name), which Thai output keeps in
brackets or quotes."""

from __future__ import annotations

import os
import re

# What may stand in Thai text as it is: commands, options and names the user types or sees elsewhere
# (another program's menu names are written in **bold**).
QUOTED = re.compile(r"\*\*[^*]+\*\*|“[^”]*”|`[^`]*`|\[[^\]]*\]|\([^()]*[A-Za-z][^()]*\)|'[^']*'|\"[^\"]*\"|«[^»]*»")
TOKENS = re.compile(r"\S+")
ENGLISH_WORD = re.compile(r"[a-z]{2,}[.,:;!?]?")
KEEP = re.compile(r"""
    https?://\S+ | \S+@\S+ | \S*[/\\~]\S* | --?[\w-]+ | \S+\.(?:html|json|csv|yaml|yml|md|mbox|png|pdf|txt|sqlite3)\b
    | \b\d+(?:[.,:]\d+)*\s*(?:[KMGT]?B|ms|s|min|h)\b
    """, re.X)
ALLOWED_WORDS = {  # English that Thai text uses as is: product and format names, protocol words
    "mailbackup", "maildir", "mbox", "imap", "tls", "starttls", "thunderbird", "dovecot", "cron", "systemd",
    "keyring", "ok", "uid", "uids", "sha", "json", "csv", "html", "yaml", "utf", "python", "pip", "windows", "linux",
    "config", "sweep", "backup", "verify", "report", "restore", "migrate", "export", "auth", "check", "folders",
    "schedule", "set", "test", "delete", "import", "inbox", "sent", "drafts", "trash", "junk", "usage", "options",
    "error", "try", "for", "help", "none",
}


def english_runs(text: str) -> list[str]:
    """Runs of two or more English words outside quotes, brackets, names and METAVARS."""
    found = []
    for line in text.splitlines():
        if not re.search(r"[\u0e00-\u0e7f]", line):
            continue  # a line with no Thai at all is a table row, a path, data: not a sentence to translate
        line = KEEP.sub(" ", QUOTED.sub(" ", line))
        run: list[str] = []
        for token in [*TOKENS.findall(line), ""]:
            word = token.lower().strip(".,:;!?")
            if ENGLISH_WORD.fullmatch(token.lower()) and not token.isupper() and word not in ALLOWED_WORDS:
                run.append(token)
                continue
            if len(run) >= 2:
                found.append(" ".join(run))
            run = []
    return found


def thai_run(args: list[str], environment: dict[str, str]) -> bool:
    """Whether a mailbackup run with these arguments and environment speaks Thai (as i18n.choose_language)."""
    for index, arg in enumerate(args):
        if arg == "--lang" and index + 1 < len(args):
            return args[index + 1] == "th"
        if arg.startswith("--lang="):
            return arg == "--lang=th"
    if environment.get("MAILBACKUP_LANG"):
        return environment["MAILBACKUP_LANG"].startswith("th")
    locale = environment.get("LC_ALL") or environment.get("LC_MESSAGES") or environment.get("LANG") or ""
    return locale.startswith("th")


def check_thai_output(args: list[str], environment: dict[str, str], *outputs: str) -> None:
    """Every Thai output the test suite produces is checked for English left untranslated."""
    if not thai_run([str(a) for a in args], environment):
        return
    runs = [run for output in outputs for run in english_runs(output)]
    if os.environ.get("MAILBACKUP_UNTRANSLATED_SURVEY"):
        with open(os.environ["MAILBACKUP_UNTRANSLATED_SURVEY"], "a", encoding="utf-8") as survey:
            for run in runs:
                survey.write(f"{args[:2]}\t{run}\n")
        return
    assert not runs, f"English left in Thai output of {args[:3]}: {runs}"
