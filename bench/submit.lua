-- wrk script: POST /submit_qualification with varied valid bodies.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local counter = 0

request = function()
  counter = counter + 1
  local body = string.format(
    '{"gpu_utilization": %d.%d, "memory_usage": %d, "power_efficiency": %d.5, "completion_time": %d.25, "accuracy": %d}',
    50 + counter % 50, counter % 10, 40 + counter % 60, 30 + counter % 70, 1 + counter % 89, 60 + counter % 40)
  return wrk.format(nil, "/submit_qualification", nil, body)
end
