package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// decodeModel decodes body into model (a pointer to an armappcontainers/v3 type) the way the
// brief of the SDK intends: json.Decoder with DisallowUnknownFields. The SDK's models implement
// UnmarshalJSON and silently skip keys they do not know, which DisallowUnknownFields cannot see,
// so the decoded model is marshalled again and every key of the request that did not survive the
// round trip is reported as unknown. Returns the request as a generic JSON value.
//
// For api-version 2025-07-01 (newer than the SDK's 2025-01-01), a key the SDK model lacks is
// accepted when the embedded 2025-07-01 REST spec defines it under definition.
func decodeModel(body []byte, model any, apiVersion, definition string) (any, *armError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &armError{Code: "InvalidRequestContent", Message: "The request content was invalid and could not be deserialized: the body is empty."}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(model); err != nil {
		return nil, &armError{Code: "InvalidRequestContent", Message: "The request content was invalid and could not be deserialized: " + err.Error()}
	}
	if dec.More() {
		return nil, &armError{Code: "InvalidRequestContent", Message: "The request content was invalid and could not be deserialized: trailing data after the JSON value."}
	}
	raw, err := decodeJSON(body)
	if err != nil {
		return nil, &armError{Code: "InvalidRequestContent", Message: "The request content was invalid and could not be deserialized: " + err.Error()}
	}
	again, err := json.Marshal(model)
	if err != nil {
		return nil, &armError{Code: "InvalidRequestContent", Message: "The request content was invalid: " + err.Error()}
	}
	known, err := decodeJSON(again)
	if err != nil {
		fail("re-decoding the model: %v", err)
	}
	var found []fieldPath
	unknownFields(raw, known, nil, &found)
	var unknown []string
	for _, f := range found {
		if apiVersion == specVersion && specKnows(definition, f) {
			continue
		}
		unknown = append(unknown, f.String())
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, &armError{
			Code:    "InvalidRequestContent",
			Message: "The request content was invalid and could not be deserialized: unknown field " + strings.Join(unknown, ", unknown field ") + ".",
			Target:  unknown[0],
		}
	}
	return raw, nil
}

// fieldPath is where a key is: object keys and array indexes.
type fieldPath []string

func (f fieldPath) String() string {
	var b strings.Builder
	for i, seg := range f {
		if _, err := strconv.Atoi(seg); err == nil {
			b.WriteString("[" + seg + "]")
			continue
		}
		if i > 0 {
			b.WriteString(".")
		}
		b.WriteString(seg)
	}
	return b.String()
}

// unknownFields lists the keys of raw (recursively) that are missing from known. A key whose
// value is null cannot be checked this way (null decodes to nothing) and is let through.
func unknownFields(raw, known any, path fieldPath, out *[]fieldPath) {
	switch r := raw.(type) {
	case map[string]any:
		k, _ := known.(map[string]any)
		for key, v := range r {
			p := append(append(fieldPath{}, path...), key)
			if v == nil {
				continue
			}
			kv, ok := k[key]
			if !ok {
				*out = append(*out, p)
				continue
			}
			unknownFields(v, kv, p, out)
		}
	case []any:
		k, _ := known.([]any)
		for i, v := range r {
			if i < len(k) {
				unknownFields(v, k[i], append(append(fieldPath{}, path...), strconv.Itoa(i)), out)
			}
		}
	}
}

func badRequest(code, format string, args ...any) *armError {
	return &armError{Code: code, Message: fmt.Sprintf(format, args...)}
}
