-- wrk script of scripts/bench-http with SESSIONS > 1: every request carries one of many
-- session cookies instead of one fixed Cookie header.
--
--   wrk -s scripts/bench-http.lua <url> -- <threads>
--
-- BENCH_TOKENS   the file of session ids the server wrote, one a line (required)
-- DISTRIBUTION   uniform (default): thread i of T starts at token i*N/T (+ BENCH_OFFSET) and
--                walks the list in order, wrapping, so the threads together touch every
--                session evenly;
--                zipf: token k (1-based) is drawn with probability (1/k) / H(N) (exponent
--                1.0), from a CDF table built in init, by binary search, with math.random
--                seeded per thread (and BENCH_OFFSET): every scenario sees the same sequence
-- BENCH_OFFSET   how far on every thread starts (default 0): bench-http gives the measured run
--                the warm-up's requests per thread, so it goes on where the warm-up stopped
--                instead of replaying the sessions the warm-up has just touched (and cached)
--
-- The request text is wrk's own (wrk.format, so the Host header and the rest are what wrk
-- sends without a script) with only the cookie value spliced in per request.

local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
end

local MARK = "@@BENCH_TOKEN@@"

function init(args)
   local path = os.getenv("BENCH_TOKENS")
   if not path or path == "" then
      error("bench-http.lua: BENCH_TOKENS is not set")
   end
   tokens = {}
   for line in io.lines(path) do
      if #line > 0 then
         tokens[#tokens + 1] = line
      end
   end
   n = #tokens
   if n == 0 then
      error("bench-http.lua: no tokens in " .. path)
   end
   local threads = tonumber(args[1]) or 1
   local offset = tonumber(os.getenv("BENCH_OFFSET") or "") or 0
   local template = wrk.format(nil, nil, { ["Cookie"] = "sessionId=" .. MARK })
   local at = template:find(MARK, 1, true)
   prefix = template:sub(1, at - 1)
   suffix = template:sub(at + #MARK)

   distribution = os.getenv("DISTRIBUTION") or "uniform"
   if distribution == "zipf" then
      cdf = {}
      local sum = 0
      for k = 1, n do
         sum = sum + 1 / k
         cdf[k] = sum
      end
      for k = 1, n do
         cdf[k] = cdf[k] / sum
      end
      cdf[n] = 1.0
      math.randomseed(7919 * (id + 1) + offset)
      request = zipf_request
   elseif distribution == "uniform" then
      -- 0-based position of the next token
      nxt = (math.floor(id * n / threads) + offset) % n
      request = uniform_request
   else
      error("bench-http.lua: DISTRIBUTION must be uniform or zipf, not " .. distribution)
   end
end

function uniform_request()
   local token = tokens[nxt + 1]
   nxt = nxt + 1
   if nxt >= n then
      nxt = 0
   end
   return prefix .. token .. suffix
end

function zipf_request()
   local r = math.random()
   local lo, hi = 1, n
   while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] < r then
         lo = mid + 1
      else
         hi = mid
      end
   end
   return prefix .. tokens[lo] .. suffix
end

-- wrk looks up `request` before init runs to decide whether requests are static: define it
-- here, init points it at the distribution's own.
function request()
   return uniform_request()
end
