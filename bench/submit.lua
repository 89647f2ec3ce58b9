-- wrk script: POST /submit_qualification with varied valid bodies; as participants when
-- GPUQ_BENCH_KEYS holds API keys (comma-separated, taken in turn), else anonymously.
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
  if #keys == 0 then
    return wrk.format(nil, "/submit_qualification", nil, body)
  end
  -- wrk.format takes these headers instead of wrk.headers, so both go in.
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. keys[1 + counter % #keys]}
  return wrk.format(nil, "/submit_qualification", headers, body)
end
