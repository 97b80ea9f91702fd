-- Refresh-token chains. Every answer carries the successor of the token just
-- used; it is queued and sent next, so no token is ever presented twice (which
-- would revoke its session). Each thread takes its own share of the starting
-- tokens in TOKENS_FILE: one per connection, plus one that wrk consumes with
-- the call to request() it makes before any connection sends.
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

function init(args)
  queue = {}
  local threads = tonumber(os.getenv("THREADS") or "2")
  local i = 0
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    if i % threads == tid then
      table.insert(queue, line)
    end
    i = i + 1
  end
end

function request()
  local token = table.remove(queue, 1) or "chain-lost"
  return wrk.format("POST", nil, { ["content-type"] = "application/json" },
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  local token = body:match('"refresh_token":"([^"]+)"')
  if token then
    table.insert(queue, token)
  end
end
