"""Full backup against a real Dovecot: every folder, byte for byte, in both
formats, with flags, dates and Thai folder names, and the errors a user meets."""

from __future__ import annotations

import os
import socket
import stat
import threading

import helpers
import pytest
import sample_mail
from helpers import archive_contents, backup, maildir_bodies, mbox_bodies, run_cli, server_args, server_contents

from mailbackup.archive import account_dir
from mailbackup.errors import ExitCode

FORMATS = ["maildir", "mbox"]


@pytest.fixture
def filled_user(imap_user, imap_client_factory):
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, sample_mail.sample_mailbox())
    return imap_user, client


def snapshot(client) -> dict[str, dict]:
    folders = [name for flags, _, name in client.list_folders() if b"\\Noselect" not in flags]
    return {name: server_contents(client, name) for name in folders}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_folder_is_saved_byte_for_byte(filled_user, tmp_path, fmt):
    user, client = filled_user
    before = snapshot(client)

    result = backup(user, tmp_path, "--format", fmt)

    assert result.returncode == 0, result.stderr
    assert f"saved {sum(len(m) for m in before.values())} messages" in result.stdout
    stored = archive_contents(tmp_path, user.name)
    assert set(stored) == set(before)  # every folder, Thai names included, the empty one too
    assert "กล่องขาเข้า/สำคัญ" in stored and "งานคดี/2566/มกราคม" in stored and stored["ว่าง"] == {}
    for folder, messages in before.items():
        assert set(stored[folder]) == set(messages), folder
        for uid, (body, flags, when) in messages.items():
            saved = stored[folder][uid]
            assert saved.body == body, (folder, uid)
            assert saved.flags == flags
            assert saved.internaldate == when
    assert snapshot(client) == before  # nothing marked \Seen (or changed at all) on the server


def test_maildir_is_readable_by_mailbox_maildir(filled_user, tmp_path):
    user, client = filled_user
    assert backup(user, tmp_path).returncode == 0
    root = account_dir(tmp_path, user.name) / "mail"
    for folder, messages in snapshot(client).items():
        on_disk = root.joinpath(*folder.split("/"))
        assert sorted(maildir_bodies(on_disk)) == sorted(body for body, _, _ in messages.values()), folder
    inbox = {body: (flags, when) for body, flags, when in snapshot(client)["INBOX"].values()}
    for path in (root / "INBOX" / "cur").iterdir():
        body = path.read_bytes()
        flags, when = inbox[body]
        letters = "".join(sorted({"\\Seen": "S", "\\Flagged": "F"}[f] for f in flags if f in ("\\Seen", "\\Flagged")))
        assert path.name.endswith(":2," + letters)
        assert int(path.stat().st_mtime) == int(when.timestamp())  # mtime is INTERNALDATE


def test_mbox_is_readable_by_mailbox_mbox(filled_user, tmp_path):
    user, client = filled_user
    assert backup(user, tmp_path, "--format", "mbox").returncode == 0
    root = account_dir(tmp_path, user.name) / "mail"
    for folder, messages in snapshot(client).items():
        path = root.joinpath(*folder.split("/"))
        path = path.with_name(path.name + ".mbox")
        read_back = mbox_bodies(path)
        # mailbox.mbox keeps the newline an mbox must add to a message that lacked one
        expected = [body if body.endswith(b"\n") else body + b"\n" for body, _, _ in messages.values()]
        assert sorted(read_back) == sorted(expected), folder
    from_lines = (root / "งานคดี" / "2566" / "มกราคม.mbox").read_bytes()
    assert b"\n>From " in from_lines and b"\n>>From " in from_lines  # mboxrd quoting on disk


