-- wrk script of bench/http.py (not for use on its own): one endpoint's load, spread over
-- one or several server processes, every answer's status counted.
--
-- Configuration comes from the environment, since wrk gives its arguments only to each
-- thread's init() and setup() runs before that, in wrk's main Lua state:
--   BENCH_TARGETS  a file of requests, one a line, fields separated by tabs:
--                  method, path, bearer token ("" for none), body ("" for none),
--                  keyed ("1": send a fresh Idempotency-Key with each request)
--   BENCH_PORTS    the servers' loopback ports, comma-separated; wrk's thread i is
--                  connected to port i mod N, so --threads must be a multiple of N
--   BENCH_KEY      a prefix, unique to this run, for the Idempotency-Keys
-- done() prints one line, RESULT {json}: wrk's summary and percentiles (microseconds), the
-- answers per HTTP status, and the requests answered per port.

local function split(line, sep)
  local fields, start = {}, 1
  while true do
    local at = string.find(line, sep, start, true)
    if not at then
      table.insert(fields, string.sub(line, start))
      return fields
    end
    table.insert(fields, string.sub(line, start, at - 1))
    start = at + 1
  end
end

local ports = split(os.getenv("BENCH_PORTS") or "", ",")
local threads = {}

-- main state, once per thread before it starts: its server, and its number (for the keys)
function setup(thread)
  table.insert(threads, thread)
  local port = ports[(#threads - 1) % #ports + 1]
  thread.addr = wrk.lookup("127.0.0.1", port)[1]
  thread:set("thread_no", #threads)
  thread:set("port", port)
end

-- per-thread state from here on
local targets = {}
local index = 0
local sent = 0
local prefix = os.getenv("BENCH_KEY") or "bench"
statuses = {}
answered = 0

function init(args)
  for line in io.lines(os.getenv("BENCH_TARGETS")) do
    if line ~= "" then
      local f = split(line, "\t")
      local headers = {}
      if f[3] ~= "" then headers["Authorization"] = "Bearer " .. f[3] end
      if f[4] ~= "" then headers["Content-Type"] = "application/json" end
      table.insert(targets, {method = f[1], path = f[2], headers = headers,
                             body = f[4] ~= "" and f[4] or nil, keyed = f[5] == "1"})
    end
  end
  -- threads start at different places in the cycle, so they do not move in lockstep
  index = (thread_no - 1) * 7 % #targets
end

function request()
  index = index % #targets + 1
  local t = targets[index]
  if t.keyed then
    sent = sent + 1
    t.headers["Idempotency-Key"] = prefix .. "-" .. thread_no .. "-" .. sent
  end
  return wrk.format(t.method, t.path, t.headers, t.body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  answered = answered + 1
end

-- main state again, after the run
function done(summary, latency, requests)
  local by_status, by_port = {}, {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + count
    end
    local port = thread:get("port")
    by_port[port] = (by_port[port] or 0) + thread:get("answered")
  end
  local function object(t)
    local parts = {}
    for k, v in pairs(t) do table.insert(parts, string.format('"%s": %d', k, v)) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  io.write(string.format(
    'RESULT {"requests": %d, "us": %d, "p50": %d, "p99": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "statuses": %s, "ports": %s}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    object(by_status), object(by_port)))
end
