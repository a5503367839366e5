package sentry

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	sentrygo "github.com/getsentry/sentry-go"

	"github.com/vigil-sec/vigil/responders"
)

// Fingerprint is the Sentry fingerprint of inc: "vigil", the rule, and the
// group as responders.GroupKey, or for PHI incidents the group's SHA-256, so that all
// updates of one incident (same rule, same group) form one Sentry issue.
// An incident without a group has only the first two elements.
func Fingerprint(inc *responders.Incident) []string {
	fp := []string{"vigil", inc.Rule}
	switch {
	case len(inc.Group) == 0:
	case inc.PHI:
		fp = append(fp, "sha256:"+responders.GroupHash(inc.Group))
	default:
		fp = append(fp, responders.GroupKey(inc.Group))
	}
	return fp
}

// severityName is the incident's severity name, or the plan's name for
// its severity when it has none.
func severityName(inc *responders.Incident) string {
	if inc.SeverityName != "" {
		return inc.SeverityName
	}
	switch inc.Severity {
	case 1:
		return "critical"
	case 2:
		return "high"
	case 3:
		return "medium"
	case 4:
		return "low"
	}
	return "severity " + strconv.Itoa(inc.Severity)
}

func level(severity int) sentrygo.Level {
	switch severity {
	case 1:
		return sentrygo.LevelFatal
	case 2:
		return sentrygo.LevelError
	case 3:
		return sentrygo.LevelWarning
	case 4:
		return sentrygo.LevelInfo
	}
	return sentrygo.LevelError
}

// newEvent builds the Sentry event of one incident update. Whatever may
// reveal PHI is added only for non-PHI incidents; see the package comment.
func newEvent(inc *responders.Incident) *sentrygo.Event {
	sev := severityName(inc)
	ev := sentrygo.NewEvent()
	ev.Level = level(inc.Severity)
	ev.Logger = "vigil"
	ev.Message = fmt.Sprintf("[vigil] %s: %s incident %s", inc.Rule, sev, inc.ID)
	ev.Fingerprint = Fingerprint(inc)

	tag := func(k, v string) {
		// Sentry drops tag values over 200 characters or with a line break.
		v = strings.Join(strings.Fields(v), " ")
		if len(v) > 200 {
			v = v[:200]
		}
		if v != "" {
			ev.Tags[k] = v
		}
	}
	tag("rule", inc.Rule)
	tag("severity", sev)
	tag("incident_id", inc.ID)
	tag("phi", strconv.FormatBool(inc.PHI))
	tag("source", inc.Source)
	tag("status", inc.Status)
	if len(inc.Orgs) > 0 {
		tag("org", inc.Orgs[0])
	}
	tag("orgs", strconv.Itoa(len(inc.Orgs)))

	incident := sentrygo.Context{
		"id":             inc.ID,
		"rule":           inc.Rule,
		"rule_file":      inc.RuleFile,
		"rule_hash":      inc.RuleHash,
		"rule_file_hash": inc.RuleFileHash,
		"severity":       inc.Severity,
		"severity_name":  sev,
		"status":         inc.Status,
		"source":         inc.Source,
		"phi":            inc.PHI,
		"alerts":         inc.Alerts,
		"threshold":      inc.Threshold,
		"value":          finite(inc.Value),
		"orgs":           list(inc.Orgs),
		"namespaces":     list(inc.Namespaces),
		"keys":           list(inc.Keys),
		"admin_keys":     list(inc.AdminKeys),
		"address_count":  len(inc.Addresses),
		"actions":        list(inc.Actions),
		"notes":          list(inc.Notes),
	}
	for k, t := range map[string]time.Time{
		"opened_at": inc.OpenedAt, "updated_at": inc.UpdatedAt, "resolved_at": inc.ResolvedAt,
		"first_event": inc.FirstEvent, "last_event": inc.LastEvent,
	} {
		if !t.IsZero() {
			incident[k] = timeText(t)
		}
	}
	if len(inc.Labels) > 0 {
		incident["labels"] = inc.Labels
	}
	if h := responders.GroupHash(inc.Group); h != "" {
		incident["group_hash"] = h
	}
	evidence := sentrygo.Context{
		"sample_ids": list(inc.SampleIDs),
		"query":      inc.Query,
	}
	if inc.PHI {
		if !inc.NotificationDue.IsZero() {
			incident["notification_due"] = timeText(inc.NotificationDue)
		}
		if !inc.ReviewDue.IsZero() {
			incident["review_due"] = timeText(inc.ReviewDue)
		}
	} else {
		group := sentrygo.Context{}
		for _, pair := range inc.Group {
			field, value, _ := strings.Cut(pair, "=")
			group[field] = value
		}
		incident["group"] = group
		incident["addresses"] = list(inc.Addresses)
		evidence["query_params"] = inc.QueryParams
	}
	ev.Contexts["incident"] = incident
	ev.Contexts["evidence"] = evidence
	return ev
}

// timeText is t in RFC 3339, UTC.
func timeText(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// finite keeps a NaN or infinite value from making the event unencodable,
// which would lose the whole event.
func finite(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return v
}

func list(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
