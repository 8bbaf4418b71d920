"""`mailbackup check`: log in to every account of a config (and out again),
several at once, download nothing, and say who cannot and why, in the words
of the survey form the mail administrator asks units for.

Public API: `check_logins(settings, options, progress)` → one `LoginCheck`
per account; `login_problem`, `LOGIN_PROBLEMS`; `check_rows`/`check_csv` and
`CHECK_COLUMNS`, the form's columns.  Runs on the sweep's dispatcher
(dispatch.py): the same connection limits, the same waiting out of a busy
server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailbackup.config import AccountSettings, SweepSettings
from mailbackup.errors import (
    AuthError,
    ConnectError,
    ExitCode,
    MailbackupError,
    PasswordUnavailable,
    ServerError,
    TLSError,
)
from mailbackup.i18n import _, language
from mailbackup.imap.pushback import pushback_of
from mailbackup.imap.session import ImapSession
from mailbackup.sweep.dispatch import Again, Dispatcher, Job, Passwords, requeue, server_limits, wait_budget
from mailbackup.sweep.options import Shard, SweepOptions, select_accounts
from mailbackup.sweep.progress import LogProgress, SweepProgress
from mailbackup.verify.render import csv_bytes


@dataclass(frozen=True)
class LoginProblem:
    key: str
    thai: str
    english: str

    def __str__(self) -> str:
        # The list goes to the mail administrator: English runs keep the Thai too.
        return self.thai if language() == "th" else f"{self.thai} / {self.english}"


# In the words of the survey the mail administrator asks units for (circular
# ศย ๐๑๓/ว ๓๓๙, item 3): forgotten passwords, accounts unused (deleted after
# six months) or forgotten.  Servers answer a wrong password and an unknown
# account alike, so one problem covers both.
LOGIN_PROBLEMS = {problem.key: problem for problem in (
    LoginProblem("wrong_password", "รหัสผ่านไม่ถูกต้อง หรือไม่มีบัญชีนี้ (อาจถูกลบเพราะไม่ได้ใช้งานเกิน 6 เดือน)",
                 "wrong password, or no such account (deleted after 6 months unused?)"),
    LoginProblem("locked", "บัญชีถูกระงับหรือถูกล็อก", "account locked or disabled"),
    LoginProblem("expired", "รหัสผ่านหรือบัญชีหมดอายุ", "password or account expired"),
    LoginProblem("no_password", "ไม่มีรหัสผ่านเก็บไว้ในเครื่องนี้", "no password stored on this machine"),
    LoginProblem("server_down", "ติดต่อเซิร์ฟเวอร์ไม่ได้", "server down or unreachable"),
    LoginProblem("tls", "ใบรับรองของเซิร์ฟเวอร์ไม่ผ่านการตรวจสอบ", "server certificate not trusted"),
    LoginProblem("busy", "เซิร์ฟเวอร์ไม่ว่าง ปฏิเสธชั่วคราว", "server busy, refused for now"),
    LoginProblem("server_error", "เซิร์ฟเวอร์ตอบกลับผิดปกติ", "server error"),
    LoginProblem("local", "ปัญหาในเครื่องนี้", "problem on this machine"),
)}
LOCKED_WORDS = ("[AUTHORIZATIONFAILED]", "[CONTACTADMIN]", "disabled", "locked", "suspended", "blocked", "inactive")
EXPIRED_WORDS = ("[EXPIRED]", "expired")


def login_problem(exc: MailbackupError) -> LoginProblem:
    text = str(exc).lower()
    if isinstance(exc, PasswordUnavailable):
        key = "no_password"
    elif pushback_of(exc) is not None:
        key = "busy"
    elif isinstance(exc, AuthError):
        key = ("locked" if any(word.lower() in text for word in LOCKED_WORDS)
               else "expired" if any(word.lower() in text for word in EXPIRED_WORDS) else "wrong_password")
    elif isinstance(exc, ConnectError):
        key = "server_down"
    elif isinstance(exc, TLSError):
        key = "tls"
    elif isinstance(exc, ServerError):
        key = "server_error"
    else:
        key = "local"
    return LOGIN_PROBLEMS[key]


@dataclass
class LoginCheck:
    settings: AccountSettings
    problem: LoginProblem | None = None
    detail: str = ""
    exit_code: ExitCode = ExitCode.OK

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_logins(settings: SweepSettings, options: SweepOptions, progress: SweepProgress | None = None, *,
                 shard: Shard | None = None) -> list[LoginCheck]:
    """Log in to every account (and out again), several at once; download nothing."""
    sink: SweepProgress = progress or LogProgress()
    accounts = select_accounts(settings, shard)
    checks = {id(account): LoginCheck(account) for account in accounts}
    passwords = Passwords(options.password)

    def attempt(job: Job) -> Again | None:
        check = checks[id(job.settings)]
        sink.account_start(job.settings.account, "login", job.attempts + 1)
        job.attempts += 1
        try:
            with ImapSession(job.settings.connection, job.settings.account, passwords(job.settings)):
                pass
        except MailbackupError as exc:
            busy = pushback_of(exc)
            again = requeue(job, busy, None, options) if busy is not None else None
            if again is not None:
                return again
            check.problem, check.detail, check.exit_code = login_problem(exc), str(exc), exc.exit_code
        sink.account_done(job.settings.account, check.exit_code,
                          _("can log in") if check.ok else _("cannot log in: {problem}: {detail}").format(
                              problem=check.problem, detail=check.detail))
        return None

    def skipped(job: Job) -> None:
        check = checks[id(job.settings)]
        check.problem, check.detail, check.exit_code = LOGIN_PROBLEMS["local"], _("not checked: stopped"), \
            ExitCode.INTERRUPTED

    sink.sweep_start(len(accounts))
    jobs = [Job(account, wait_budget(options), "login") for account in accounts]
    Dispatcher(options.jobs, server_limits(options), options.stop, sink).run(jobs, attempt, skipped)
    return [checks[id(account)] for account in accounts]


CHECK_COLUMNS = ("คำนำหน้า/title", "ชื่อ/name", "นามสกุล/surname", "ตำแหน่ง/position", "บัญชี/account",
                 "ปัญหา/problem", "หน่วยงาน/unit", "รายละเอียด/detail")


def check_rows(checks: Iterable[LoginCheck]) -> list[list[str]]:
    """The accounts that cannot log in, shaped like the survey form the unit
    sends to the mail administrator (title, name, surname, position, ...)."""
    rows = []
    for check in checks:
        if check.ok:
            continue
        staff = check.settings.metadata
        rows.append([staff.get("title", ""), staff.get("name", ""), staff.get("surname", ""),
                     staff.get("position", ""), check.settings.account, str(check.problem), staff.get("unit", ""),
                     check.detail])
    return rows


def check_csv(checks: Iterable[LoginCheck]) -> bytes:
    """UTF-8 with a byte-order mark (Excel on Thai Windows), CRLF, formula-safe."""
    return csv_bytes(CHECK_COLUMNS, check_rows(checks))
