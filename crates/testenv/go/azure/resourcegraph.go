package main

// Azure Resource Graph: POST /providers/Microsoft.ResourceGraph/resources (api-version
// 2024-04-01). The rows are seeded through the control API; queries are really evaluated, for
// the small KQL subset Tidegate's Defender scanner uses and the official examples mostly use:
// a table, then a pipeline of `where` (==, !=, =~, !~, in, contains, and, or, parentheses),
// `extend`, `project` and `limit`/`take`, with the functions tostring() and extract(). Anything
// else is refused with a BadRequest naming the unsupported operator or function.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resourcegraph/armresourcegraph"
)

const graphPath = "/providers/microsoft.resourcegraph/resources"
const graphAPIVersion = "2024-04-01"

// graphState holds the seeded tables (lower-case table name -> rows).
type graphState struct {
	tables      map[string][]map[string]any
	maxPageSize int
}

func (s *server) graphData() *graphState {
	if s.graph == nil {
		s.graph = &graphState{tables: map[string][]map[string]any{}, maxPageSize: 1000}
	}
	return s.graph
}

func isGraphPath(p string) bool { return strings.EqualFold(strings.TrimSuffix(p, "/"), graphPath) }

// graphError answers in the shape Resource Graph uses for a query it cannot run.
func graphError(w http.ResponseWriter, code, message string) {
	writeError(w, http.StatusBadRequest, "BadRequest",
		"Please provide below info when asking for support: correlationId = "+newUUID(), "",
		armError{Code: "InvalidQuery", Message: "Query is invalid. Please refer to the documentation for the Azure Resource Graph service and fix the error before retrying."},
		armError{Code: code, Message: message})
}

