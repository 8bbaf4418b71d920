"""Keep a password out of what a server says back.

A server may repeat what it was sent: in a refusal, in a BAD, in a broken
line.  The password goes out in several forms (as is in AUTHENTICATE PLAIN's
base64, quoted and escaped in LOGIN), and comes back printed in others
(Python's and JSON's escapes, or only its ASCII characters: imapclient
decodes a server's words as ASCII and drops the rest).  Every form is masked in the server's whole
text, before anything cuts it short, so no fragment survives at the edge.

imapclient logs a server's words it cannot decode (a warning, shown on
stderr and in a sweep's log): its loggers pass every record through the
redactions of the sessions alive (`watch_logs`).

A short password cannot be masked where it occurs: ``x`` is inside any word,
and ``t@***`` for ``t@x`` names it.  When a password shorter than
`MIN_MASKED` is found in a server's text, the whole text is withheld.
"""

from __future__ import annotations

import base64
import json
import logging
import weakref
from dataclasses import dataclass

from mailbackup.i18n import N_, _
from mailbackup.imap.wire import IMAPCLIENT_LOGGERS

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
        # What imapclient's ASCII decoding leaves of a non-ASCII password: masked when it is
        # long enough to mean something.  The "8" left of "รหัสผ่านไทย8" would otherwise have
        # every server text holding an 8 (a date, a count) withheld as if it held the password.
        remainder = password.encode("ascii", "ignore").decode()
        if remainder == password or len(remainder) >= MIN_MASKED:
            forms.add(remainder)
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


_watched: weakref.WeakSet[Redaction] = weakref.WeakSet()


class _LogRedaction(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        redactions = list(_watched)
        if redactions:
            text = record.getMessage()
            for redaction in redactions:
                text = redaction.server_text(text)
            record.msg, record.args = text, ()
        return True


def watch_logs(redaction: Redaction) -> None:
    """Mask `redaction`'s password in imapclient's log records for as long as it lives."""
    _watched.add(redaction)


_LOG_FILTER = _LogRedaction()
for _name in IMAPCLIENT_LOGGERS:  # a logger's filter does not see its children's records
    logging.getLogger(_name).addFilter(_LOG_FILTER)