def test_big_message_both_formats(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    big = sample_mail.big_message(20 * 1024 * 1024)
    sample_mail.fill_mailbox(client, {"INBOX": [big, sample_mail.thai_qp_message()]})
    for fmt in FORMATS:
        dest = tmp_path / fmt
        result = backup(imap_user, dest, "--format", fmt)
        assert result.returncode == 0, result.stderr
        bodies = {message.body for message in archive_contents(dest, imap_user.name)["INBOX"].values()}
        assert big in bodies


def test_second_run_is_incremental(filled_user, tmp_path):
    user, _client = filled_user
    assert backup(user, tmp_path).returncode == 0
    again = backup(user, tmp_path)
    assert again.returncode == 0
    assert "saved 0 messages" in again.stdout and "(0 changed)" in again.stdout


def test_include_and_exclude(filled_user, tmp_path):
    user, _ = filled_user
    result = backup(user, tmp_path, "--include", "งานคดี*", "--exclude", "*/มกราคม")
    assert result.returncode == 0, result.stderr
    assert set(archive_contents(tmp_path, user.name)) == {"งานคดี"}  # งานคดี/2566 is \\Noselect


def test_archive_is_private(filled_user, tmp_path):
    user, _ = filled_user
    assert backup(user, tmp_path).returncode == 0
    root = account_dir(tmp_path, user.name)
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_hostile_folder_names_stay_inside_the_archive(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    wanted = ["CON", "a:b", "x/cur", "x/tmp", "x/new", " lead", "star*?", "back\\slash", "trail.", "100%",
              "Box.mbox", "Box", "aux.txt", "sent", "Sent"]
    names = []
    for name in wanted:
        try:
            client.create_folder(name)
        except Exception:  # Dovecot refuses a few (its own reserved names); the rest is what a server can send
            continue
        names.append(name)
        client.append(name, f"Subject: {name}\r\n\r\nbody of {name}\r\n".encode())
    assert {"CON", "a:b", "star*?", "Box.mbox", "Box", "sent", "Sent"} <= set(names)
    for fmt in FORMATS:
        dest = tmp_path / fmt
        result = backup(imap_user, dest, "--format", fmt)
        assert result.returncode == 0, result.stderr
        stored = archive_contents(dest, imap_user.name)
        for name in names:
            (message,) = stored[name].values()
            assert message.body == f"Subject: {name}\r\n\r\nbody of {name}\r\n".encode()
        root = account_dir(dest, imap_user.name).resolve()
        for path in root.rglob("*"):
            assert path.resolve().is_relative_to(root)
            if path.is_dir() or path.suffix == ".mbox":  # folder names are legal on Windows too
                assert not set(path.name) & set(':*?"<>|\\'), path
            assert path.name.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL"}
        assert not list(dest.parent.glob("*.mbox"))


def test_courier_style_namespace(courier_server, imap_user_factory, imap_client_factory, tmp_path):
    user = imap_user_factory(courier_server)
    client = imap_client_factory(user)
    sample_mail.fill_mailbox(client, {"INBOX": [sample_mail.thai_qp_message()],
                                      "งานคดี/2566": [sample_mail.tis620_message()]},
                             separator=".", prefix="INBOX.")
    result = backup(user, tmp_path)
    assert result.returncode == 0, result.stderr
    stored = archive_contents(tmp_path, user.name)
    assert "INBOX.งานคดี.2566" in stored
    assert (account_dir(tmp_path, user.name) / "mail" / "INBOX" / "งานคดี" / "2566" / "cur").is_dir()


def test_starttls(filled_user, tmp_path):
    user, _ = filled_user
    server = f"{user.server.starttls_host}:{user.server.starttls_port}"
    result = run_cli(["backup", user.name, "--server", server, "--starttls", "--cafile", str(user.cafile),
                      "--dest", str(tmp_path)], password=user.password)
    assert result.returncode == 0, result.stderr


def test_folders_lists_counts_and_sizes(filled_user):
    user, _ = filled_user
    result = run_cli(["folders", user.name, *server_args(user)], password=user.password)
    assert result.returncode == 0, result.stderr
    lines = {line.split("  ")[0].strip(): line for line in result.stdout.splitlines()}
    assert lines["INBOX"].split()[1] == "3"
    assert "กล่องขาเข้า/สำคัญ" in lines and "ว่าง" in lines
    assert lines["Total"].split()[1] == "9"


# -- errors: one line, one exit code, nothing half-written --------------------------------------

def test_wrong_password(imap_user, tmp_path):
    result = run_cli(["backup", imap_user.name, *server_args(imap_user), "--dest", str(tmp_path)],
                     password="not-the-password")
    assert result.returncode == ExitCode.AUTH
    assert result.stderr.strip().count("\n") == 0 and "login refused" in result.stderr
    assert "not-the-password" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []  # no empty archive left for the account


def test_no_password_without_terminal(imap_user, tmp_path):
    result = run_cli(["backup", imap_user.name, *server_args(imap_user), "--dest", str(tmp_path)],
                     env={"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    assert result.returncode == ExitCode.AUTH
    assert "no password for" in result.stderr and "auth set" in result.stderr


def test_unknown_host(tmp_path):
    result = run_cli(["backup", "a@coj.go.th", "--server", "no-such-host.invalid", "--dest", str(tmp_path)],
                     password="x")
    assert result.returncode == ExitCode.CONNECTION
    assert "cannot find server no-such-host.invalid" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_refused_connection(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_cli(["backup", "a@coj.go.th", "--server", f"127.0.0.1:{port}", "--dest", str(tmp_path)],
                     password="x")
    assert result.returncode == ExitCode.CONNECTION
    assert "refused" in result.stderr


def test_untrusted_certificate(imap_user, tmp_path):
    result = run_cli(["backup", imap_user.name, "--server", imap_user.server_arg, "--dest", str(tmp_path)],
                     password=imap_user.password)
    assert result.returncode == ExitCode.TLS
    assert "certificate" in result.stderr and "--cafile" in result.stderr
    insecure = run_cli(["backup", imap_user.name, "--server", imap_user.server_arg, "--insecure",
                        "--dest", str(tmp_path)], password=imap_user.password)
    assert insecure.returncode == 0, insecure.stderr
    assert "NOT checked" in insecure.stderr


def test_wrong_host_name(imap_user, tmp_path):
    result = run_cli(["backup", imap_user.name, "--server", f"127.0.0.1:{imap_user.port}",
                      "--cafile", str(imap_user.cafile), "--dest", str(tmp_path)], password=imap_user.password)
    # the test certificate names 127.0.0.1 too; a name it does not carry must fail
    assert result.returncode in (0, ExitCode.TLS)
    other = run_cli(["backup", imap_user.name, "--server", f"127.0.0.3:{imap_user.port}",
                     "--cafile", str(imap_user.cafile), "--dest", str(tmp_path)], password=imap_user.password)
    assert other.returncode in (ExitCode.TLS, ExitCode.CONNECTION)


def test_timeout(tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)  # accepts (via backlog) but never says a word
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        result = run_cli(["backup", "a@coj.go.th", "--server", f"127.0.0.1:{silent.getsockname()[1]}",
                          "--timeout", "1", "--dest", str(tmp_path)], password="x")
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        silent.close()
    assert result.returncode == ExitCode.CONNECTION
    assert "did not answer within 1 seconds" in result.stderr


def test_unselectable_folder_does_not_stop_the_others(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": [sample_mail.thai_qp_message()],
                                      "Broken": [sample_mail.tis620_message()],
                                      "Fine": [sample_mail.thai_base64_message()]})
    broken = imap_user.server.folder_dir(imap_user.name, "Broken")
    os.chmod(broken, 0)
    try:
        result = backup(imap_user, tmp_path)
    finally:
        os.chmod(broken, 0o700)
    assert result.returncode == ExitCode.WARNINGS, result.stderr
    assert "FAILED  Broken" in result.stderr
    stored = archive_contents(tmp_path, imap_user.name)
    assert len(stored["INBOX"]) == 1 and len(stored["Fine"]) == 1


def test_auth_set_test_delete_with_a_real_keyring(imap_user, tmp_path):
    keyring_env = {**helpers.keyring_env(tmp_path), "HOME": str(tmp_path)}
    stored = run_cli(["auth", "set", imap_user.name, *server_args(imap_user)], env=keyring_env,
                     input=imap_user.password + "\n")
    assert stored.returncode == 0, stored.stderr
    tested = run_cli(["auth", "test", imap_user.name, *server_args(imap_user)], env=keyring_env)
    assert tested.returncode == 0, tested.stderr
    assert "OK: logged in" in tested.stdout
    assert imap_user.password not in tested.stdout + tested.stderr
    result = run_cli(["backup", imap_user.name, *server_args(imap_user), "--dest", str(tmp_path / "a")],
                     env=keyring_env)
    assert result.returncode == 0, result.stderr
    deleted = run_cli(["auth", "delete", imap_user.name, "--server", imap_user.server_arg], env=keyring_env)
    assert deleted.returncode == 0 and "removed" in deleted.stdout
    gone = run_cli(["auth", "test", imap_user.name, *server_args(imap_user)], env=keyring_env)
    assert gone.returncode == ExitCode.AUTH


def test_password_command(imap_user, tmp_path):
    config = tmp_path / "config.yaml"
    secret = tmp_path / "secret.txt"
    secret.write_text(imap_user.password + "\n", encoding="utf-8")
    config.write_text(
        "defaults:\n"
        f"  server: {imap_user.server_arg}\n"
        f"  cafile: {imap_user.cafile}\n"
        "accounts:\n"
        f"  - account: {imap_user.name}\n"
        f"    password_command: cat {secret}\n", encoding="utf-8")
    result = run_cli(["auth", "test", imap_user.name, "--config", str(config)])
    assert result.returncode == 0, result.stderr


def test_config_errors_name_the_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("defaults:\n  server: x\n  colour: blue\naccounts:\n  - account: a@b\n    password: x\n",
                      encoding="utf-8")
    result = run_cli(["auth", "test", "a@b", "--config", str(config)])
    assert result.returncode == ExitCode.USAGE
    assert f"{config}:3: unknown key 'colour'" in result.stderr
    assert f"{config}:6: passwords do not belong in the config" in result.stderr


def test_compress_deflate(filled_user, tmp_path):
    """COMPRESS=DEFLATE (forced on, since auto leaves it off on loopback) carries every byte."""
    from mailbackup.imap.session import ImapSession
    from mailbackup.model import ConnectionSettings, ServerAddress

    user, client = filled_user
    settings = ConnectionSettings(ServerAddress.parse(user.server_arg), cafile=str(user.cafile), compress="always")
    with ImapSession(settings, user.name, user.password) as session:
        assert session.compressed
        assert next(folder.name for folder in session.list_folders()) == "INBOX"
    before = snapshot(client)
    result = backup(user, tmp_path, "--compress", "always")
    assert result.returncode == 0, result.stderr
    stored = archive_contents(tmp_path, user.name)
    for folder, messages in before.items():
        assert {uid: m.body for uid, m in stored[folder].items()} == {uid: b for uid, (b, _, _) in messages.items()}
