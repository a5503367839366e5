package expression

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/expr-lang/expr"
	"github.com/vigil-sec/vigil/event"
)

// requestEnv and auditEnv are what expr type-checks expressions against and
// what the VM fallback runs on. Their `expr` tags are the field names of
// docs/events.md; TestEnvMatchesSchema keeps them in step with event.Fields.
type requestEnv struct {
	TS                 int     `expr:"ts"`
	RequestID          string  `expr:"request_id"`
	OrgID              string  `expr:"org_id"`
	APIKeyID           string  `expr:"api_key_id"`
	KeyPermission      string  `expr:"key_permission"`
	IP                 string  `expr:"ip"`
	Country            string  `expr:"country"`
	Method             string  `expr:"method"`
	Route              string  `expr:"route"`
	Path               string  `expr:"path"`
	Operation          string  `expr:"operation"`
	Namespace          string  `expr:"namespace"`
	DataClassification string  `expr:"data_classification"`
	Status             int     `expr:"status"`
	BytesIn            int     `expr:"bytes_in"`
	BytesOut           int     `expr:"bytes_out"`
	LatencyMs          float64 `expr:"latency_ms"`
	UserAgent          string  `expr:"user_agent"`
}

type auditEnv struct {
	TS                 int            `expr:"ts"`
	EventID            string         `expr:"event_id"`
	OrgID              string         `expr:"org_id"`
	ActorID            string         `expr:"actor_id"`
	ActorType          string         `expr:"actor_type"`
	APIKeyID           string         `expr:"api_key_id"`
	KeyPermission      string         `expr:"key_permission"`
	IP                 string         `expr:"ip"`
	Action             string         `expr:"action"`
	ResourceType       string         `expr:"resource_type"`
	ResourceID         string         `expr:"resource_id"`
	Namespace          string         `expr:"namespace"`
	DataClassification string         `expr:"data_classification"`
	Status             string         `expr:"status"`
	Changes            map[string]any `expr:"changes"`
}

// tsMillis is the schema's reading of `ts` (Unix milliseconds), shared with
// the native closures so that both paths see the same number.
var tsMillis = mustField(event.Requests, "ts").Int

func mustField(s event.Source, name string) *event.Field {
	f, ok := event.Lookup(s, name)
	if !ok {
		panic(fmt.Sprintf("expression: schema of %v has no field %q", s, name))
	}
	return f
}

// envFor returns the VM environment of e for an expression over source (the
// predicate's source, not e.Source: the closures read the same Event fields
// whatever e claims to be, and so must the VM). changes is decoded only when
// the expression may read it: it is the one field whose filling costs more
// than a copy.
func envFor(e *event.Event, source event.Source, withChanges bool) any {
	switch source {
	case event.Audit:
		env := auditEnv{
			TS:                 int(tsMillis(e)),
			EventID:            e.ID,
			OrgID:              e.OrgID,
			ActorID:            e.ActorID,
			ActorType:          e.ActorType,
			APIKeyID:           e.APIKeyID,
			KeyPermission:      e.KeyPermission,
			IP:                 e.IP,
			Action:             e.Action,
			ResourceType:       e.ResourceType,
			ResourceID:         e.ResourceID,
			Namespace:          e.Namespace,
			DataClassification: e.DataClassification,
			Status:             e.Outcome,
		}
		if withChanges && len(e.Changes) > 0 {
			// A malformed object reads as absent, like a missing field.
			if err := json.Unmarshal(e.Changes, &env.Changes); err != nil {
				env.Changes = nil
			}
		}
		return env
	default:
		return requestEnv{
			TS:                 int(tsMillis(e)),
			RequestID:          e.ID,
			OrgID:              e.OrgID,
			APIKeyID:           e.APIKeyID,
			KeyPermission:      e.KeyPermission,
			IP:                 e.IP,
			Country:            e.Country,
			Method:             e.Method,
			Route:              e.Route,
			Path:               e.Path,
			Operation:          e.Operation,
			Namespace:          e.Namespace,
			DataClassification: e.DataClassification,
			Status:             int(e.Status),
			BytesIn:            int(e.BytesIn),
			BytesOut:           int(e.BytesOut),
			LatencyMs:          e.LatencyMs,
			UserAgent:          e.UserAgent,
		}
	}
}

// exprOptions configures expr for one source: the typed environment, a
// boolean result, cidr(), and no optimizer, so that the tree returned by
// Program.Node is the type-checked tree exactly as written.
func exprOptions(source event.Source) []expr.Option {
	var env any = requestEnv{}
	if source == event.Audit {
		env = auditEnv{}
	}
	return []expr.Option{
		expr.Env(env),
		expr.AsBool(),
		expr.Optimize(false),
		expr.Function("cidr", vmCIDR, new(func(string, string) bool)),
	}
}

var errCIDRArgs = errors.New("cidr: want (string, string)")

// vmCIDR is cidr() for the VM fallback; it must agree with the native
// closure, which is why both call cidrContains.
func vmCIDR(args ...any) (any, error) {
	if len(args) != 2 {
		return nil, errCIDRArgs
	}
	ip, ok1 := args[0].(string)
	prefix, ok2 := args[1].(string)
	if !ok1 || !ok2 {
		return nil, errCIDRArgs
	}
	p, err := parseCIDR(prefix)
	if err != nil {
		return nil, err
	}
	return cidrContains(p, ip), nil
}
