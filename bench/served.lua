-- wrk script of bench/served.py (Debian's wrk 4.1, LuaJIT). Arguments after the URL and "--":
--
--   <method> static [<body file>]     the same request every time (no request() function, so wrk's fast path)
--   <method> unique <template> <tag>  a new body every time: the template file's @ID@ becomes <tag>-<thread>-<n>
--   <method> list <directory>         thread i sends the lines of <directory>/<i>.txt in order, each exactly
--                                     once; when its list runs out it stops (wrk.thread:stop()) and sends nothing
--
-- Every mode counts the answers by status and keeps the first body of each non-2xx status. done() prints one
-- "SPCBENCH key=value ..." line and one "SPCBENCH_SAMPLE <status> <body>" line per non-2xx status, for served.py.

local threads = {}
local thread_count = 0

function setup(thread)
   thread:set("id", thread_count)
   table.insert(threads, thread)
   thread_count = thread_count + 1
end

-- Per-thread state (each wrk thread has its own Lua state); done() reads it with thread:get().
statuses = {}
samples = {}
sent = 0
available = -1
ran_out = false

local function read_file(path)
   local f = assert(io.open(path, "rb"))
   local data = f:read("*a")
   f:close()
   return data
end

function init(args)
   wrk.method = args[1]
   local mode = args[2]
   if mode == "static" then
      if args[3] then
         wrk.body = read_file(args[3])
         wrk.headers["Content-Type"] = "application/json"
      end
   elseif mode == "unique" then
      local head, tail = read_file(args[3]):match("^(.-)@ID@(.*)$")
      assert(head, "the template has no @ID@")
      wrk.headers["Content-Type"] = "application/json"
      local prefix = args[4] .. "-" .. id .. "-"
      request = function()
         sent = sent + 1
         return wrk.format(nil, nil, nil, head .. prefix .. sent .. tail)
      end
   elseif mode == "list" then
      wrk.headers["Content-Type"] = "application/json"
      local requests = {}
      for line in io.lines(args[3] .. "/" .. id .. ".txt") do
         if #line > 0 then
            requests[#requests + 1] = wrk.format(nil, nil, nil, line)
         end
      end
      available = #requests
      request = function()
         if sent >= available then
            -- Out of bodies: stop this thread's loop. The loop ends after the current round of events, so
            -- answer with an empty request, which writes nothing: no body is ever sent twice.
            ran_out = true
            wrk.thread:stop()
            return ""
         end
         sent = sent + 1
         local r = requests[sent]
         requests[sent] = nil
         return r
      end
   else
      error("unknown mode " .. tostring(mode))
   end
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if (status < 200 or status > 299) and samples[status] == nil then
      samples[status] = body
   end
end

function done(summary, latency, requests)
   local counts, first, out_of_bodies, total_sent, total_available = {}, {}, 0, 0, 0
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses")) do
         counts[status] = (counts[status] or 0) + n
      end
      for status, body in pairs(thread:get("samples")) do
         first[status] = first[status] or body
      end
      if thread:get("ran_out") then
         out_of_bodies = out_of_bodies + 1
      end
      total_sent = total_sent + thread:get("sent")
      total_available = total_available + thread:get("available")
   end
   local parts = {}
   for status, n in pairs(counts) do
      parts[#parts + 1] = status .. ":" .. n
   end
   local e = summary.errors
   io.write(string.format(
      "SPCBENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d statuses=%s "
      .. "connect=%d read=%d write=%d timeout=%d threads=%d ran_out_threads=%d sent=%d available=%d\n",
      summary.requests, summary.duration, math.floor(latency:percentile(50)), math.floor(latency:percentile(90)),
      math.floor(latency:percentile(99)), math.floor(latency.max), table.concat(parts, ","),
      e.connect, e.read, e.write, e.timeout, thread_count, out_of_bodies, total_sent, total_available))
   for status, body in pairs(first) do
      io.write("SPCBENCH_SAMPLE " .. status .. " " .. (body:gsub("[\r\n]+", " ")):sub(1, 400) .. "\n")
   end
end
