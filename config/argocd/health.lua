-- Argo CD health check for the secrets.thalassa.cloud kinds ThalassaSecret,
-- ThalassaSecretStore, ClusterThalassaSecretStore, ThalassaPushSecret and ClusterThalassaSecret
-- (one script: the same contract).
--
-- Source of truth: config/argocd/argocd-cm-patch.yaml embeds this file byte for byte,
-- once per kind. Argo CD runs argocd-cm scripts without the Lua standard libraries (unless
-- resource.customizations.useOpenLibs is set): only base, table and package are loaded,
-- so this script uses `..` and never the string library.
--
-- Operator contract: status.observedGeneration plus metav1 conditions Ready, Reconciling
-- and Stalled. Prerequisite and link conditions (SecretsFeatureEnabled, Authorized,
-- CredentialsValid, ...) are ignored here: the operator folds them into Ready/Stalled.

local hs = {}

local generation = obj.metadata.generation
local status = obj.status

-- The condition of the given type, or nil.
local function condition(ctype)
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

-- "Reason: message", or whichever of the two is set.
local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason == "" then
    return message
  end
  if message == "" then
    return reason
  end
  return reason .. ": " .. message
end

-- No status yet, or only a defaulted observedGeneration without conditions.
if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

-- The status describes an older spec: whatever it says is stale.
if status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
    .. " (status is for generation " .. tostring(status.observedGeneration) .. ")"
  return hs
end

-- Only a human can fix this (a feature gate off, Forbidden, InvalidSpec, missing credentials, ...).
local stalled = condition("Stalled")
if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

-- Synced (a store: verified) at the current generation. A condition may carry its own
-- observedGeneration.
local ready = condition("Ready")
if isTrue(ready) and (ready.observedGeneration == nil or ready.observedGeneration == generation) then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end

-- First sync or check, spec change, or transient failures being retried.
hs.status = "Progressing"
local reconciling = condition("Reconciling")
if isTrue(reconciling) then
  hs.message = describe(reconciling)
elseif isTrue(ready) then
  hs.message = "Waiting for the operator to handle generation " .. tostring(generation)
    .. " (Ready is for generation " .. tostring(ready.observedGeneration) .. ")"
elseif ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the operator to report Ready"
end
return hs
