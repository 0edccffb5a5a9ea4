-- wrk script: each connection (one per wrk thread: run with -t N -c N) initializes an MCP session,
-- sends notifications/initialized, then calls a tool over and over on that session.
--
-- Fixed rate without wrk2's -R: Debian's wrk links LuaJIT, so the script reads CLOCK_MONOTONIC
-- through the FFI and its delay() hook holds each connection to a schedule of RATE/N requests per
-- second (start + k * interval). RATE=0 (default) sends as fast as responses come back (max
-- throughput). Latency is wrk's own: from sending a request to its response.
--
-- Environment: RATE (total req/s over all connections), CONNECTIONS (= wrk -c), TOOL (default
-- test_simple_text), TOKEN (optional bearer token).
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } mcpbench_timespec;
  int clock_gettime(int clk_id, mcpbench_timespec *tp);
]]
local ts = ffi.new("mcpbench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local rate = tonumber(os.getenv("RATE") or "0")
local connections = tonumber(os.getenv("CONNECTIONS") or "1")
local tool = os.getenv("TOOL") or "test_simple_text"
local token = os.getenv("TOKEN")
local interval = rate > 0 and (1000 * connections / rate) or 0

local state = "init"
local session = nil
local start = nil
local sent = 0
local id = 1

local function headers()
  local h = {
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json, text/event-stream",
    ["MCP-Protocol-Version"] = "2025-06-18",
  }
  if session then h["Mcp-Session-Id"] = session end
  if token then h["Authorization"] = "Bearer " .. token end
  return h
end

function request()
  if state == "init" then
    return wrk.format("POST", nil, headers(),
      '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"wrk","version":"1"}}}')
  elseif state == "notify" then
    return wrk.format("POST", nil, headers(), '{"jsonrpc":"2.0","method":"notifications/initialized"}')
  end
  id = id + 1
  return wrk.format("POST", nil, headers(),
    '{"jsonrpc":"2.0","id":' .. id .. ',"method":"tools/call","params":{"name":"' .. tool .. '","arguments":{}}}')
end

function response(status, hdrs, body)
  if state == "init" then
    for k, v in pairs(hdrs) do
      if string.lower(k) == "mcp-session-id" then session = v end
    end
    state = "notify"
  elseif state == "notify" then
    state = "call"
  end
end

function delay()
  if interval <= 0 or state ~= "call" then return 0 end
  if start == nil then start = now_ms() end
  sent = sent + 1
  local d = start + sent * interval - now_ms()
  if d > 0 then return d end
  return 0
end
