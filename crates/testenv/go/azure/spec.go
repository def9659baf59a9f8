package main

import (
	"embed"
	"encoding/json"
	"path"
	"strconv"
	"strings"
)

// The REST spec of api-version 2025-07-01 (Microsoft.App, stable), the version of the official
// examples. armappcontainers/v3 v3.1.0 is generated from 2025-01-01, so a request that says
// 2025-07-01 may carry properties the SDK models do not have yet; those (and only those) are
// looked up in this spec.
//
//go:embed spec/*.json
var specFiles embed.FS

const specVersion = "2025-07-01"

type specDoc struct {
	Definitions map[string]map[string]any `json:"definitions"`
}

var specDocs = map[string]*specDoc{}

func init() {
	entries, err := specFiles.ReadDir("spec")
	if err != nil {
		fail("spec: %v", err)
	}
	for _, e := range entries {
		b, err := specFiles.ReadFile("spec/" + e.Name())
		if err != nil {
			fail("spec: %v", err)
		}
		var d specDoc
		if err := json.Unmarshal(b, &d); err != nil {
			fail("spec %s: %v", e.Name(), err)
		}
		specDocs[e.Name()] = &d
	}
}

// specResolve follows a $ref; external references (common-types) are not available and give nil.
func specResolve(file string, schema map[string]any) (string, map[string]any) {
	for i := 0; i < 16 && schema != nil; i++ {
		ref, ok := schema["$ref"].(string)
		if !ok {
			return file, schema
		}
		target, frag, _ := strings.Cut(ref, "#")
		if target != "" {
			if strings.Contains(target, "common-types") {
				return "", nil
			}
			file = path.Base(target)
		}
		doc := specDocs[file]
		name := strings.TrimPrefix(frag, "/definitions/")
		if doc == nil || doc.Definitions[name] == nil {
			return "", nil
		}
		schema = doc.Definitions[name]
	}
	return file, schema
}

// specChild is the schema of property key (or array items when key is an index).
func specChild(file string, schema map[string]any, key string) (string, map[string]any) {
	file, schema = specResolve(file, schema)
	if schema == nil {
		return "", nil
	}
	if _, err := strconv.Atoi(key); err == nil {
		if items, ok := schema["items"].(map[string]any); ok {
			return specResolve(file, items)
		}
		return "", nil
	}
	if props, ok := schema["properties"].(map[string]any); ok {
		if p, ok := props[key].(map[string]any); ok {
			return specResolve(file, p)
		}
	}
	if all, ok := schema["allOf"].([]any); ok {
		for _, part := range all {
			if m, ok := part.(map[string]any); ok {
				if f, s := specChild(file, m, key); s != nil {
					return f, s
				}
			}
		}
	}
	if ap, ok := schema["additionalProperties"].(map[string]any); ok {
		return specResolve(file, ap)
	}
	return "", nil
}

// specKnows says whether the 2025-07-01 spec defines the property at segments below definition.
func specKnows(definition string, segments []string) bool {
	file, schema := "", map[string]any(nil)
	for name, doc := range specDocs {
		if d, ok := doc.Definitions[definition]; ok {
			file, schema = name, d
			break
		}
	}
	for _, seg := range segments {
		if schema == nil {
			return false
		}
		file, schema = specChild(file, schema, seg)
	}
	return schema != nil
}
