"""The offline kit an officer hands to staff (scripts/build_kit.py): built
from the package index once, then installed with the index switched off,
and used for a real backup against the test Dovecot.

Building fetches the dependency wheels for Windows and Linux x86-64 from the
package index (pip's cache makes later builds quick).
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import build_kit  # scripts/ is put on sys.path by conftest
import pytest
import sample_mail
from conftest import new_filled_user
from dovecot_server import DovecotServer
from helpers import archive_contents, server_args
from packaging.utils import parse_wheel_filename

ACCOUNT_MAILBOX = sample_mail.demo_mailbox()
NO_NETWORK = {  # pip may not look anywhere but the kit: an unreachable index, no machine-wide config
    "PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_CONFIG_FILE": os.devnull,
    "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "",
}


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("kit") / "mailbackup-kit"
    done = subprocess.run([sys.executable, str(build_kit.ROOT / "scripts" / "build_kit.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "kit ready" in done.stdout
    yield out


def wheels(kit: Path) -> list[tuple[str, str, set[str]]]:
    found = []
    for path in (kit / "wheels").glob("*.whl"):
        name, version, _, tags = parse_wheel_filename(path.name)
        found.append((str(name), str(version), {str(tag) for tag in tags}))
    return found


def test_every_wheel_a_windows_or_linux_install_needs_is_in_the_kit(kit: Path) -> None:
    assert build_kit.check_kit(kit / "wheels") == []
    found = wheels(kit)
    names = {name for name, _, _ in found}
    # What only Windows needs, which a plain `pip download` on Linux leaves out (markers).
    assert {"pywin32-ctypes", "colorama"} <= names
    for python in ("cp311", "cp312", "cp313"):
        for platform in ("win_amd64", "manylinux_2_17_x86_64"):
            assert any(name == "pyyaml" and f"{python}-{python}-{platform}" in tags for name, _, tags in found), \
                (python, platform)
    # Each wheel installs on at least one of the kit's machines: nothing stray.
    usable = set().union(*(target.tags for target in build_kit.TARGETS))
    assert all({str(tag) for tag in usable} & tags for _, _, tags in found)


def test_the_kit_check_names_what_a_machine_would_miss(kit: Path, tmp_path: Path) -> None:
    partial = tmp_path / "wheels"
    partial.mkdir()
    for path in (kit / "wheels").glob("*.whl"):
        if not path.name.startswith(("pywin32_ctypes", "pyyaml-6.0.4-cp313-cp313-win")):
            (partial / path.name).write_bytes(path.read_bytes())
    problems = build_kit.check_kit(partial)
    assert any(p.startswith("Windows CPython 3.13: no wheel for pyyaml") for p in problems), problems
    assert any(p.startswith("Windows CPython 3.11: no wheel for pywin32-ctypes") for p in problems), problems
    assert not any(p.startswith("Linux") for p in problems), problems


def test_the_mailbackup_wheel_carries_the_compiled_thai_catalogue(kit: Path) -> None:
    wheel = next((kit / "wheels").glob("mailbackup-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        assert "mailbackup/locale/th/LC_MESSAGES/mailbackup.mo" in archive.namelist()


def test_installers_use_only_the_kit(kit: Path) -> None:
    bat = (kit / "install.bat").read_bytes()
    assert b"\r\n" in bat and b"\n" not in bat.replace(b"\r\n", b"")  # cmd.exe wants CRLF
    text = bat.decode("utf-8")
    assert '--no-index"' in text and '%PIP_OPTIONS% --find-links "%KIT%wheels" mailbackup' in text
    assert "chcp 65001" in text  # the Thai lines show in a UTF-8 console
    assert "--no-index" in (kit / "install.sh").read_text(encoding="utf-8")
    readme = (kit / "README.txt").read_text(encoding="utf-8-sig")
    assert "ชุดติดตั้ง mailbackup" in readme and "install.bat" in readme


def test_guides_are_pages_whose_links_lead_somewhere(kit: Path) -> None:
    for lang in ("th", "en"):
        page = (kit / "guides" / f"guide-{lang}.html").read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>") and f'lang="{lang}"' in page
        ids = set(re.findall(r' id="([^"]+)"', page))
        anchors = [html.unescape(a) for a in re.findall(r'href="#([^"]+)"', page)]
        assert anchors and all(html.unescape(a) in {html.unescape(i) for i in ids} for a in anchors), anchors
        assert "<pre><code>" in page and "```" not in page and "<!--" not in page
        other = "en" if lang == "th" else "th"
        assert f'href="guide-{other}.html"' in page
    assert "mailbackup backup you@coj.go.th" in (kit / "guides" / "guide-th.html").read_text(encoding="utf-8")


def test_kit_installs_offline_and_backs_up(kit: Path, tmp_path: Path, dovecot_server: DovecotServer) -> None:
    target = tmp_path / "installed"
    env = {**os.environ, **NO_NETWORK, "PYTHON": sys.executable}
    done = subprocess.run(["sh", str(kit / "install.sh"), str(target)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{target}/bin/mailbackup backup you@coj.go.th" in done.stdout
    user = new_filled_user(dovecot_server, ACCOUNT_MAILBOX)
    dest = tmp_path / "backup"
    env = {**os.environ, "MAILBACKUP_PASSWORD": user.password}
    env.pop("PYTHONPATH", None)
    ran = subprocess.run([str(target / "bin" / "mailbackup"), "backup", user.name, *server_args(user),
                          "--dest", str(dest), "--no-verify"], capture_output=True, text=True, env=env,
                         timeout=300, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    stored = archive_contents(dest, user.name)
    assert sum(len(messages) for messages in stored.values()) == sum(len(m) for m in ACCOUNT_MAILBOX.values())
    # The installed copy is the kit's, not this source tree.
    where = subprocess.run([str(target / "bin" / "python"), "-c", "import mailbackup; print(mailbackup.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert str(target) in where.stdout
    # What the CLI points to ships with it: no docs/ beside an installed copy.
    guide = subprocess.run([str(target / "bin" / "mailbackup"), "export", "--help-thunderbird"], capture_output=True,
                           text=True, env=env, cwd=tmp_path)
    assert guide.returncode == 0 and "Step 1: export" in guide.stdout, guide.stderr


def test_both_guides_describe_the_kit() -> None:
    for name in ("guide-th.md", "guide-en.md"):
        text = (build_kit.ROOT / "docs" / name).read_text(encoding="utf-8")
        assert "mailbackup-kit" in text and "install.bat" in text and "install.sh" in text, name
        assert "scripts/build_kit.py" in text and "--check-only" in text, name
