-- wrk script for the benchmark: pre-built requests (fixed path list, or random byte ranges of a file),
-- and an optional exact request count. wrk itself only runs for a duration; in counted mode this script
-- notes the time at which `count` responses have completed (LuaJIT ffi, CLOCK_MONOTONIC), stops the
-- thread and tells the parent on stderr, which then interrupts wrk. Run with one thread (-t1).
-- Arguments after "--": count=N conns=C [method=M] [body=FILE] [paths=FILE] [header=Name:Value]
--                       [range=SIZE:CHUNK:ALIGN] [seed=N]
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } uod_timespec;
  int clock_gettime(int clock, uod_timespec *ts);
]]
local ts = ffi.new("uod_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

local function read_file(name)
  local f = assert(io.open(name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local requests = {}
local count, conns = 0, 1
local issued, t0 = 0, nil
elapsed_us = -1

function init(args)
  local opt = { headers = {} }
  for _, a in ipairs(args) do
    local k, v = a:match("^(%w+)=(.*)$")
    if k == "header" then
      local hk, hv = v:match("^([^:]+):(.*)$")
      opt.headers[hk] = hv
    elseif k then
      opt[k] = v
    end
  end
  count = tonumber(opt.count or "0")
  conns = tonumber(opt.conns or "1")
  local method = opt.method or "GET"
  local body = opt.body and read_file(opt.body) or nil
  math.randomseed(tonumber(opt.seed or "1"))
  if opt.range then
    local size, chunk, align = opt.range:match("^(%d+):(%d+):(%d+)$")
    size, chunk, align = tonumber(size), tonumber(chunk), tonumber(align)
    local slots = math.floor((size - chunk) / align)
    for i = 1, 8192 do
      local first = math.random(0, slots) * align
      local h = { Range = "bytes=" .. first .. "-" .. (first + chunk - 1) }
      for hk, hv in pairs(opt.headers) do h[hk] = hv end
      requests[i] = wrk.format(method, nil, h, body)
    end
  elseif opt.paths then
    for p in read_file(opt.paths):gmatch("[^\n]+") do
      requests[#requests + 1] = wrk.format(method, p, opt.headers, body)
    end
  else
    requests[1] = wrk.format(method, nil, opt.headers, body)
  end
end

function request()
  issued = issued + 1
  if issued == 1 then t0 = now_us() end
  -- Every call after the first `conns` follows one completed response.
  if count > 0 and issued == count + conns then
    elapsed_us = now_us() - t0
    io.stderr:write("UOD_WRK_DONE\n")
    io.stderr:flush()
    wrk.thread:stop()
  end
  return requests[(issued - 1) % #requests + 1]
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency)
  local elapsed = -1
  for _, t in ipairs(threads) do
    local e = t:get("elapsed_us")
    if e and e > elapsed then elapsed = e end
  end
  local e = summary.errors
  io.write(string.format(
    'UOD_WRK_RESULT {"counted_elapsed_us":%d,"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    elapsed, summary.duration, summary.requests, summary.bytes,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
