-- Argo CD health of a MediaJob (mediajob.io/v1alpha1), from the status the operator writes:
-- its phase, and the Ready condition's reason and message (docs/status-reference.md).
--   Healthy      the job succeeded (its outputs are written)
--   Degraded     it failed for good, was cancelled outside the operator, or its spec cannot be used
--   Suspended    spec.suspend is true
--   Progressing  anything else: waiting, submitted, running, or not yet seen by the operator
local hs = {}

local function ready_condition(status)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      return condition
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick the job up"
  return hs
end

local ready = ready_condition(status)
local reason = ""
local message = ""
if ready ~= nil then
  reason = ready.reason or ""
  message = ready.message or ""
end

-- A spec edit the operator has not acted on yet: whatever the status says is about the old spec.
if obj.metadata ~= nil and obj.metadata.generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on the latest spec"
  return hs
end

if status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = message ~= "" and message or "Succeeded"
  return hs
end
if status.phase == "Failed" or status.phase == "Cancelled" then
  hs.status = "Degraded"
  hs.message = reason .. ": " .. message
  return hs
end
if reason == "InvalidSpec" or reason == "RequestRejected" then
  hs.status = "Degraded"
  hs.message = reason .. ": " .. message
  return hs
end
if reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = message
  return hs
end
hs.status = "Progressing"
if reason ~= "" then
  hs.message = status.phase .. " (" .. reason .. "): " .. message
else
  hs.message = status.phase
end
return hs
