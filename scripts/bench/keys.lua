-- GET /api/v1/me once with each key of a file (one key a line), then stop and touch a marker
-- file so the driving script can end wrk early (wrk itself always waits out -d).
-- Usage: wrk -t1 -s keys.lua URL -- KEYS_FILE DONE_MARKER   (one thread: state is per thread)
local keys, next_key, answered, total, marker = {}, 1, 0, 0, nil
local non200, statuses = 0, {}

function init(args)
  for line in io.lines(args[1]) do
    keys[#keys + 1] = line
  end
  total = #keys
  marker = args[2]
end

function request()
  -- Past the end, start again from the top (cache hits) for the few requests still in flight;
  -- not one key over and over, which would run into its rate limit.
  local key = keys[(next_key - 1) % total + 1]
  next_key = next_key + 1
  return wrk.format("GET", nil, { ["x-api-key"] = key })
end

function response(status)
  if status ~= 200 then
    non200 = non200 + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
  answered = answered + 1
  if answered == total then
    local f = io.open(marker, "w")
    local detail = ""
    for code, count in pairs(statuses) do
      detail = detail .. string.format(" %d:%d", code, count)
    end
    f:write(string.format("%d %d%s\n", answered, non200, detail))
    f:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format("BENCH %d %.3f %.1f %.3f %.3f %d %d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