func (s *server) resourceGraph(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "only POST queries are supported", "")
		return
	}
	v := r.URL.Query().Get("api-version")
	if v == "" {
		writeError(w, http.StatusBadRequest, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests.", "")
		return
	}
	if v != graphAPIVersion {
		writeError(w, http.StatusBadRequest, "InvalidApiVersionParameter", fmt.Sprintf(
			"The api-version '%s' is invalid. The supported versions are '%s'.", v, graphAPIVersion), "")
		return
	}
	var req armresourcegraph.QueryRequest
	if _, aerr := decodeModel(body, &req, v, ""); aerr != nil {
		writeArmError(w, http.StatusBadRequest, aerr)
		return
	}
	if req.Query == nil || strings.TrimSpace(*req.Query) == "" {
		writeError(w, http.StatusBadRequest, "BadRequest", "The query is required.", "query")
		return
	}
	if len(req.Facets) > 0 {
		graphError(w, "UnsupportedFeature", "facets are not supported by this stand-in")
		return
	}
	q, err := parseQuery(*req.Query)
	if err != nil {
		graphError(w, err.code, err.msg)
		return
	}
	g := s.graphData()
	var rows []map[string]any
	for _, row := range g.tables[q.table] {
		if len(req.Subscriptions) > 0 && !containsFold(req.Subscriptions, kqlString(row["subscriptionId"])) {
			continue
		}
		rows = append(rows, row)
	}
	out, err := q.run(rows)
	if err != nil {
		graphError(w, err.code, err.msg)
		return
	}
	// Paging: $skip/$top, or the offset and page size a $skipToken carries.
	opts := req.Options
	if opts == nil {
		opts = &armresourcegraph.QueryRequestOptions{}
	}
	format := armresourcegraph.ResultFormatObjectArray
	if opts.ResultFormat != nil {
		format = *opts.ResultFormat
	}
	if format != armresourcegraph.ResultFormatObjectArray && format != armresourcegraph.ResultFormatTable {
		writeError(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Unknown resultFormat '%s'.", format), "options.resultFormat")
		return
	}
	skip, top := 0, g.maxPageSize
	if opts.Top != nil {
		top = int(*opts.Top)
		if top < 1 || top > 1000 {
			writeError(w, http.StatusBadRequest, "BadRequest", "$top must be between 1 and 1000.", "options.$top")
			return
		}
	}
	if opts.SkipToken != nil && *opts.SkipToken != "" {
		tok, ok := decodeSkipToken(*opts.SkipToken, *req.Query)
		if !ok {
			writeError(w, http.StatusBadRequest, "BadRequest", "The $skipToken is invalid for this query.", "options.$skipToken")
			return
		}
		skip = tok.Offset
		if opts.Top == nil {
			top = tok.PageSize
		}
	}
	if opts.Skip != nil {
		skip = int(*opts.Skip)
	}
	page := top
	if page > g.maxPageSize {
		page = g.maxPageSize
	}
	total := len(out)
	if skip > total {
		skip = total
	}
	end := skip + page
	if end > total {
		end = total
	}
	resp := map[string]any{
		"totalRecords":    total,
		"count":           end - skip,
		"resultTruncated": "false",
		"facets":          []any{},
	}
	if end < total {
		resp["$skipToken"] = encodeSkipToken(skipToken{Offset: end, PageSize: page, Query: *req.Query})
	}
	if format == armresourcegraph.ResultFormatTable {
		resp["data"] = asTable(out[skip:end], q.columns(out))
	} else {
		data := out[skip:end]
		if data == nil {
			data = []map[string]any{}
		}
		resp["data"] = data
	}
	writeJSON(w, http.StatusOK, resp)
}

type skipToken struct {
	Offset   int    `json:"o"`
	PageSize int    `json:"p"`
	Query    string `json:"q"`
}

func encodeSkipToken(t skipToken) string {
	b, _ := json.Marshal(t)
	return base64.StdEncoding.EncodeToString(b)
}

func decodeSkipToken(text, query string) (skipToken, bool) {
	var t skipToken
	b, err := base64.StdEncoding.DecodeString(text)
	if err != nil || json.Unmarshal(b, &t) != nil || t.Query != query || t.Offset < 0 || t.PageSize < 1 {
		return t, false
	}
	return t, true
}

func asTable(rows []map[string]any, columns []string) map[string]any {
	cols := []map[string]string{}
	for _, c := range columns {
		cols = append(cols, map[string]string{"name": c, "type": "object"})
	}
	out := [][]any{}
	for _, row := range rows {
		line := []any{}
		for _, c := range columns {
			line = append(line, row[c])
		}
		out = append(out, line)
	}
	return map[string]any{"columns": cols, "rows": out}
}

func containsFold(list []*string, v string) bool {
	for _, s := range list {
		if s != nil && strings.EqualFold(*s, v) {
			return true
		}
	}
	return false
}

// ---- the KQL subset ----

type kqlError struct{ code, msg string }

func unsupported(format string, args ...any) *kqlError {
	return &kqlError{"UnsupportedOperator", fmt.Sprintf(format, args...)}
}

func parseFailure(format string, args ...any) *kqlError {
	return &kqlError{"ParserFailure", fmt.Sprintf(format, args...)}
}

type token struct {
	kind string // ident, string, number, op, punct
	text string
}

func tokenize(q string) ([]token, *kqlError) {
	var out []token
	i := 0
	for i < len(q) {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '/' && i+1 < len(q) && q[i+1] == '/':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '@' && i+1 < len(q) && (q[i+1] == '"' || q[i+1] == '\''):
			quote := q[i+1]
			j := i + 2
			for j < len(q) && q[j] != quote {
				j++
			}
			if j >= len(q) {
				return nil, parseFailure("unterminated string literal")
			}
			out = append(out, token{"string", q[i+2 : j]})
			i = j + 1
		case c == '"' || c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(q) && q[j] != c; j++ {
				if q[j] == '\\' && j+1 < len(q) {
					j++
					switch q[j] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					default:
						b.WriteByte(q[j])
					}
					continue
				}
				b.WriteByte(q[j])
			}
			if j >= len(q) {
				return nil, parseFailure("unterminated string literal")
			}
			out = append(out, token{"string", b.String()})
			i = j + 1
		case c >= '0' && c <= '9':
			j := i
			for j < len(q) && (q[j] >= '0' && q[j] <= '9' || q[j] == '.') {
				j++
			}
			out = append(out, token{"number", q[i:j]})
			i = j
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(q) && (q[j] == '_' || q[j] >= 'a' && q[j] <= 'z' || q[j] >= 'A' && q[j] <= 'Z' || q[j] >= '0' && q[j] <= '9') {
				j++
			}
			out = append(out, token{"ident", q[i:j]})
			i = j
		default:
			two := ""
			if i+1 < len(q) {
				two = q[i : i+2]
			}
			switch two {
			case "==", "!=", "=~", "!~", "<=", ">=":
				out = append(out, token{"op", two})
				i += 2
				continue
			}
			switch c {
			case '|', '(', ')', ',', '.', '=', '[', ']':
				out = append(out, token{"punct", string(c)})
			case '<', '>':
				out = append(out, token{"op", string(c)})
			default:
				return nil, parseFailure("unexpected character %q", c)
			}
			i++
		}
	}
	return out, nil
}

