#!/bin/bash
# `codepool codes upload` against `curl -T` of the same file to the same endpoint, in one
# run: a fresh `codepool serve` (1 worker, embedded Redis, snapshots off so that none
# lands inside a timing), then ROUNDS x (CLI, curl) uploads of the same LINES-code text
# file into fresh pools, alternating. Prints wall time and the client's own CPU time.
#
#   loadtest/cli_vs_curl.sh [LINES] [ROUNDS]     (defaults: 10000000 3)
#
# Run from the repository root with the virtualenv's python as PYTHON (default
# .venv/bin/python); the file and the server's data go to a temporary directory.
set -euo pipefail
LINES=${1:-10000000}
ROUNDS=${2:-3}
PYTHON=${PYTHON:-.venv/bin/python}
WORK=$(mktemp -d)
ROOT=bench-root-key-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
FILE=$WORK/codes.txt
"$PYTHON" - "$FILE" "$LINES" <<'EOF'
import sys
path, lines = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as out:
    for start in range(0, lines, 100_000):
        out.write(b"".join(b"BENCH-%010d\n" % i for i in range(start, min(lines, start + 100_000))))
EOF
echo "$LINES codes, $(stat -c %s "$FILE") bytes; $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
CODEPOOL_DATA_DIR=$WORK/data CODEPOOL_ROOT_KEY=$ROOT CODEPOOL_SNAPSHOT_INTERVAL=0 \
  "$PYTHON" -m codepool serve --port "$PORT" --workers 1 > "$WORK/serve.log" 2>&1 &
SERVE=$!
trap 'kill -TERM $SERVE; wait $SERVE || true; rm -rf "$WORK"' EXIT
until curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null; do sleep 0.2; done
export CODEPOOL_URL=http://127.0.0.1:$PORT CODEPOOL_API_KEY=$ROOT CODEPOOL_PROJECT=bench
codepool() { "$PYTHON" -m codepool "$@"; }
codepool projects create bench --id bench --field id > /dev/null
for round in $(seq "$ROUNDS"); do
  for tool in cli curl; do
    pool=$(codepool pools create "$tool-$round" --field id)
    TIMEFORMAT="$tool round $round: %R s wall, client CPU %U s user + %S s sys"
    if [ "$tool" = cli ]; then
      time codepool codes upload "$tool-$round" "$FILE" --field added > /dev/null
    else
      time curl -sS --fail-with-body -o /dev/null -X POST -T "$FILE" \
        -H 'Content-Type: text/plain' -H "Authorization: Bearer $ROOT" \
        "$CODEPOOL_URL/v1/projects/bench/pools/$pool/codes"
    fi
    [ "$(codepool pools show "$tool-$round" --field total)" = "$LINES" ]
  done
done
