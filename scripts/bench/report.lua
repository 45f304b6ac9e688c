-- Prints one machine-readable line at the end of a wrk run:
--   BENCH <requests> <seconds> <requests/s> <p50 ms> <p99 ms> <non-2xx> <socket errors>
function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format("BENCH %d %.3f %.1f %.3f %.3f %d %d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