// expr is an evaluated expression.
type expr interface {
	eval(row map[string]any) (any, *kqlError)
}

type literal struct{ v any }
type column struct{ path []string }
type call struct {
	name string
	args []expr
}
type binary struct {
	op          string
	left, right expr
}
type inList struct {
	left   expr
	values []expr
	not    bool
}

func (l literal) eval(map[string]any) (any, *kqlError) { return l.v, nil }

func (c column) eval(row map[string]any) (any, *kqlError) {
	var cur any = row
	for _, p := range c.path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, nil
		}
		cur = m[p]
	}
	return cur, nil
}

func (c column) name() string { return strings.Join(c.path, "_") }

func (c call) eval(row map[string]any) (any, *kqlError) {
	var args []any
	for _, a := range c.args {
		v, err := a.eval(row)
		if err != nil {
			return nil, err
		}
		args = append(args, v)
	}
	switch strings.ToLower(c.name) {
	case "tostring":
		if len(args) != 1 {
			return nil, parseFailure("tostring() takes one argument")
		}
		return kqlString(args[0]), nil
	case "extract":
		if len(args) != 3 {
			return nil, parseFailure("extract() takes three arguments")
		}
		re, err := regexp.Compile(kqlString(args[0]))
		if err != nil {
			return nil, parseFailure("extract(): invalid regular expression: %v", err)
		}
		group, ok := number(args[1])
		if !ok {
			return nil, parseFailure("extract(): the capture group must be a number")
		}
		m := re.FindStringSubmatch(kqlString(args[2]))
		if m == nil || int(group) >= len(m) || group < 0 {
			return "", nil
		}
		return m[int(group)], nil
	}
	return nil, &kqlError{"UnknownFunction", fmt.Sprintf("Unknown function: '%s'.", c.name)}
}

func (b binary) eval(row map[string]any) (any, *kqlError) {
	l, err := b.left.eval(row)
	if err != nil {
		return nil, err
	}
	if b.op == "and" && !truthy(l) {
		return false, nil
	}
	if b.op == "or" && truthy(l) {
		return true, nil
	}
	r, err := b.right.eval(row)
	if err != nil {
		return nil, err
	}
	switch b.op {
	case "and", "or":
		return truthy(r), nil
	case "==":
		return equal(l, r), nil
	case "!=":
		return l != nil && r != nil && !equal(l, r), nil
	case "=~":
		return l != nil && r != nil && strings.EqualFold(kqlString(l), kqlString(r)), nil
	case "!~":
		return l != nil && r != nil && !strings.EqualFold(kqlString(l), kqlString(r)), nil
	case "contains":
		return strings.Contains(strings.ToLower(kqlString(l)), strings.ToLower(kqlString(r))), nil
	}
	return nil, unsupported("Unsupported operator: '%s'.", b.op)
}

