"""Build the offline installation kit an officer hands to staff.

    .venv/bin/python scripts/build_kit.py [--out dist/mailbackup-kit] [--check-only]

Court machines may not reach the package index and many run Windows, so the
kit holds everything an installation needs:

    mailbackup-kit/
      README.txt            Thai first, then English: what to run
      install.bat           Windows: a private environment in %USERPROFILE%\\mailbackup
      install.sh            Linux: the same in ~/mailbackup
      wheels/               mailbackup and every dependency, for Windows x86-64
                            and Linux x86-64, CPython 3.11, 3.12 and 3.13
      guides/               the staff and officer guides as HTML (Thai, English)

Both installers run ``pip install --no-index --find-links wheels mailbackup``:
nothing is fetched.  Building needs the package index once.

pip evaluates environment markers (``sys_platform == "win32"``) against the
machine it runs on, even when told ``--platform win_amd64``: a plain
``pip download`` on Linux would leave out what Windows alone needs
(pywin32-ctypes, colorama).  So the closure of requirements is walked here,
each target's markers evaluated for that target, and pip only fetches named
wheels (``--no-deps``).  ``check_kit`` walks the same closure over the files
in the kit and says what a target would miss.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "dist" / "mailbackup-kit"
PYTHONS = ((3, 11), (3, 12), (3, 13))


@dataclass(frozen=True)
class Target:
    """One kind of machine the kit must install on."""

    system: str  # "windows" or "linux"
    python: tuple[int, int]

    @property
    def platforms(self) -> tuple[str, ...]:
        if self.system == "windows":
            return ("win_amd64",)
        return ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64")

    @property
    def version(self) -> str:
        return f"{self.python[0]}.{self.python[1]}"

    @property
    def abi(self) -> str:
        return f"cp{self.python[0]}{self.python[1]}"

    @property
    def markers(self) -> dict[str, str]:
        version = self.version
        windows = self.system == "windows"
        return {
            "python_version": version, "python_full_version": version + ".0",
            "sys_platform": "win32" if windows else "linux",
            "platform_system": "Windows" if windows else "Linux",
            "os_name": "nt" if windows else "posix",
            "platform_machine": "AMD64" if windows else "x86_64",
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "platform_release": "", "platform_version": "", "implementation_version": version + ".0",
            "extra": "",
        }

    @property
    def tags(self) -> set[Tag]:
        abi = self.abi
        found = set(cpython_tags(self.python, abis=[abi, "abi3", "none"], platforms=self.platforms))
        found.update(compatible_tags(self.python, interpreter=abi, platforms=self.platforms))
        return found

    def __str__(self) -> str:
        return f"{self.system.capitalize()} CPython {self.version}"


TARGETS = tuple(Target(system, python) for system in ("windows", "linux") for python in PYTHONS)


# ---- the closure of requirements --------------------------------------------------------------

def wheel_requirements(wheel: Path, target: Target, extras: Iterable[str] = ()) -> list[Requirement]:
    """Requires-Dist of a wheel that apply on `target`, with the `extras` asked for."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        metadata = Parser().parsestr(archive.read(name).decode("utf-8"))
    wanted = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        environments = [{**target.markers, "extra": extra} for extra in ("", *extras)]
        if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
            wanted.append(requirement)
    return wanted


def best_wheel(wheels: Iterable[Path], name: str, specifier: SpecifierSet, target: Target) -> Path | None:
    """The newest wheel in `wheels` for `name` that `target` can install and `specifier` allows."""
    wanted = canonicalize_name(name)
    tags = target.tags
    best: tuple[Version, Path] | None = None
    for path in wheels:
        wheel_name, version, _, wheel_tags = parse_wheel_filename(path.name)
        if wheel_name != wanted or not specifier.contains(version, prereleases=False):
            continue
        if tags.isdisjoint(wheel_tags):
            continue
        if best is None or version > best[0]:
            best = (version, path)
    return best[1] if best else None


