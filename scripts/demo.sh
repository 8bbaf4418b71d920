#!/usr/bin/env bash
# Set up, start a private demo Dovecot holding a sample Thai mailbox, and run
# a real backup of it with mailbackup — no network needed.  Then verify it and
# list what was saved.  The demo server stops when this script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PY=.venv/bin/python
DEMO_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mbdemo.XXXXXX")
chmod 755 "$DEMO_DIR"  # Dovecot's mail processes run unprivileged and must reach the homes inside
INFO="$DEMO_DIR/server.json"
$PY scripts/dovecot_server.py --dir "$DEMO_DIR/server" --demo >"$INFO" &
SERVER_PID=$!
# The server's files (its config, certificate and the demo mailbox) go when the demo ends; the backup stays.
trap 'kill $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null || true; rm -rf "$DEMO_DIR"' EXIT
for _ in $(seq 150); do
  [ -s "$INFO" ] && break
  kill -0 $SERVER_PID 2>/dev/null || { echo "demo server failed to start" >&2; exit 1; }
  sleep 0.2
done
PORT=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$INFO")
CAFILE=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["cafile"])' "$INFO")
DEST=${DEST:-./mail-backup}
export MAILBACKUP_PASSWORD='demo-รหัส'
echo "== mailbackup folders (demo server localhost:$PORT)"
.venv/bin/mailbackup folders demo@coj.go.th --server "localhost:$PORT" --cafile "$CAFILE"
echo "== mailbackup backup"
.venv/bin/mailbackup backup demo@coj.go.th --server "localhost:$PORT" --cafile "$CAFILE" --dest "$DEST" "$@"
echo "== second run (incremental: nothing new)"
.venv/bin/mailbackup backup demo@coj.go.th --server "localhost:$PORT" --cafile "$CAFILE" --dest "$DEST"
echo "== verify (server vs archive, message by message)"
.venv/bin/mailbackup verify demo@coj.go.th --server "localhost:$PORT" --cafile "$CAFILE" --dest "$DEST"
echo "== archive: $DEST/demo@coj.go.th"
find "$DEST/demo@coj.go.th/mail" -type d -name cur -printf "%h\n" | sort
