"""Quirk profiles of servers we cannot run here, for the scripted fake server
(fakeserver.py).  Each is taken from public reports; docs/servers.md cites them.

* `Exchange`: Exchange 2007-2019 and Office 365.  RFC822.SIZE is an estimate
  unless `EnableExactRFC822Size` is set (imapsync FAQ.Exchange); a command
  sent while another is unanswered is answered `BAD Command Argument Error. 11`
  (the text Exchange uses for a command it rejects: imapsync issue 327;
  mbsync users on Exchange set `PipelineDepth 1`: Arch wiki "isync", mutt-wizard
  issue 377); no UIDPLUS before Exchange 2010; folder names with spaces.
* `Gmail`: labels are folders, so one message is in `INBOX`, each label's
  folder and `[Gmail]/All Mail` (`\\All`, RFC 6154); `[Gmail]` is `\\Noselect`;
  bandwidth caps answered `NO [THROTTLED]`, `OK Success [THROTTLED]` (done,
  slowly: node-imap issue 593, MailKit issue 1396) or with `* BYE [ALERT]`.
"""

from __future__ import annotations

from fakeserver import Conn, Folder, Message, Script


class Exchange(Script):
    """Exchange / Office 365 (see the module docstring)."""

    watch_pipelining = True

    def __init__(self, *, exact_sizes: bool = False, uidplus: bool = False, pipelining: bool = False) -> None:
        self.exact_sizes = exact_sizes
        self.appenduid = uidplus
        self.pipelining = pipelining  # True: handles pipelined commands like any server
        self.capabilities = b"IMAP4 IMAP4rev1 AUTH=PLAIN CHILDREN IDLE NAMESPACE LITERAL+" + (
            b" UIDPLUS" if uidplus else b"")
        self.bogus: set[int] = set()  # connections whose next command is answered BAD
        self.refused = 0  # pipelined commands answered BAD

    def rfc822_size(self, message: Message) -> int:
        if self.exact_sizes:
            return len(message.body)
        return len(message.body) + len(message.body) // 10 + 37  # what it would be as MAPI stored it

    def command(self, conn: Conn, tag: bytes, name: bytes, args: bytes) -> None:
        if conn.number in self.bogus:
            self.bogus.discard(conn.number)
            self.refused += 1
            conn.send(tag + b" BAD Command Argument Error. 11\r\n")
            return
        if not self.pipelining and name not in (b"LOGOUT", b"AUTHENTICATE") and conn.pending_input():
            self.bogus.add(conn.number)  # the command sent before this one was answered
        super().command(conn, tag, name, args)


def exchange_mailbox(bodies: list[bytes]) -> list[Folder]:
    """INBOX and folders named as Outlook names them: spaces, dots, a child of "Inbox"."""
    return [Folder.named("INBOX", bodies[:4], flags=b"\\HasChildren"),
            Folder.named("INBOX/Clients 2024", bodies[4:6]),
            Folder.named("Sent Items", bodies[6:8]),
            Folder.named("Deleted Items", []),
            Folder.named("Projects/Court Case No. 12/2567", bodies[8:9])]


class Gmail(Script):
    """Gmail (see the module docstring).  `throttle` FETCHes of bodies are answered
    `NO [THROTTLED]` before one succeeds; `slowed`: done, answered
    `OK Success [THROTTLED]`; with `daily_cap`, every FETCH of bodies
    after the first `allowed` ends the connection with `* BYE [ALERT]`."""

    capabilities = b"IMAP4rev1 UNSELECT IDLE NAMESPACE ID CHILDREN X-GM-EXT-1 UIDPLUS SPECIAL-USE AUTH=PLAIN"

    def __init__(self, *, throttle: int = 0, slowed: bool = False, daily_cap: bool = False, allowed: int = 1) -> None:
        self.throttle = throttle
        self.slowed = slowed
        self.daily_cap = daily_cap
        self.allowed = allowed
        self.body_fetches = 0

    def fetch(self, conn: Conn, tag: bytes, folder: Folder, uids: list[int], items: bytes) -> None:
        if b"BODY.PEEK[]" in items.upper():
            self.body_fetches += 1
            if self.throttle > 0:
                self.throttle -= 1
                conn.send(tag + b" NO [THROTTLED] Account exceeded command or bandwidth limits. (Failure)\r\n")
                return
            if self.slowed:  # done, but slowly: Gmail's "OK Success [THROTTLED]" (MailKit issue 1396)
                for sequence, message in enumerate(folder.messages, start=1):
                    if message.uid in uids:
                        conn.send(self.fetch_response(conn, sequence, message, items))
                conn.send(tag + b" OK Success [THROTTLED]\r\n")
                return
            if self.daily_cap and self.body_fetches > self.allowed:
                conn.send(b"* BYE [ALERT] Account exceeded download bandwidth limits. Try again in 24 hours.\r\n")
                conn.close()
                return
        super().fetch(conn, tag, folder, uids, items)


