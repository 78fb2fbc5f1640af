-- wrk script for bench/gateway.py: GET BENCH_PATH with the API key (BENCH_API_KEY) and, when
-- BENCH_HEADER is "name: value", that header too; done() prints one JSON line that
-- bench/gateway.py parses (latencies in microseconds).

function init(args)
  wrk.method = "GET"
  wrk.path = os.getenv("BENCH_PATH")
  wrk.headers["x-api-key"] = os.getenv("BENCH_API_KEY")
  local header = os.getenv("BENCH_HEADER") or ""
  local name, value = header:match("^([^:]+):%s*(.*)$")
  if name then
    wrk.headers[name] = value
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, errors.status, errors.connect, errors.read,
    errors.write, errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