def check_kit(wheel_dir: Path, targets: Iterable[Target] = TARGETS) -> list[str]:
    """What each target would miss when installing mailbackup from `wheel_dir` with no index."""
    wheels = sorted(wheel_dir.glob("*.whl"))
    problems = []
    for target in targets:
        root = best_wheel(wheels, "mailbackup", SpecifierSet(), target)
        if root is None:
            problems.append(f"{target}: no mailbackup wheel")
            continue
        problems += [f"{target}: {missing}" for missing in _missing(wheels, root, target)]
    return problems


def _missing(wheels: list[Path], root: Path, target: Target) -> list[str]:
    seen = {canonicalize_name("mailbackup")}
    todo = wheel_requirements(root, target)
    missing = []
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        found = best_wheel(wheels, name, requirement.specifier, target)
        if found is None:
            missing.append(f"no wheel for {requirement}")
            continue
        todo += wheel_requirements(found, target, requirement.extras)
    return missing


# ---- building ---------------------------------------------------------------------------------

def build_own_wheel(wheel_dir: Path) -> Path:
    # No build isolation: setuptools and wheel come from this environment, so
    # building mailbackup itself needs no index.
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        "--wheel-dir", scratch, str(ROOT)], check=True)
        built = next(Path(scratch).glob("mailbackup-*.whl"))
        return Path(shutil.copy2(built, wheel_dir / built.name))


def fetch(requirements: list[str], target: Target, wheel_dir: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "-qq", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", "--implementation", "cp", "--python-version", target.version,
               "--abi", target.abi, "--abi", "abi3", "--abi", "none", "--dest", str(wheel_dir)]
    for platform in target.platforms:
        command += ["--platform", platform]
    subprocess.run(command + requirements, check=True)


def gather(wheel_dir: Path, root: Path, target: Target) -> None:
    """Fetch, round by round, every wheel `root` needs on `target`."""
    done: dict[str, SpecifierSet] = {canonicalize_name("mailbackup"): SpecifierSet()}
    todo = wheel_requirements(root, target)
    while todo:
        wanted: dict[str, SpecifierSet] = {}
        extras: dict[str, set[str]] = {}
        for requirement in todo:
            name = canonicalize_name(requirement.name)
            if name not in done:
                wanted[name] = wanted.get(name, SpecifierSet()) & requirement.specifier
                extras.setdefault(name, set()).update(requirement.extras)
        if not wanted:
            break
        fetch([f"{name}{specifier}" for name, specifier in sorted(wanted.items())], target, wheel_dir)
        done.update(wanted)
        todo = []
        wheels = sorted(wheel_dir.glob("*.whl"))
        for name, specifier in wanted.items():
            found = best_wheel(wheels, name, specifier, target)
            if found is None:
                raise SystemExit(f"pip fetched no usable wheel of {name}{specifier} for {target}")
            todo += wheel_requirements(found, target, extras[name])


# ---- the rest of the kit ----------------------------------------------------------------------

INSTALL_SH = """#!/bin/sh
# ติดตั้ง mailbackup จากชุดติดตั้งนี้ โดยไม่ต้องใช้อินเทอร์เน็ต / Install mailbackup from this kit, offline.
#   sh install.sh [DIRECTORY]      (default: ~/mailbackup; Python 3.11 or newer: PYTHON=python3.12 sh install.sh)
set -eu
KIT=$(cd "$(dirname "$0")" && pwd)
TARGET=${1:-"$HOME/mailbackup"}
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv "$TARGET"
"$TARGET/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \\
    --find-links "$KIT/wheels" mailbackup
echo "ติดตั้งเรียบร้อยแล้ว / Installed: $TARGET/bin/mailbackup"
echo "สำรองข้อมูล / Back up:  $TARGET/bin/mailbackup backup you@coj.go.th"
"""

