-- bench/load.py's wrk client. Run with one connection per thread (-t N -c N): each connection
-- logs in once (GET /login), then requests the path given after "--" with the session cookie,
-- and takes a new cookie from any Set-Cookie, as a browser does. A response that is not a 200
-- with the expected body (the second argument) counts as bad. done() prints one JSON line.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  path, expected = args[1], args[2]
  cookie, logged_in, bad, first_bad = nil, false, 0, ""
end

function request()
  if not logged_in then
    return wrk.format("GET", "/login")
  end
  return wrk.format("GET", path, {Cookie = cookie})
end

local function note(status, body)
  bad = bad + 1
  if first_bad == "" then
    first_bad = status .. " " .. string.sub(body or "", 1, 120):gsub("[^%w %.,:;/()-]", "?")
  end
end

function response(status, headers, body)
  local set = headers["Set-Cookie"] or headers["set-cookie"]
  if set then
    cookie = set:match("^[^;]*")
  end
  if not logged_in then
    logged_in = true
    if status ~= 200 or cookie == nil then
      note(status, body)
      cookie = ""
    end
  elseif status ~= 200 or body ~= expected then
    note(status, body)
  end
end

function done(summary, latency, requests)
  local total_bad, example = 0, ""
  for _, thread in ipairs(threads) do
    total_bad = total_bad + thread:get("bad")
    if example == "" then example = thread:get("first_bad") end
  end
  local e = summary.errors
  local quantiles = {}
  for i = 1, 999 do
    quantiles[i] = string.format("%d", latency:percentile(i / 10))
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "bad": %d, "first_bad": "%s",'
    .. ' "max_us": %d, "quantiles_us": [%s]}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    total_bad, example, latency.max, table.concat(quantiles, ",")))
end
