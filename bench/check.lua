-- The gate-check load of bench/load.sh and bench/ab.sh: an allowed staging rollback and a
-- production canary start denied for want of an override, alternately (both audited).
local bodies = {
  '{"action": "deploy.rollback", "environment": "staging", "releaseId": "v1.2.3-build.20261126.1842+sha.9f0c2ab4e1d7"}',
  '{"action": "deploy.canary.start", "environment": "production", "releaseId": "v1.2.3-build.20261126.1842+sha.9f0c2ab4e1d7"}',
}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])
end
