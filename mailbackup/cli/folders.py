"""`mailbackup folders ACCOUNT`: every folder with its message count and size."""

from __future__ import annotations

import click

from mailbackup.cli.common import build_context, handle_errors, server_options, verbosity_options
from mailbackup.cli.format import display_width, human_bytes, pad
from mailbackup.errors import ExitCode, FolderError
from mailbackup.i18n import _


@click.command(help=_("List ACCOUNT's folders with message counts and sizes (one STATUS each)."))
@click.argument("account")
@server_options
@verbosity_options
@handle_errors
def folders(account: str, **options: object) -> None:
    ctx = build_context(account, **options)  # type: ignore[arg-type]
    total_messages = total_bytes = 0
    sizes_known = True  # without STATUS=SIZE (RFC 8438) the server says nothing of sizes
    failed: list[str] = []
    with ctx.session() as session:
        rows = []
        listed = session.list_folders()
        known = session.statuses(info.name for info in listed if info.selectable)
        for info in listed:
            if not info.selectable:
                rows.append((info.name, "-", "-"))
                continue
            try:
                status = known.get(info.name) or session.status(info.name)
            except FolderError as exc:  # one folder the server will not describe: list the others
                failed.append(exc.message)
                rows.append((info.name, "!", "!"))
                continue
            total_messages += status.messages
            sizes_known = sizes_known and status.size is not None
            total_bytes += status.size or 0
            rows.append((info.name, str(status.messages), _size_text(status.size)))
    heading, total = _("Folder"), _("Total")
    width = max([display_width(name) for name, _count, _size in rows] + [display_width(heading), 6])
    ctx.echo(f"{pad(heading, width)}  {pad(_('Messages'), 9, right=True)}  {pad(_('Size'), 9, right=True)}")
    for name, count, size in rows:
        ctx.echo(f"{pad(name, width)}  {count:>9}  {size:>9}")  # echo escapes control characters from names
    ctx.echo(f"{pad(total, width)}  {total_messages:>9}  {_size_text(total_bytes if sizes_known else None):>9}")
    for problem in failed:
        ctx.echo(_("warning: {problem}").format(problem=problem), err=True)
    if failed:
        raise SystemExit(int(ExitCode.WARNINGS))


def _size_text(size: int | None) -> str:
    return human_bytes(size) if size is not None else _("unknown")