func (in inList) eval(row map[string]any) (any, *kqlError) {
	l, err := in.left.eval(row)
	if err != nil {
		return nil, err
	}
	found := false
	for _, v := range in.values {
		r, err := v.eval(row)
		if err != nil {
			return nil, err
		}
		if equal(l, r) {
			found = true
		}
	}
	return found != in.not, nil
}

func truthy(v any) bool { b, ok := v.(bool); return ok && b }

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case int:
		return float64(n), true
	}
	return 0, false
}

func equal(a, b any) bool {
	if a == nil || b == nil {
		return false
	}
	if x, ok := number(a); ok {
		if y, ok := number(b); ok {
			return x == y
		}
	}
	return kqlString(a) == kqlString(b)
}

// kqlString is tostring(): strings as they are, numbers and booleans as text, dynamic values as JSON.
func kqlString(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case bool:
		return strconv.FormatBool(t)
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1e15 {
			return strconv.FormatInt(int64(t), 10)
		}
		return strconv.FormatFloat(t, 'g', -1, 64)
	case json.Number:
		return t.String()
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// parser over one pipeline stage's tokens.
type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() token {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return token{}
}

func (p *parser) next() token { t := p.peek(); p.pos++; return t }

func (p *parser) accept(kind, text string) bool {
	t := p.peek()
	if t.kind == kind && (text == "" || strings.EqualFold(t.text, text)) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) expr() (expr, *kqlError) { return p.or() }

func (p *parser) or() (expr, *kqlError) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.accept("ident", "or") {
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = binary{"or", l, r}
	}
	return l, nil
}

func (p *parser) and() (expr, *kqlError) {
	l, err := p.comparison()
	if err != nil {
		return nil, err
	}
	for p.accept("ident", "and") {
		r, err := p.comparison()
		if err != nil {
			return nil, err
		}
		l = binary{"and", l, r}
	}
	return l, nil
}

func (p *parser) comparison() (expr, *kqlError) {
	l, err := p.operand()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	switch {
	case t.kind == "op" && (t.text == "==" || t.text == "!=" || t.text == "=~" || t.text == "!~"):
		p.next()
		r, err := p.operand()
		if err != nil {
			return nil, err
		}
		return binary{t.text, l, r}, nil
	case t.kind == "op":
		return nil, unsupported("Unsupported operator: '%s'.", t.text)
	case t.kind == "ident" && (strings.EqualFold(t.text, "contains")):
		p.next()
		r, err := p.operand()
		if err != nil {
			return nil, err
		}
		return binary{"contains", l, r}, nil
	case t.kind == "ident" && strings.EqualFold(t.text, "in"):
		p.next()
		values, err := p.list()
		if err != nil {
			return nil, err
		}
		return inList{l, values, false}, nil
	case t.kind == "ident" && !strings.EqualFold(t.text, "and") && !strings.EqualFold(t.text, "or"):
		return nil, unsupported("Unsupported operator: '%s'.", t.text)
	}
	return l, nil
}

func (p *parser) list() ([]expr, *kqlError) {
	if !p.accept("punct", "(") {
		return nil, parseFailure("expected ( after in")
	}
	var values []expr
	for {
		v, err := p.operand()
		if err != nil {
			return nil, err
		}
		values = append(values, v)
		if p.accept("punct", ")") {
			return values, nil
		}
		if !p.accept("punct", ",") {
			return nil, parseFailure("expected , or ) in a list")
		}
	}
}

