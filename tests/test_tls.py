"""TLS: certificates that are expired, self-signed or for another host are
refused by default with a word on --cafile/--insecure; --starttls never
falls back to plain text; no password ever crosses an unencrypted link.

Certificates are checked against a real Dovecot (its own test CA, see
scripts/dovecot_server.py); what no real server does (no STARTTLS offered,
STARTTLS refused, plain text on the TLS port) against tests/fakeserver.py,
which records everything it receives."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from dovecot_server import DovecotServer
from fakeserver import Certs, Conn, FakeImapServer, Run, Script, make_certs

from mailbackup.errors import ExitCode

USER, PASSWORD = "tls@coj.go.th", "ผ่าน-TLS-เท่านั้น"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    """A private server: its certificate is swapped by the tests."""
    server = DovecotServer(plaintext_port=True)
    server.start()
    server.add_user(USER, PASSWORD)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Certs]:
    return make_certs(tmp_path_factory.mktemp("certs"))


def auth_test(*args: str, password: str = PASSWORD) -> Run:
    return Run(["auth", "test", USER, "--timeout", "5", *args], password)


@pytest.mark.parametrize("kind,reason", [("expired", "certificate has expired"),
                                         ("wronghost", "Hostname mismatch"),
                                         ("selfsigned", "self-signed certificate")])
def test_a_bad_certificate_is_refused_with_the_way_out(dovecot, kind, reason):
    dovecot.use_cert(kind)
    try:
        refused = auth_test("--server", dovecot.server_arg, "--cafile", str(dovecot.cafile))
        insecure = auth_test("--server", dovecot.server_arg, "--insecure")
        trusted = auth_test("--server", dovecot.server_arg, "--cafile", str(dovecot.make_cert(kind)[0])) \
            if kind == "selfsigned" else None
    finally:
        dovecot.use_cert("good")

    assert refused.code == ExitCode.TLS, refused.stderr
    line = refused.error_line()
    assert reason in line and "--cafile" in line and "--insecure" in line, line
    assert insecure.code == 0, insecure.stderr
    assert "certificate is NOT checked" in insecure.stderr  # said every time, never silent
    if trusted is not None:  # trusting the self-signed certificate itself, as --cafile says
        assert trusted.code == 0, trusted.stderr


def test_a_bad_target_certificate_names_the_target_options(dovecot, certs, tmp_path):
    """restore and migrate take --to-cafile/--to-insecure for the target: the advice says those."""
    dest = tmp_path / "dest"
    backed_up = Run(["backup", USER, "--server", dovecot.server_arg, "--cafile", str(dovecot.cafile),
                     "--dest", str(dest)], PASSWORD)
    assert backed_up.code == 0, backed_up.stderr
    wrong_ca = str(certs["good"].ca)  # the fake servers' CA: not the one that signed Dovecot's certificate
    target = ["--to", USER, "--to-server", dovecot.server_arg, "--to-cafile", wrong_ca]
    env = {"MAILBACKUP_TARGET_PASSWORD": PASSWORD}
    for args in (["restore", USER, "--dest", str(dest), *target],
                 ["migrate", USER, "--server", dovecot.server_arg, "--cafile", str(dovecot.cafile),
                  "--dest", str(tmp_path / "migrate"), *target]):
        run = Run(args, PASSWORD, env=env)
        assert run.code == ExitCode.TLS, run.stderr
        line = run.error_line()
        assert "not trusted" in line and "--to-cafile FILE" in line and "--to-insecure" in line, line
        assert " --cafile" not in line and " --insecure" not in line, line


def test_the_good_certificate_and_starttls_work(dovecot):
    assert auth_test("--server", dovecot.server_arg, "--cafile", str(dovecot.cafile)).code == 0
    starttls = auth_test("--server", dovecot.starttls_server_arg, "--starttls", "--cafile", str(dovecot.cafile))
    assert starttls.code == 0, starttls.stderr
    assert "(STARTTLS)" in starttls.stdout


def assert_nothing_secret_in_plain_text(server: FakeImapServer) -> None:
    secret = base64.b64encode(f"\0{server.user}\0{server.password}".encode())
    for item in server.received:
        if item.encrypted:
            continue
        upper = item.line.upper()
        assert b"AUTHENTICATE" not in upper and b"LOGIN" not in upper, item
        assert secret not in item.line and server.password.encode() not in item.line, item
    assert all(encrypted for _, _, encrypted in server.credentials)


class NoStarttls(Script):
    """A plain-text server that does not offer STARTTLS (or a man in the middle who removed it)."""

    starttls_offered = False


class RefusesStarttls(Script):
    def do_starttls(self, conn: Conn, tag: bytes, args: bytes) -> None:
        conn.send(tag + b" NO STARTTLS is disabled here, log in anyway\r\n")


@pytest.mark.parametrize("script,expected", [(NoStarttls(), "does not offer STARTTLS; refusing to continue"),
                                             (RefusesStarttls(), "refused STARTTLS")])
def test_starttls_never_falls_back_to_plain_text(certs, script, expected):
    tls = "plain" if isinstance(script, NoStarttls) else "starttls"
    with FakeImapServer(certs=certs["good"], tls=tls, script=script, user=USER, password=PASSWORD) as server:
        run = auth_test("--server", f"localhost:{server.port}", "--starttls", "--cafile", str(certs["good"].ca))
        received = list(server.received)

    assert run.code == ExitCode.TLS, run.stderr  # a TLS problem, whichever way STARTTLS fails
    assert expected in run.error_line()
    if isinstance(script, RefusesStarttls):  # the server's own words, not imaplib's
        assert "(STARTTLS is disabled here, log in anyway)" in run.error_line()
        assert "Couldn't establish" not in run.stderr
    assert server.credentials == []
    assert {item.line.split(b" ")[1].strip() for item in received} <= {b"CAPABILITY", b"STARTTLS"}
    assert_nothing_secret_in_plain_text(server)


def test_plain_text_on_the_tls_port_is_a_tls_error(certs):
    with FakeImapServer(tls="plain", user=USER, password=PASSWORD) as server:
        run = auth_test("--server", f"localhost:{server.port}", "--cafile", str(certs["good"].ca))

    assert run.code == ExitCode.TLS, run.stderr
    assert "TLS handshake" in run.error_line()
    assert server.credentials == []
    assert_nothing_secret_in_plain_text(server)


@pytest.mark.parametrize("capabilities", [b"IMAP4rev1 AUTH=PLAIN", b"IMAP4rev1"])  # AUTHENTICATE PLAIN, or LOGIN
def test_the_password_goes_only_over_tls_after_starttls(certs, capabilities):
    password = "ascii-only-for-LOGIN" if capabilities == b"IMAP4rev1" else PASSWORD

    class Offers(Script):
        pass

    Offers.capabilities = capabilities
    with FakeImapServer(certs=certs["good"], tls="starttls", script=Offers(), user=USER, password=password) as server:
        run = auth_test("--server", f"localhost:{server.port}", "--starttls", "--cafile", str(certs["good"].ca),
                        password=password)

    assert run.code == 0, run.stderr
    assert server.credentials == [(USER, password, True)]
    assert_nothing_secret_in_plain_text(server)
