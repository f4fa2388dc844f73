-- wrk: each request carries the next token of the file BENCH_TOKENS (one per line), in
-- `Authorization`, or with BENCH_CONNECT (a path) as a Connect JSON body POSTed there.
-- BENCH_DELAY_MS: a pause before each request on a connection, to hold a rate below the peak.
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  tokens[#tokens + 1] = line
end
local connect = os.getenv("BENCH_CONNECT")
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local index = 0

function request()
  index = index % #tokens + 1
  if connect then
    local body = '{"token":"' .. tokens[index] .. '"}'
    return wrk.format("POST", connect, { ["Content-Type"] = "application/json" }, body)
  end
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[index] })
end

function delay()
  return pause
end
