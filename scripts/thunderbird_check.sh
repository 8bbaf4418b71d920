#!/usr/bin/env bash
# Look at an export in a real Thunderbird: read/unread, stars and tags as on the server.
#
#   scripts/thunderbird_check.sh [OUT.png]
#
# Starts the demo server (scripts/dovecot_server.py --demo: some messages read,
# some starred), backs it up, exports it with `mailbackup export --thunderbird`,
# opens the export as Thunderbird's Local Folders in a private profile on a
# virtual screen (Xvfb), selects the Inbox and saves a screenshot (default
# thunderbird-check.png). Read messages show in normal type, unread in bold,
# starred with a star. Installs Debian's thunderbird, xvfb, xdotool and
# imagemagick when missing (root or sudo). Not part of CI: Thunderbird is large.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-thunderbird-check.png}")
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
for tool in thunderbird:thunderbird Xvfb:xvfb xdotool:xdotool import:imagemagick; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || scripts/setup.sh
WORK=$(mktemp -d /tmp/mbtb.XXXXXX)
chmod 755 "$WORK"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

.venv/bin/python scripts/dovecot_server.py --dir "$WORK/server" --demo >"$WORK/server.json" &
pids+=($!)
for _ in $(seq 150); do [ -s "$WORK/server.json" ] && break; sleep 0.2; done
read -r PORT CAFILE < <(.venv/bin/python -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["port"], d["cafile"])' "$WORK/server.json")
export MAILBACKUP_PASSWORD='demo-รหัส'
.venv/bin/mailbackup backup demo@coj.go.th --server "localhost:$PORT" --cafile "$CAFILE" --dest "$WORK/backup" --no-verify --quiet
.venv/bin/mailbackup export demo@coj.go.th --dest "$WORK/backup" --thunderbird "$WORK/Local Folders" --quiet

PROFILE="$WORK/profile"
mkdir -p "$PROFILE"
cat >"$PROFILE/prefs.js" <<PREFS
user_pref("mail.accountmanager.accounts", "account1");
user_pref("mail.accountmanager.localfoldersserver", "server1");
user_pref("mail.account.account1.server", "server1");
user_pref("mail.server.server1.type", "none");
user_pref("mail.server.server1.hostname", "Local Folders");
user_pref("mail.server.server1.name", "Local Folders");
user_pref("mail.server.server1.userName", "nobody");
user_pref("mail.server.server1.directory", "$WORK/Local Folders");
user_pref("mail.provider.enabled", false);
user_pref("mailnews.start_page.enabled", false);
user_pref("mail.shell.checkDefaultClient", false);
user_pref("mail.spotlight.firstRunDone", true);
user_pref("mail.winsearch.firstRunDone", true);
user_pref("app.update.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("mail.rights.version", 1);
PREFS
DISPLAY_NUMBER=$((90 + RANDOM % 100))
Xvfb ":$DISPLAY_NUMBER" -screen 0 1400x900x24 -nolisten tcp &
pids+=($!)
export DISPLAY=":$DISPLAY_NUMBER"
sleep 1
MOZ_DISABLE_AUTO_SAFE_MODE=1 thunderbird --profile "$PROFILE" --no-remote \
  -mail "mailbox://nobody@Local%20Folders/Inbox" >"$WORK/thunderbird.log" 2>&1 &
pids+=($!)
sleep "${WAIT:-25}"
# Open the folder tree and select its first folder (Inbox) from the keyboard.
xdotool mousemove 140 112 click 1
sleep 1
xdotool key Right
sleep 1
xdotool key Down
sleep 5
import -window root "$OUT"
echo "screenshot: $OUT"
