-- wrk script for bench/apiserver.py. BENCH_MODE selects the request:
--   upsert   POST /internal-insert with a random id per request (default)
--   healthz  GET /healthz: the HTTP stack without the database
--   read     GET /internal-read?limit=100: the first page (ids ascending)
-- The API key comes from the environment (BENCH_API_KEY); done() prints one JSON line
-- that bench/apiserver.py parses (latencies in microseconds).

local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local mode = os.getenv("BENCH_MODE") or "upsert"

function init(args)
  math.randomseed(os.time() * 1000 + id)
  wrk.method = "POST"
  wrk.path = "/internal-insert"
  wrk.headers["content-type"] = "application/json"
  wrk.headers["x-api-key"] = os.getenv("BENCH_API_KEY")
end

function request()
  if mode == "healthz" then
    return wrk.format("GET", "/healthz", {}, nil)
  end
  if mode == "read" then
    return wrk.format("GET", "/internal-read?limit=100", {["x-api-key"] = wrk.headers["x-api-key"]}, nil)
  end
  local body = string.format('{"id": "wrk-%d-%d", "score": %.6f}',
    id, math.random(1, 1000000000), math.random())
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, errors.status, errors.connect, errors.read,
    errors.write, errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
