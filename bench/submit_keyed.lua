-- wrk script: POST /submit_qualification as participants, the API keys taken in turn from
-- GPUQ_BENCH_KEYS (comma-separated), with the same varied bodies as submit.lua.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local keys = {}
for key in string.gmatch(os.getenv("GPUQ_BENCH_KEYS") or "", "[^,]+") do
  keys[#keys + 1] = key
end
local counter = 0

request = function()
  counter = counter + 1
  local body = string.format(
    '{"gpu_utilization": %d.%d, "memory_usage": %d, "power_efficiency": %d.5, "completion_time": %d.25, "accuracy": %d}',
    50 + counter % 50, counter % 10, 40 + counter % 60, 30 + counter % 70, 1 + counter % 89, 60 + counter % 40)
  -- wrk.format takes these headers instead of wrk.headers, so both go in.
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. keys[1 + counter % #keys]}
  return wrk.format(nil, "/submit_qualification", headers, body)
end
