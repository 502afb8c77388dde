-- wrk script of the dcihub benchmarks: POSTs request bodies read from a file (one per line) in
-- turn, replacing the placeholder in each with a token unique to the request, and prints a
-- one-line JSON summary at the end.
--   wrk -s cycle.lua URL -- BODIES_FILE HEADERS_FILE TAG
local PLACEHOLDER = "@@UNIQUE@@"

local threads_started = 0

function setup(thread)
   threads_started = threads_started + 1
   thread:set("thread_id", threads_started)
end

local bodies = {}
local index = 0
local sent = 0
local prefix = ""

local function split(line)
   local pieces, start = {}, 1
   while true do
      local i, j = string.find(line, PLACEHOLDER, start, true)
      if not i then
         table.insert(pieces, string.sub(line, start))
         return pieces
      end
      table.insert(pieces, string.sub(line, start, i - 1))
      start = j + 1
   end
end

function init(args)
   local bodies_path, headers_path, tag = args[1], args[2], args[3]
   for line in io.lines(headers_path) do
      local name, value = string.match(line, "^([^:]+):%s*(.*)$")
      if name then
         wrk.headers[name] = value
      end
   end
   for line in io.lines(bodies_path) do
      if #line > 0 then
         table.insert(bodies, split(line))
      end
   end
   if #bodies == 0 then
      error("no request bodies in " .. bodies_path)
   end
   prefix = tag .. "-" .. tostring(thread_id) .. "-"
end

function request()
   index = index % #bodies + 1
   sent = sent + 1
   return wrk.format("POST", nil, nil, table.concat(bodies[index], prefix .. sent))
end

function done(summary, latency, requests)
   local e = summary.errors
   local points = {}
   for _, q in ipairs({50, 75, 90, 99, 99.9}) do
      table.insert(points, string.format('"%g": %d', q, math.floor(latency:percentile(q))))
   end
   io.write(string.format(
      '\nWRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"mean": %.1f, "max": %d, "percentiles": {%s}}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max, table.concat(points, ", ")))
end