INSTALL_BAT = r"""@echo off
rem ติดตั้ง mailbackup จากชุดติดตั้งนี้ โดยไม่ต้องใช้อินเทอร์เน็ต / Install mailbackup from this kit, offline.
rem   install.bat [DIRECTORY]      (default: %USERPROFILE%\mailbackup; needs Python 3.11 or newer from python.org)
chcp 65001 >nul
setlocal
set "KIT=%~dp0"
set "TARGET=%~1"
if "%TARGET%"=="" set "TARGET=%USERPROFILE%\mailbackup"
py -3 -m venv "%TARGET%" || python -m venv "%TARGET%" || goto :failed
set "PIP_OPTIONS=--quiet --disable-pip-version-check --no-index"
"%TARGET%\Scripts\python.exe" -m pip install %PIP_OPTIONS% --find-links "%KIT%wheels" mailbackup || goto :failed
echo ติดตั้งเรียบร้อยแล้ว / Installed: "%TARGET%\Scripts\mailbackup.exe"
echo สำรองข้อมูล / Back up:  "%TARGET%\Scripts\mailbackup.exe" backup you@coj.go.th
exit /b 0
:failed
echo ติดตั้งไม่สำเร็จ: ต้องมี Python 3.11 ขึ้นไป / Installation failed: Python 3.11 or newer is needed.
exit /b 1
"""

README = """ชุดติดตั้ง mailbackup แบบไม่ต้องใช้อินเทอร์เน็ต (รุ่น {version})
=================================================================

ชุดนี้ใช้ติดตั้งโปรแกรม mailbackup สำหรับสำรองข้อมูลกล่องจดหมาย @coj.go.th
บนเครื่องที่ไม่สามารถเชื่อมต่อแหล่งดาวน์โหลดโปรแกรมได้ ใช้ได้กับ Windows และ Linux (64 บิต)
ที่มี Python รุ่น 3.11, 3.12 หรือ 3.13

ขั้นตอน
1. Windows: ติดตั้ง Python จาก python.org (เลือก "Add python.exe to PATH")
   แล้วดับเบิลคลิก install.bat หรือพิมพ์ใน Command Prompt:  install.bat
   Linux: พิมพ์ในหน้าต่างคำสั่ง:  sh install.sh
2. โปรแกรมจะติดตั้งไว้ที่ %USERPROFILE%\\mailbackup (Windows) หรือ ~/mailbackup (Linux)
   และแสดงคำสั่งสำหรับสำรองข้อมูล เช่น
   %USERPROFILE%\\mailbackup\\Scripts\\mailbackup.exe backup you@coj.go.th
3. อ่านคู่มือฉบับเต็มในโฟลเดอร์ guides (เปิดไฟล์ guide-th.html ด้วยเว็บเบราว์เซอร์)

สิ่งที่อยู่ในชุดนี้
- install.bat, install.sh : ตัวติดตั้ง (ไม่ดาวน์โหลดสิ่งใดจากอินเทอร์เน็ต)
- wheels : โปรแกรม mailbackup และส่วนประกอบทั้งหมดที่ต้องใช้
- guides : คู่มือผู้ใช้งานและนักวิชาการคอมพิวเตอร์ (ภาษาไทยและภาษาอังกฤษ)

-----------------------------------------------------------------
mailbackup offline installation kit (version {version})

For Windows and Linux x86-64 with Python 3.11-3.13. Windows: run install.bat;
Linux: sh install.sh. Nothing is downloaded. The guides are in guides/.
"""

GUIDE_PAGE = """<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:"Sarabun","TH Sarabun New","Tahoma",sans-serif;max-width:50em;margin:2em auto;
line-height:1.6;padding:0 1em}}pre{{background:#f4f4f4;padding:.6em;overflow-x:auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:.2em .5em}}</style>
</head><body>
{body}
</body></html>
"""


def guide_html(markdown_text: str, lang: str) -> bytes:
    """A guide as one self-contained page (the Markdown subset the guides use)."""
    body = "\n".join(_blocks(markdown_text))
    title = next((line[2:] for line in markdown_text.splitlines() if line.startswith("# ")), "mailbackup")
    return GUIDE_PAGE.format(lang=lang, title=html.escape(title), body=body).encode("utf-8")


FENCE = re.compile(r"^```\w*\n(.*?)^```\n?", re.M | re.S)
COMMENT = re.compile(r"<!--.*?-->\n?", re.S)


