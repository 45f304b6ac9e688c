-- Prints one machine-readable line at the end of a wrk run:
--   BENCH <requests> <seconds> <requests/s> <p50 ms> <p99 ms> <non-2xx> <socket errors>
-- and, when BENCH_QUANTILES names a file, writes 1000 latency quantiles (ms) to it, each standing
-- for 0.1% of the requests, so that runs can be pooled into one distribution afterwards.
-- (done() runs in wrk's main Lua state, which never sees `-- args`; hence the variable.)
function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format("BENCH %d %.3f %.1f %.3f %.3f %d %d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
  local path = os.getenv("BENCH_QUANTILES")
  if path and path ~= "" then
    local f = assert(io.open(path, "w"))
    for i = 1, 1000 do
      f:write(string.format("%.3f\n", latency:percentile((i - 0.5) / 10) / 1000))
    end
    f:close()
  end
end
