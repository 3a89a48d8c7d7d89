-- wrk script of bench/run_bench.py, used when ../shared/bench/tasks.lua is not
-- beside the checkout: GET $BENCH_PATH (default /api/tasks?limit=50) with a
-- Cookie header that alternates between $BENCH_COOKIE_A and $BENCH_COOKIE_B,
-- so each of the two logged-in users (two tenants) gets half the requests.

local prepared = {}
local count = 0

function init(args)
   local path = os.getenv("BENCH_PATH")
   if path == nil or path == "" then
      path = "/api/tasks?limit=50"
   end
   for _, name in ipairs({ "BENCH_COOKIE_A", "BENCH_COOKIE_B" }) do
      local value = os.getenv(name)
      if value == nil or value == "" then
         error("alternate_cookies.lua: " .. name .. " is not set")
      end
      table.insert(prepared, wrk.format("GET", path, { ["Cookie"] = value }))
   end
end

function request()
   count = count + 1
   return prepared[(count % #prepared) + 1]
end
