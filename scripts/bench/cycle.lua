-- GET with a different key each request, cycling through the keys of the file named by
-- BENCH_KEYS_FILE (one key a line), so that no two requests in flight share a digest: with the
-- cache off, each request is a lookup of its own, which concurrent requests cannot share.
-- Reports like report.lua (loaded from the same directory).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local keys, next_key = {}, 0

function init(args)
  for line in io.lines(os.getenv("BENCH_KEYS_FILE")) do
    keys[#keys + 1] = line
  end
  -- Each connection's thread starts at a different place (one thread in practice).
  next_key = math.random(#keys) - 1
end

function request()
  next_key = next_key % #keys + 1
  return wrk.format("GET", nil, { ["x-api-key"] = keys[next_key] })
end
