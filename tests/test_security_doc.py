"""docs/security.md names a test for every rule: each one it names exists
(a renamed or deleted test would leave a rule with nothing behind it), and
the README links the page."""

from __future__ import annotations

import re

from helpers import REPO

DOC = REPO / "docs" / "security.md"


def test_every_test_named_in_security_md_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", text)
    assert len(named) >= 15
    sources = {path: (REPO / path).read_text(encoding="utf-8") for path, _ in named}
    # `…::name` is a test of the file named just before it in the same cell: any named file will do here.
    tests = [test for _, test in named if test] + re.findall(r"`…::(\w+)`", text)
    for test in tests:
        assert any(re.search(rf"^def {test}\(", source, re.M) for source in sources.values()), test
    assert "(docs/security.md)" in (REPO / "README.md").read_text(encoding="utf-8")