def gmail_mailbox(bodies: list[bytes]) -> list[Folder]:
    """Five messages: all in All Mail; INBOX holds 1-3, the label "งาน" 3-4, Sent Mail 5."""
    def pick(*numbers: int) -> list[Message]:
        return [Message(uid, bodies[number - 1]) for uid, number in enumerate(numbers, start=1)]

    def folder(name: str, messages: list[Message], flags: bytes) -> Folder:
        made = Folder.named(name, flags=flags)
        made.messages = messages
        return made

    return [folder("INBOX", pick(1, 2, 3), b"\\HasNoChildren"),
            folder("[Gmail]", [], b"\\HasChildren \\Noselect"),
            folder("[Gmail]/All Mail", pick(1, 2, 3, 4, 5), b"\\All \\HasNoChildren"),
            folder("[Gmail]/Sent Mail", pick(5), b"\\HasNoChildren \\Sent"),
            folder("งาน", pick(3, 4), b"\\HasNoChildren")]


class Unsolicited(Script):
    """What a busy server sends in the middle of the first UID FETCH of bodies:
    message 3 expunged by another client (`* 3 EXPUNGE`: RFC 3501 7.4.1 allows
    it during UID commands), new mail (`* n EXISTS`), a flag change another
    client made (`* 1 FETCH (FLAGS ...)`, no UID), and then the answers in
    reverse order; message 2 has INTERNALDATE NIL throughout."""

    def __init__(self, arriving: bytes) -> None:
        self.arriving = arriving
        self.done = False

    def internaldate(self, message: Message) -> bytes:
        return b"NIL" if message.uid == 2 else super().internaldate(message)

    def fetch(self, conn: Conn, tag: bytes, folder: Folder, uids: list[int], items: bytes) -> None:
        if self.done or b"BODY.PEEK[]" not in items.upper():
            super().fetch(conn, tag, folder, uids, items)
            return
        self.done = True
        first, expunged = folder.messages[0], folder.messages[2]
        conn.send(self.fetch_response(conn, 1, first, items))
        folder.messages.remove(expunged)
        conn.send(b"* 3 EXPUNGE\r\n")
        folder.messages.append(Message(folder.uidnext, self.arriving))
        conn.send(b"* %d EXISTS\r\n" % len(folder.messages))
        first.flags = ("\\Seen", "\\Flagged")
        conn.send(b"* 1 FETCH (FLAGS (\\Seen \\Flagged))\r\n")
        rest = [(sequence, message) for sequence, message in enumerate(folder.messages, start=1)
                if message.uid in uids and message is not first]
        for sequence, message in reversed(rest):
            conn.send(self.fetch_response(conn, sequence, message, items))
        conn.send(tag + b" OK Fetch completed.\r\n")


class NewUidvalidityEachSession(Script):
    """GNU mailutils imap4d 3.15 gives most folders a new UIDVALIDITY in every
    session (seen in tests/test_compat.py's runs, docs/servers.md); its
    `UID SEARCH UID 1:*` quirk is left out here, to show this one alone."""

    def examine(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        folder.uidvalidity = 1000 + conn.number
        super().examine(conn, tag, folder)

    def status(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        folder.uidvalidity = 1000 + conn.number
        super().status(conn, tag, folder)


class DropsAppendFlags(Script):
    """Stores an APPENDed message without the flags sent with it (reported of
    GNU mailutils imap4d 3.15; docs/servers.md), UID STORE works."""

    def append(self, conn: Conn, tag: bytes, folder: Folder, line: bytes) -> None:
        super().append(conn, tag, folder, line)
        folder.messages[-1].flags = ()