func (p *parser) operand() (expr, *kqlError) {
	t := p.next()
	switch t.kind {
	case "string":
		return literal{t.text}, nil
	case "number":
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, parseFailure("invalid number %q", t.text)
		}
		return literal{f}, nil
	case "punct":
		if t.text == "(" {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			if !p.accept("punct", ")") {
				return nil, parseFailure("expected )")
			}
			return e, nil
		}
	case "ident":
		switch strings.ToLower(t.text) {
		case "true":
			return literal{true}, nil
		case "false":
			return literal{false}, nil
		}
		if p.accept("punct", "(") {
			c := call{name: t.text}
			if !p.accept("punct", ")") {
				for {
					a, err := p.expr()
					if err != nil {
						return nil, err
					}
					c.args = append(c.args, a)
					if p.accept("punct", ")") {
						break
					}
					if !p.accept("punct", ",") {
						return nil, parseFailure("expected , or ) in the arguments of %s()", t.text)
					}
				}
			}
			switch strings.ToLower(c.name) {
			case "tostring", "extract":
				return c, nil
			}
			return nil, &kqlError{"UnknownFunction", fmt.Sprintf("Unknown function: '%s'.", t.text)}
		}
		path := []string{t.text}
		for p.accept("punct", ".") {
			n := p.next()
			if n.kind != "ident" {
				return nil, parseFailure("expected a property name after '.'")
			}
			path = append(path, n.text)
		}
		if p.peek().kind == "punct" && p.peek().text == "[" {
			return nil, unsupported("Unsupported operator: '['.")
		}
		return column{path}, nil
	}
	if t.kind == "" {
		return nil, parseFailure("unexpected end of the query")
	}
	return nil, parseFailure("unexpected '%s'", t.text)
}

// stage is one operator of the pipeline.
type stage struct {
	op      string
	where   expr
	assigns []assign // extend, project
	limit   int
}

type assign struct {
	name string
	e    expr
}

type kqlQuery struct {
	table  string
	stages []stage
}

func parseQuery(q string) (*kqlQuery, *kqlError) {
	toks, err := tokenize(q)
	if err != nil {
		return nil, err
	}
	var parts [][]token
	depth, start := 0, 0
	for i, t := range toks {
		if t.kind == "punct" && t.text == "(" {
			depth++
		}
		if t.kind == "punct" && t.text == ")" {
			depth--
		}
		if t.kind == "punct" && t.text == "|" && depth == 0 {
			parts = append(parts, toks[start:i])
			start = i + 1
		}
	}
	parts = append(parts, toks[start:])
	if len(parts[0]) != 1 || parts[0][0].kind != "ident" {
		return nil, parseFailure("a query starts with a table name")
	}
	out := &kqlQuery{table: strings.ToLower(parts[0][0].text)}
	for _, part := range parts[1:] {
		p := &parser{toks: part}
		op := p.next()
		if op.kind != "ident" {
			return nil, parseFailure("expected an operator after '|'")
		}
		st := stage{op: strings.ToLower(op.text)}
		switch st.op {
		case "where":
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			st.where = e
		case "extend", "project":
			for {
				a, err := p.assignment(st.op == "project")
				if err != nil {
					return nil, err
				}
				st.assigns = append(st.assigns, a)
				if !p.accept("punct", ",") {
					break
				}
			}
		case "limit", "take":
			n := p.next()
			v, err := strconv.Atoi(n.text)
			if n.kind != "number" || err != nil || v < 0 {
				return nil, parseFailure("%s needs a row count", st.op)
			}
			st.limit = v
		default:
			return nil, unsupported("Unsupported operator: '%s'.", op.text)
		}
		if p.pos < len(p.toks) {
			return nil, parseFailure("unexpected '%s' in %s", p.peek().text, op.text)
		}
		out.stages = append(out.stages, st)
	}
	return out, nil
}

func (p *parser) assignment(project bool) (assign, *kqlError) {
	start := p.pos
	if t := p.peek(); t.kind == "ident" && p.pos+1 < len(p.toks) && p.toks[p.pos+1].kind == "punct" && p.toks[p.pos+1].text == "=" {
		p.pos += 2
		e, err := p.expr()
		if err != nil {
			return assign{}, err
		}
		return assign{t.text, e}, nil
	}
	p.pos = start
	e, err := p.expr()
	if err != nil {
		return assign{}, err
	}
	if c, ok := e.(column); ok {
		return assign{c.name(), c}, nil
	}
	if !project {
		return assign{}, parseFailure("extend needs name = expression")
	}
	return assign{fmt.Sprintf("Column%d", start), e}, nil
}

