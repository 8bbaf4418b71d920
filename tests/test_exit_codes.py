"""Exit codes: the worst of several is chosen by severity (the README's
order), never by the larger number; a run's code comes from one place."""

from __future__ import annotations

from dataclasses import dataclass

from mailbackup.errors import SEVERITY, ExitCode, run_exit_code, worst_exit_code


def test_worst_exit_code_follows_the_documented_order() -> None:
    assert worst_exit_code([]) is ExitCode.OK
    assert worst_exit_code([ExitCode.WARNINGS, ExitCode.AUTH, ExitCode.CONNECTION]) is ExitCode.AUTH
    assert worst_exit_code([ExitCode.PROTOCOL, ExitCode.LOCKED]) is ExitCode.PROTOCOL
    assert worst_exit_code([ExitCode.CORRUPT, ExitCode.STORAGE, ExitCode.USAGE]) is ExitCode.CORRUPT
    assert worst_exit_code([ExitCode.CORRUPT, ExitCode.INTERRUPTED]) is ExitCode.INTERRUPTED
    assert set(SEVERITY) == set(ExitCode)


def test_the_worst_code_is_not_the_largest_number() -> None:
    # 9 (the server answered oddly) may pass by itself; 3 (wrong password) needs a person.
    assert worst_exit_code([ExitCode.PROTOCOL, ExitCode.AUTH]) is ExitCode.AUTH
    assert worst_exit_code([ExitCode.STORAGE, ExitCode.CORRUPT, ExitCode.PROTOCOL]) is ExitCode.CORRUPT
    assert worst_exit_code(iter([ExitCode.OK, ExitCode.WARNINGS])) is ExitCode.WARNINGS


@dataclass
class _Stats:
    interrupted: bool = False
    has_warnings: bool = False


def test_a_run_ends_interrupted_before_warnings() -> None:
    assert run_exit_code(_Stats()) is ExitCode.OK
    assert run_exit_code(_Stats(has_warnings=True)) is ExitCode.WARNINGS
    assert run_exit_code(_Stats(interrupted=True, has_warnings=True)) is ExitCode.INTERRUPTED
