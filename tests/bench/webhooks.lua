-- wrk script for the ingress bench: POST /webhooks with ~1 KB bodies and a bearer token.
--
--   wrk -t1 -c128 -d15s -s webhooks.lua URL -- TEMPLATES_FILE NONCE TOKEN
--
-- TEMPLATES_FILE holds one JSON body per line with the placeholder @ID@ (tests/bench/bodies.py);
-- every request takes the next template and puts NONCE-<thread>-<counter> in place of @ID@, so
-- every request carries unique event ids and the bridge's de-duplication never short-circuits.
-- done() prints one line "BENCH_JSON {...}" that the harness parses.

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

function init(args)
  local path, nonce, token = args[1], args[2], args[3]
  templates = {}
  for line in io.lines(path) do
    if #line > 0 then
      local parts, s = {}, 1
      while true do
        local i, j = string.find(line, "@ID@", s, true)
        if not i then
          table.insert(parts, string.sub(line, s))
          break
        end
        table.insert(parts, string.sub(line, s, i - 1))
        s = j + 1
      end
      table.insert(templates, parts)
    end
  end
  count = #templates
  n = 0
  prefix = nonce .. "-" .. tid .. "-"
  headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }
end

function request()
  n = n + 1
  local body = table.concat(templates[(n % count) + 1], prefix .. n)
  return wrk.format("POST", "/webhooks", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,'
      .. '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,'
      .. '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