def _blocks(text: str) -> Iterable[str]:
    text = COMMENT.sub("", text)
    position = 0
    for fence in FENCE.finditer(text):
        yield from _paragraphs(text[position:fence.start()])
        yield "<pre><code>" + html.escape(fence.group(1)) + "</code></pre>"
        position = fence.end()
    yield from _paragraphs(text[position:])


def _paragraphs(text: str) -> Iterable[str]:
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.strip("\n").splitlines() if line.strip()]
        if not lines:
            continue
        heading = re.match(r"(#{1,6}) (.*)", lines[0])
        if heading and len(lines) == 1:
            level, words = len(heading.group(1)), heading.group(2)
            yield f'<h{level} id="{html.escape(_slug(words))}">{_inline(words)}</h{level}>'
        elif all(line.startswith("|") for line in lines):
            yield _table(lines)
        elif all(re.match(r"\s*([-*]|\d+\.) ", line) or line.startswith("  ") for line in lines):
            items = re.split(r"\n(?=\s*(?:[-*]|\d+\.) )", "\n".join(lines))
            tag = "ol" if re.match(r"\s*\d+\.", lines[0]) else "ul"
            yield f"<{tag}>" + "".join("<li>" + _inline(re.sub(r"^\s*([-*]|\d+\.) ", "", item)) + "</li>"
                                      for item in items) + f"</{tag}>"
        else:
            yield "<p>" + _inline(" ".join(lines)) + "</p>"


def _table(lines: list[str]) -> str:
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    rows = [row for row in rows if not all(re.fullmatch(r":?-+:?", cell) for cell in row)]
    head, *body = rows
    return ("<table><tr>" + "".join(f"<th>{_inline(cell)}</th>" for cell in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>" for row in body)
            + "</table>")


def _inline(text: str) -> str:
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append("<code>" + html.escape(part[1:-1]) + "</code>")
            continue
        part = html.escape(part, quote=False)
        part = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", part)
        part = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", lambda m: _link(m.group(1), m.group(2)), part)
        out.append(part)
    return "".join(out)


def _link(words: str, target: str) -> str:
    target = re.sub(r"^(guide-\w+)\.md", r"\1.html", html.unescape(target))
    return f'<a href="{html.escape(target)}">{words}</a>'


def _slug(words: str) -> str:
    # GitHub's rule, which the guides' own links follow: lower case, punctuation and symbols dropped
    # (Thai vowel and tone marks are kept: they are marks, not punctuation), spaces to '-'.
    kept = (c for c in words.lower() if c in "- " or unicodedata.category(c)[0] not in "PS")
    return "".join(kept).replace(" ", "-")


def write_rest(out: Path, version: str) -> None:
    (out / "install.sh").write_text(INSTALL_SH, encoding="utf-8", newline="\n")
    (out / "install.sh").chmod(0o755)
    (out / "install.bat").write_text(INSTALL_BAT.replace("\n", "\r\n"), encoding="utf-8", newline="")
    (out / "README.txt").write_text(README.format(version=version).replace("\n", "\r\n"),
                                    encoding="utf-8-sig", newline="")
    guides = out / "guides"
    guides.mkdir()
    for lang in ("th", "en"):
        source = ROOT / "docs" / f"guide-{lang}.md"
        (guides / f"guide-{lang}.html").write_bytes(guide_html(source.read_text(encoding="utf-8"), lang))


def build(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    wheel_dir = out / "wheels"
    wheel_dir.mkdir(parents=True)
    own = build_own_wheel(wheel_dir)
    for target in TARGETS:
        print(f"wheels for {target}", flush=True)
        gather(wheel_dir, own, target)
    write_rest(out, parse_wheel_filename(own.name)[1].public)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the kit goes (replaced)")
    parser.add_argument("--check-only", action="store_true", help="only check an existing kit")
    args = parser.parse_args(argv)
    if not args.check_only:
        build(args.out)
    problems = check_kit(args.out / "wheels")
    for problem in problems:
        print("missing:", problem, file=sys.stderr)
    if not problems:
        count = len(list((args.out / "wheels").glob("*.whl")))
        print(f"kit ready: {args.out} ({count} wheels, {len(TARGETS)} kinds of machine)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
