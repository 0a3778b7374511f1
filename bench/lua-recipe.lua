-- The Lua work-around circulated for the coalescing 404 (Istio's troubleshooting guide), written
-- out for the benchmark: on each request compare the connection's SNI with the request's host and
-- answer 421 when they differ. Fixed to call requestedServerName() on streamInfo() (the snippet
-- as published calls it on the wrong object). Like the original it compares names as strings:
-- no listener groups, no case folding, only the port is stripped.
function envoy_on_request(handle)
  local sni = handle:streamInfo():requestedServerName()
  if sni == nil or sni == "" then
    return
  end
  local authority = handle:headers():get(":authority") or ""
  local host = string.match(authority, "^([^:]+)") or authority
  if host ~= sni then
    handle:respond({[":status"] = "421"}, "Misdirected Request\n")
  end
end
