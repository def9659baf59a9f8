package main

import (
	"encoding/json"
	"strings"
)

// normalize applies what Azure fills in on write, as the official examples' responses show:
// container resources default to 0.5 CPU / 1Gi, a custom scale rule of type http or tcp comes
// back as an http or tcp rule, and ingress transport defaults to auto. It is applied to the stored
// state, so a client that GETs and PUTs back the same app makes no new revision.
func normalize(props map[string]any) {
	template := obj(props, "template", false)
	for _, key := range []string{"containers", "initContainers"} {
		list, _ := template[key].([]any)
		for _, c := range list {
			if m, ok := c.(map[string]any); ok {
				if _, ok := m["resources"]; !ok {
					m["resources"] = map[string]any{"cpu": json.Number("0.5"), "memory": "1Gi"}
				}
			}
		}
	}
	rules, _ := obj(template, "scale", false)["rules"].([]any)
	for _, r := range rules {
		rule, _ := r.(map[string]any)
		custom := obj(rule, "custom", false)
		kind := strings.ToLower(str(custom, "type"))
		if kind != "http" && kind != "tcp" {
			continue
		}
		converted := map[string]any{}
		for _, k := range []string{"metadata", "auth", "identity"} {
			if v, ok := custom[k]; ok {
				converted[k] = v
			}
		}
		delete(rule, "custom")
		rule[kind] = converted
	}
	if ingress := obj(obj(props, "configuration", false), "ingress", false); ingress != nil {
		if _, ok := ingress["transport"]; !ok {
			ingress["transport"] = "auto"
		}
	}
}

// stableUUID is a UUID derived from seed, for server-assigned IDs that must not change.
func stableUUID(seed string) string {
	h := randomHexFrom(seed)
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}

// identityView adds the read-only principal and client IDs of a resource's identities.
func (s *server) identityView(out map[string]any, resourceID string) {
	identity := obj(out, "identity", false)
	if identity == nil {
		return
	}
	if strings.Contains(strings.ToLower(str(identity, "type")), "systemassigned") {
		identity["principalId"] = stableUUID("principal " + strings.ToLower(resourceID))
		identity["tenantId"] = s.tenant
	}
	if uai := obj(identity, "userAssignedIdentities", false); uai != nil {
		for id := range uai {
			uai[id] = map[string]any{
				"principalId": stableUUID("principal " + strings.ToLower(id)),
				"clientId":    stableUUID("client " + strings.ToLower(id)),
			}
		}
	}
}
