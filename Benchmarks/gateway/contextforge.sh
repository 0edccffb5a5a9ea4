#!/usr/bin/env bash
# Starts ContextForge (PyPI mcp-contextforge-gateway, installed in the venv given as $1) on port $2,
# registers the MCP server at $3 with it, puts the server's `test_simple_text` tool in a virtual
# server, and prints `URL TOKEN` for mcp.lua (the tool is exposed as everything-test-simple-text).
# Its own log and SQLite database go to $4. Run by run.sh --contextforge VENV.
set -euo pipefail
venv=$1; port=$2; upstream=$3; work=$4
export DATABASE_URL=sqlite:///$work/contextforge.db JWT_SECRET_KEY=bench-only-secret-key-0123456789abcdef \
  BASIC_AUTH_USER=admin BASIC_AUTH_PASSWORD=bench-only AUTH_REQUIRED=false MCPGATEWAY_UI_ENABLED=false \
  MCPGATEWAY_ADMIN_API_ENABLED=true PLATFORM_ADMIN_EMAIL=admin@example.com PLATFORM_ADMIN_PASSWORD=bench-only-123! \
  LOG_LEVEL=ERROR SSRF_PROTECTION_ENABLED=false
"$venv/bin/mcpgateway" --host 127.0.0.1 --port "$port" > "$work/contextforge.log" 2>&1 &
echo $! > "$work/contextforge.pid"
for _ in $(seq 1 120); do curl -sf "127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
token=$("$venv/bin/python" -m mcpgateway.utils.create_jwt_token --username admin@example.com --exp 120 --secret "$JWT_SECRET_KEY" | tail -1)
auth=(-H "Authorization: Bearer $token" -H 'content-type: application/json')
curl -sf -X POST "127.0.0.1:$port/gateways" "${auth[@]}" -d "{\"name\":\"everything\",\"url\":\"$upstream\",\"transport\":\"STREAMABLEHTTP\"}" >/dev/null
tool=$(curl -sf "127.0.0.1:$port/tools" "${auth[@]}" | python3 -c "import json,sys; d=json.load(sys.stdin); d=d if isinstance(d,list) else d.get('items',d); print([t['id'] for t in d if t['name']=='everything-test-simple-text'][0])")
server=$(curl -sf -X POST "127.0.0.1:$port/servers" "${auth[@]}" -d "{\"server\":{\"name\":\"bench\",\"associated_tools\":[\"$tool\"]}}" \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
echo "http://127.0.0.1:$port/servers/$server/mcp $token"
