-- wrk script: POST /runs/<ticket>/evidence, each request a different prepared run (one
-- ticket, one body: tickets are single-use). GPUQ_BENCH_EVIDENCE names a file of lines
-- "<api key>\t<ticket id>\t<JSON body>"; past its end requests are refused (409) and
-- counted as non-2xx.
wrk.method = "POST"
local runs = {}
for line in io.lines(os.getenv("GPUQ_BENCH_EVIDENCE")) do
  local key, ticket, body = string.match(line, "^([^\t]+)\t([^\t]+)\t(.+)$")
  runs[#runs + 1] = {key = key, path = "/runs/" .. ticket .. "/evidence", body = body}
end
local counter = 0

request = function()
  counter = counter + 1
  local run = runs[1 + (counter - 1) % #runs]
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. run.key}
  return wrk.format(nil, run.path, headers, run.body)
end
