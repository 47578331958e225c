-- Argo CD health of a MediaJobSet (mediajob.io/v1alpha1), from the status the operator writes:
-- its phase, and the Ready condition's reason and message (docs/sets.md).
--   Healthy      every object is done (Succeeded), or an inbox set has done all it found (Watching)
--   Degraded     more objects failed than maxFailed, or the set's spec or templates cannot be used
--   Suspended    spec.suspend is true (the set shows its plan and starts nothing)
--   Progressing  anything else: objects running, a listing that failed and is retried, not seen yet
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
local ready = ready_condition(status)
if status == nil or (status.phase == nil and ready == nil) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick the set up"
  return hs
end
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

if status.phase == "Succeeded" or status.phase == "Watching" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
if status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = reason .. ": " .. message
  return hs
end
if status.phase == "Planned" then
  hs.status = "Suspended"
  hs.message = message
  return hs
end
hs.status = "Progressing"
if reason ~= "" then
  hs.message = reason .. ": " .. message
else
  hs.message = "Running"
end
return hs
