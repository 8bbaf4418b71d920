#!/usr/bin/env bash
# Install what mailbackup, its demo and its tests need on Debian/Ubuntu:
# Dovecot (the real IMAP server the tests and the demo run), the other servers
# of the compatibility suite (scripts/setup_compat.sh), then a virtual
# environment in .venv with mailbackup and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-imapd)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
# The HTML report test renders the page in headless Chromium; Thai needs a Thai font.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
fc-list :lang=th 2>/dev/null | grep -q . || need+=(fonts-thai-tlwg)
# The print test reads the PDF Chromium prints with poppler's pdfinfo and pdftotext.
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)
# tests/test_i18n.py checks the Thai catalogue with GNU gettext's msgfmt.
command -v msgfmt >/dev/null 2>&1 || need+=(gettext)
for extra in "$@"; do need+=("$extra"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian starts a system-wide Dovecot on install; ours run privately, so stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet dovecot 2>/dev/null; then
  $SUDO systemctl stop dovecot || true
fi

# Cyrus, Courier, mailutils imap4d and hoodiecrow for tests/test_compat.py, unpacked into .compat/.
scripts/setup_compat.sh

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating the virtual environment .venv"
  python3 -m venv .venv
fi
echo "setup: installing mailbackup and its test tools into .venv (about half a minute)"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
echo "setup: done (.venv/bin/mailbackup)"