func (q *kqlQuery) run(rows []map[string]any) ([]map[string]any, *kqlError) {
	out := rows
	for _, st := range q.stages {
		var next []map[string]any
		switch st.op {
		case "where":
			for _, row := range out {
				v, err := st.where.eval(row)
				if err != nil {
					return nil, err
				}
				if truthy(v) {
					next = append(next, row)
				}
			}
		case "extend", "project":
			for _, row := range out {
				n := map[string]any{}
				if st.op == "extend" {
					for k, v := range row {
						n[k] = v
					}
				}
				for _, a := range st.assigns {
					v, err := a.e.eval(row)
					if err != nil {
						return nil, err
					}
					n[a.name] = v
				}
				next = append(next, n)
			}
		case "limit", "take":
			next = out
			if len(next) > st.limit {
				next = next[:st.limit]
			}
		}
		out = next
	}
	// Pages are stable when the rows are in id order (as Resource Graph asks queries to project id).
	sort.SliceStable(out, func(i, j int) bool {
		return strings.ToLower(kqlString(out[i]["id"])) < strings.ToLower(kqlString(out[j]["id"]))
	})
	return out, nil
}

func (q *kqlQuery) columns(rows []map[string]any) []string {
	for i := len(q.stages) - 1; i >= 0; i-- {
		if q.stages[i].op == "project" {
			var cols []string
			for _, a := range q.stages[i].assigns {
				cols = append(cols, a.name)
			}
			return cols
		}
	}
	seen := map[string]bool{}
	var cols []string
	for _, row := range rows {
		for k := range row {
			if !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	sort.Strings(cols)
	return cols
}

// serveGraphControl: POST resourcegraph/rows {"table","rows":[...]} adds rows; DELETE
// resourcegraph/rows clears them; POST resourcegraph/settings {"maxPageSize"} caps pages.
func (s *server) serveGraphControl(w http.ResponseWriter, r *http.Request, path string, decode func(any) bool) {
	g := s.graphData()
	switch {
	case path == "resourcegraph/rows" && r.Method == http.MethodPost:
		var req struct {
			Table string           `json:"table"`
			Rows  []map[string]any `json:"rows"`
		}
		if !decode(&req) {
			return
		}
		table := strings.ToLower(req.Table)
		if table == "" {
			table = "securityresources"
		}
		for i, row := range req.Rows {
			for _, key := range []string{"id", "type", "subscriptionId"} {
				if v, ok := row[key].(string); !ok || v == "" {
					writeError(w, http.StatusBadRequest, "BadControlRequest", fmt.Sprintf("rows[%d]: %s is required", i, key), "")
					return
				}
			}
			if _, ok := row["properties"].(map[string]any); !ok {
				writeError(w, http.StatusBadRequest, "BadControlRequest", fmt.Sprintf("rows[%d]: properties must be an object", i), "")
				return
			}
		}
		g.tables[table] = append(g.tables[table], req.Rows...)
		writeJSON(w, http.StatusOK, map[string]any{"table": table, "rows": len(g.tables[table])})
	case path == "resourcegraph/rows" && r.Method == http.MethodDelete:
		g.tables = map[string][]map[string]any{}
		w.WriteHeader(http.StatusNoContent)
	case path == "resourcegraph/settings" && r.Method == http.MethodPost:
		var req struct {
			MaxPageSize int `json:"maxPageSize"`
		}
		if !decode(&req) {
			return
		}
		if req.MaxPageSize < 1 || req.MaxPageSize > 1000 {
			writeError(w, http.StatusBadRequest, "BadControlRequest", "maxPageSize must be between 1 and 1000", "")
			return
		}
		g.maxPageSize = req.MaxPageSize
		writeJSON(w, http.StatusOK, map[string]any{"maxPageSize": g.maxPageSize})
	default:
		writeError(w, http.StatusNotFound, "NotFound", "no such control endpoint: "+path, "")
	}
}
