--[[
  wrk script of loadtest/wrkload.py: send pre-built raw HTTP requests, in turn, and log
  every response for the bench's checks (statuses, codes told twice).

  Environment (read by every thread's Lua state and by the main one):
    CODEPOOL_WRK_REQUESTS  file of requests, each as "<byte length>\n<raw request>"
    CODEPOOL_WRK_OUT       directory for the logs below
    CODEPOOL_WRK_THREADS   wrk's -t, so the threads take the requests in turn
    CODEPOOL_WRK_KEEP      "1": log the bodies of 200/201 answers too (httpload.KEPT)

  Writes OUT/responses-<thread>: per response "<status> <body length>\n<body>\n" (length
  0 and no body unless kept), and OUT/summary.txt: "requests <n>", "duration_us <n>",
  "errors <connect> <read> <write> <timeout>", then "latency <us> <count>" per value
  of wrk's latency histogram (so a Python reader can merge runs exactly).
]]

local out_dir = os.getenv("CODEPOOL_WRK_OUT")
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

local requests, n, at, step, log, keep = {}, 0, 0, 1, nil, false

function init(_)
  local file = assert(io.open(os.getenv("CODEPOOL_WRK_REQUESTS"), "rb"))
  local data = file:read("*a")
  file:close()
  local pos = 1
  while pos <= #data do
    local nl = string.find(data, "\n", pos, true)
    local len = tonumber(string.sub(data, pos, nl - 1))
    n = n + 1
    requests[n] = string.sub(data, nl + 1, nl + len)
    pos = nl + 1 + len
  end
  keep = os.getenv("CODEPOOL_WRK_KEEP") == "1"
  -- Thread t sends requests t, t + T, t + 2T, ...: between them, each in turn.
  at, step = id, tonumber(os.getenv("CODEPOOL_WRK_THREADS"))
  log = assert(io.open(out_dir .. "/responses-" .. id, "wb"))
  log:setvbuf("full", 65536)
end

function request()
  local r = requests[at % n + 1]
  at = at + step
  return r
end

function response(status, _, body)
  if keep and (status == 200 or status == 201) then
    log:write(status, " ", #body, "\n", body, "\n")
  else
    log:write(status, " 0\n\n")
  end
end

function done(summary, latency, _)
  local f = assert(io.open(out_dir .. "/summary.txt", "wb"))
  local e = summary.errors
  f:write("requests ", summary.requests, "\n", "duration_us ", summary.duration, "\n")
  f:write("errors ", e.connect, " ", e.read, " ", e.write, " ", e.timeout, "\n")
  for i = 1, #latency do
    local us, count = latency(i)
    f:write("latency ", us, " ", count, "\n")
  end
  f:close()
end
