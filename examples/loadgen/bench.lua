-- The workload of loadgen -compare's default front, run by wrk:
--
--   wrk -t2 -c64 -d15s -s bench.lua http://FRONT -- USERS OUT WRITE_PERCENT THREADS
--
-- USERS is the file the harness wrote after logging the users in, one line
-- per user: "name acks last cookie", where acks counts the POST /visit the
-- user had acknowledged so far, last is the count the last one answered and
-- cookie the Cookie header to send. Thread i of THREADS (wrk's -t) takes
-- every THREADS-th user. Each thread sends its users' requests round
-- robin, skipping a user whose previous request has not been answered, so
-- that a user has one request in flight at a time, as a browser does.
-- WRITE_PERCENT of every hundred requests, spread evenly, are POST /visit,
-- the others GET /me.
--
-- Each answer names its user. A 2xx POST /visit counts as acknowledged; a
-- GET /me that answers fewer visits than the user's last acknowledged
-- POST /visit did, or a POST /visit that answers no more than it, is a
-- stale read. A Set-Cookie replaces the user's cookie. done() writes OUT:
-- the totals, the latency distribution (microseconds and counts) and every
-- user's line, for the next run and the final check of the harness.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file, nthreads = args[1], tonumber(args[4])
  out_file, write_percent = args[2], tonumber(args[3])
  users, acks, last, cookie, kind, inflight = {}, {}, {}, {}, {}, {}
  stale, unknown, abandoned = 0, 0, 0
  local i = 0
  for line in io.lines(file) do
    local name, a, l, c = line:match("^(%S+) (%d+) (%d+) (.*)$")
    if name then
      if i % nthreads == id then
        table.insert(users, name)
        acks[name], last[name], cookie[name] = tonumber(a), tonumber(l), c
      end
      i = i + 1
    end
  end
  pos, seq = 0, 0
end

function request()
  local n = #users
  local u
  for _ = 1, n do
    pos = pos % n + 1
    local cand = users[pos]
    local s = inflight[cand]
    -- A user whose request got no answer naming it (a socket error, an
    -- error page) is taken up again once every other user has been asked
    -- four times over.
    if s == nil or seq - s > 4 * n then
      if s ~= nil then
        abandoned = abandoned + 1
      end
      u = cand
      break
    end
  end
  if u == nil then -- every user waits: cannot happen with users >= connections
    u = users[pos]
  end
  seq = seq + 1
  inflight[u] = seq
  local headers = { ["Cookie"] = cookie[u] }
  if (seq * write_percent) % 100 < write_percent then
    kind[u] = "visit"
    return wrk.format("POST", "/visit", headers, "")
  end
  kind[u] = "me"
  return wrk.format("GET", "/me", headers)
end

function response(status, headers, body)
  local u = body:match('"user":"([^"]*)"')
  if u == nil or acks[u] == nil then
    unknown = unknown + 1
    return
  end
  inflight[u] = nil
  if status < 200 or status > 299 then
    return
  end
  local set = headers["Set-Cookie"]
  if set ~= nil then
    cookie[u] = set:match("^([^;]*)")
  end
  local visits = tonumber(body:match('"visits":(%d+)'))
  if visits == nil then
    unknown = unknown + 1
  elseif kind[u] == "visit" then
    if visits <= last[u] then
      stale = stale + 1
    end
    acks[u] = acks[u] + 1
    last[u] = math.max(last[u], visits)
  elseif visits < last[u] then
    stale = stale + 1
  end
end

function done(summary, latency, requests)
  local f = assert(io.open(threads[1]:get("out_file"), "w"))
  f:write(string.format("requests %d\n", summary.requests))
  f:write(string.format("duration_us %d\n", summary.duration))
  local e = summary.errors
  f:write(string.format("errors %d %d %d %d %d\n", e.connect, e.read, e.write, e.status, e.timeout))
  local st, un, ab = 0, 0, 0
  for _, t in ipairs(threads) do
    st = st + t:get("stale")
    un = un + t:get("unknown")
    ab = ab + t:get("abandoned")
  end
  f:write(string.format("stale %d\nunknown %d\nabandoned %d\n", st, un, ab))
  for i = 1, #latency do
    local v, c = latency(i)
    f:write(string.format("latency %d %d\n", v, c))
  end
  for _, t in ipairs(threads) do
    local us, a, l, c = t:get("users"), t:get("acks"), t:get("last"), t:get("cookie")
    for _, u in ipairs(us) do
      f:write(string.format("user %s %d %d %s\n", u, a[u], l[u], c[u]))
    end
  end
  f:close()
end
