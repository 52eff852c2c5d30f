#!/usr/bin/env bash
# Starts the service the README's way (`make run`: SQLite, embedded Rego, demo data) on a
# scratch database, mints a partner token and asks for a decision, then stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
workdir="$(mktemp -d)"
port="${SMOKE_PORT:-8765}"
export ACCORD_DATABASE_URL="sqlite:///${workdir}/smoke.db"
make run PORT="$port" >"$workdir/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; pkill -f "service serve --demo --host 127.0.0.1 --port $port" 2>/dev/null || true; rm -rf "$workdir"' EXIT

for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 1
done
curl -fsS "http://127.0.0.1:$port/readyz"
echo

token="$(.venv/bin/python -m service token --role partner --org civic-data-lab)"
agreement="$(curl -fsS -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$port/v1/agreements?status=active" \
    | .venv/bin/python -c 'import json,sys; items=json.load(sys.stdin)["items"]; print(next(a["id"] for a in items if a["latest"]["title"]=="Public health research extract"))')"
decision="$(curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "{\"agreement_id\": \"$agreement\", \"purpose\": \"research.public_health\", \"fields\": [\"postcode\", \"diagnosis_code\"], \"subjects\": [\"patient-0001\", \"patient-0020\"]}" \
    "http://127.0.0.1:$port/v1/decisions")"
echo "$decision"
echo "$decision" | .venv/bin/python -c '
import json, sys
d = json.load(sys.stdin)
assert [s["allow"] for s in d["subjects"]] == [True, False], d
print("smoke: decision path works (1 allowed, 1 withdrawn)")'
