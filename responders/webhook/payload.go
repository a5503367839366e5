package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/responders"
)

// Document is the body of a delivery.
type Document struct {
	Type     string  `json:"type"`    // DocumentType
	Version  int     `json:"version"` // DocumentVersion
	Incident Payload `json:"incident"`
}

// Payload is the incident as delivered. Lists are [] rather than null
// when empty; times are RFC 3339 in UTC and left out when unknown.
type Payload struct {
	ID           string `json:"id"`
	Rule         string `json:"rule"`
	RuleHash     string `json:"rule_hash,omitempty"`
	RuleFile     string `json:"rule_file,omitempty"`
	RuleFileHash string `json:"rule_file_hash,omitempty"`
	Severity     int    `json:"severity"`
	SeverityName string `json:"severity_name"`
	PHI          bool   `json:"phi"`
	Status       string `json:"status"`
	Source       string `json:"source"`
	// Group holds the group values as an object in the rule's order; it
	// is left out for PHI incidents.
	Group Group `json:"group,omitempty"`
	// GroupHash identifies the group without revealing it (GroupHash);
	// set for every incident that has a group.
	GroupHash  string   `json:"group_hash,omitempty"`
	Orgs       []string `json:"orgs"`
	Namespaces []string `json:"namespaces"`
	Keys       []string `json:"keys"`
	AdminKeys  []string `json:"admin_keys"`
	// Addresses is left out for PHI incidents (an IP address is one of
	// HIPAA's identifiers); AddressCount is always set.
	Addresses    []string  `json:"addresses,omitempty"`
	AddressCount int       `json:"address_count"`
	FirstEvent   time.Time `json:"first_event,omitzero"`
	LastEvent    time.Time `json:"last_event,omitzero"`
	SampleIDs    []string  `json:"sample_ids"`
	Query        string    `json:"query,omitempty"`
	// QueryParams repeat the group values, so they are left out for PHI
	// incidents; the incident record in ClickHouse has them.
	QueryParams map[string]string `json:"query_params,omitempty"`
	Threshold   string            `json:"threshold,omitempty"`
	// Value is null when the aggregate was not a finite number.
	Value           *float64          `json:"value"`
	Alerts          int               `json:"alerts"`
	Labels          map[string]string `json:"labels,omitempty"`
	Actions         []string          `json:"actions"`
	Notes           []string          `json:"notes"`
	OpenedAt        time.Time         `json:"opened_at,omitzero"`
	UpdatedAt       time.Time         `json:"updated_at,omitzero"`
	ResolvedAt      time.Time         `json:"resolved_at,omitzero"`
	NotificationDue time.Time         `json:"notification_due,omitzero"` // PHI only
	ReviewDue       time.Time         `json:"review_due,omitzero"`       // PHI only
}

// NewPayload builds the delivered form of inc, leaving out what a PHI
// incident must not carry.
func NewPayload(inc *responders.Incident) Payload {
	p := Payload{
		ID:           inc.ID,
		Rule:         inc.Rule,
		RuleHash:     inc.RuleHash,
		RuleFile:     inc.RuleFile,
		RuleFileHash: inc.RuleFileHash,
		Severity:     inc.Severity,
		SeverityName: inc.SeverityName,
		PHI:          inc.PHI,
		Status:       inc.Status,
		Source:       inc.Source,
		GroupHash:    responders.GroupHash(inc.Group),
		Orgs:         list(inc.Orgs),
		Namespaces:   list(inc.Namespaces),
		Keys:         list(inc.Keys),
		AdminKeys:    list(inc.AdminKeys),
		AddressCount: len(inc.Addresses),
		FirstEvent:   utc(inc.FirstEvent),
		LastEvent:    utc(inc.LastEvent),
		SampleIDs:    list(inc.SampleIDs),
		Query:        inc.Query,
		Threshold:    inc.Threshold,
		Alerts:       inc.Alerts,
		Labels:       inc.Labels,
		Actions:      list(inc.Actions),
		Notes:        list(inc.Notes),
		OpenedAt:     utc(inc.OpenedAt),
		UpdatedAt:    utc(inc.UpdatedAt),
		ResolvedAt:   utc(inc.ResolvedAt),
	}
	if !math.IsNaN(inc.Value) && !math.IsInf(inc.Value, 0) {
		v := inc.Value
		p.Value = &v
	}
	if inc.PHI {
		p.NotificationDue = utc(inc.NotificationDue)
		p.ReviewDue = utc(inc.ReviewDue)
	} else {
		p.Group = Group(inc.Group)
		p.Addresses = list(inc.Addresses)
		p.QueryParams = inc.QueryParams
	}
	return p
}

// Group is a list of "field=value" pairs encoded as a JSON object that
// keeps their order.
type Group []string

// MarshalJSON encodes the pairs as an object in order. A pair without "="
// becomes a field with an empty value.
func (g Group) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, pair := range g {
		field, value, _ := strings.Cut(pair, "=")
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(field)
		v, _ := json.Marshal(value)
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func list(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// UnmarshalJSON decodes an object into pairs, keeping the order, so Go
// receivers can decode a Document.
func (g *Group) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil {
		return err
	} else if t == nil {
		*g = nil
		return nil
	} else if t != json.Delim('{') {
		return errors.New("webhook: group is not a JSON object")
	}
	var pairs Group
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		field, _ := t.(string)
		var value string
		if err := dec.Decode(&value); err != nil {
			return err
		}
		pairs = append(pairs, field+"="+value)
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	*g = pairs
	return nil
}
