"""Keep a password out of what a server says back.

A server may repeat what it was sent: in a refusal, in a BAD, in a broken
line.  The password goes out in several forms (as is in AUTHENTICATE PLAIN's
base64, quoted and escaped in LOGIN), and comes back printed in others
(Python's and JSON's escapes).  Every form is masked in the server's whole
text, before anything cuts it short, so no fragment survives at the edge.

A short password cannot be masked where it occurs: ``x`` is inside any word,
and ``t@***`` for ``t@x`` names it.  When a password shorter than
`MIN_MASKED` is found in a server's text, the whole text is withheld.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from mailbackup.i18n import N_, _

MIN_MASKED = 8
MASK = "***"
WITHHELD = N_("the server's words are not shown: they may hold the password")


@dataclass(frozen=True)
class Redaction:
    forms: tuple[str, ...]  # longest first: a form inside another is masked whole

    @classmethod
    def of(cls, account: str, password: str) -> Redaction:
        if not password:
            return cls(())
        escaped = password.replace("\\", "\\\\").replace('"', '\\"')  # LOGIN's quoted string (RFC 3501 4.3)
        forms = {password, escaped, base64.b64encode(f"\0{account}\0{password}".encode()).decode(),
                 base64.b64encode(password.encode()).decode().rstrip("="),
                 ascii(password)[1:-1], repr(password)[1:-1], json.dumps(password)[1:-1],
                 repr(password.encode())[2:-1]}
        return cls(tuple(sorted((form for form in forms if form), key=len, reverse=True)))

    def server_text(self, text: str) -> str:
        """A server's words with the password masked in every form, or withheld
        whole where a short password occurs in them."""
        for form in self.forms:
            if form in text:
                if len(form) < MIN_MASKED:
                    return _(WITHHELD)
                text = text.replace(form, MASK)
        return text

    def message(self, text: str) -> str:
        """One of our messages: the long forms masked (a short one would be found in our own words)."""
        for form in self.forms:
            if len(form) >= MIN_MASKED:
                text = text.replace(form, MASK)
        return text

    def contains(self, text: str) -> bool:
        return any(form in text for form in self.forms)


NO_REDACTION = Redaction(())
