#!/usr/bin/env bash
# The other IMAP servers of tests/test_compat.py (Cyrus, Courier, GNU mailutils
# imap4d, hoodiecrow), installed beside Dovecot on Debian.  Only one package
# providing imap-server can be installed, so the servers themselves are
# unpacked into .compat/ (git-ignored) by scripts/compat_servers.py; their
# libraries, which do not conflict, are installed here as ordinary packages.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
libraries=(
  # Cyrus IMAP 3.6 (cyrus-common, cyrus-imapd) and its sasldb logins
  libclamav12 libical3 libicu72 libjansson4 libldap-2.5-0 libpq5 libsqlite3-0 libwrap0 libxapian30
  libzephyr4 libpcre3 libsasl2-modules sasl2-bin
  # Courier-IMAP and courier-authlib
  libcourier-unicode4 libgamin0 libidn12 libgdbm6 libltdl7 util-linux
  # GNU mailutils imap4d
  libmailutils9 mailutils-common libgsasl18 libnsl2 libunistring2
)
missing=()
for package in "${libraries[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
# hoodiecrow-imap runs on node; a node from elsewhere (with its own npm) will do.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing the compat servers' libraries: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: Cyrus, Courier, mailutils imap4d and hoodiecrow in .compat/ (unpacked once)"
python3 scripts/compat_servers.py install
