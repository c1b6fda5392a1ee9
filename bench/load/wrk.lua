-- wrk script of the load run (bench/load): each request goes to one of the
-- sessions at random, as POST /write with probability MCLOAD_WRITE_PCT%,
-- otherwise as GET /read. Every request is formatted once, in init, so the
-- per-request work in Lua is two random numbers and a table lookup.
--
-- Environment: MCLOAD_COOKIES, a file with one Cookie header value per
-- session (an empty line sends no cookie); MCLOAD_WRITE_PCT; MCLOAD_SEED.

local reads, writes, n, writePct = {}, {}, 0, 10

function init(args)
   writePct = tonumber(os.getenv("MCLOAD_WRITE_PCT")) or 10
   for line in io.lines(os.getenv("MCLOAD_COOKIES")) do
      n = n + 1
      local rh, wh = {}, {}
      if line ~= "" then
         rh["Cookie"] = line
         wh["Cookie"] = line
      end
      reads[n] = wrk.format("GET", "/read", rh)
      writes[n] = wrk.format("POST", "/write", wh, "")
   end
   if n == 0 then
      error("no sessions in " .. tostring(os.getenv("MCLOAD_COOKIES")))
   end
   math.randomseed(tonumber(os.getenv("MCLOAD_SEED")) or 1)
end

function request()
   local i = math.random(n)
   if math.random(100) <= writePct then
      return writes[i]
   end
   return reads[i]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "MCLOAD requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d max_us=%d\n",
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max))
end
