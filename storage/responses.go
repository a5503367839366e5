package storage

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vigil-sec/vigil/responders"
)

// Incidents, the action log, the block ledger and the responders' kill
// switch. Store implements responders.Store with these.

const incidentColumns = "id, rule, rule_hash, rule_file_hash, rule_file, severity, severity_name, phi, status, source, " +
	"group_pairs, group_json, orgs, namespaces, keys, admin_keys, addresses, first_event, last_event, sample_ids, " +
	"query, query_params, threshold, value, alerts, alert_keys, labels, actions, notes, opened_at, updated_at, " +
	"resolved_at, notification_due, review_due, namespace_orgs"

// WriteIncident stores the incident's current state; the newest
// updated_at wins when ClickHouse collapses the versions.
func (s *Store) WriteIncident(ctx context.Context, inc *responders.Incident) error {
	return s.insert(ctx, "incidents ("+incidentColumns+")", "", func(b driver.Batch) error {
		return b.Append(inc.ID, inc.Rule, inc.RuleHash, inc.RuleFileHash, inc.RuleFile, uint8(inc.Severity), inc.SeverityName,
			inc.PHI, inc.Status, inc.Source, nonNil(inc.Group), inc.GroupJSON, nonNil(inc.Orgs), nonNil(inc.Namespaces),
			nonNil(inc.Keys), nonNil(inc.AdminKeys), nonNil(inc.Addresses), inc.FirstEvent.UTC(), inc.LastEvent.UTC(),
			nonNil(inc.SampleIDs), inc.Query, nonNilMap(inc.QueryParams), inc.Threshold, inc.Value, uint32(inc.Alerts),
			nonNil(inc.AlertKeys), nonNilMap(inc.Labels), nonNil(inc.Actions), nonNil(inc.Notes), inc.OpenedAt.UTC(),
			inc.UpdatedAt.UTC(), inc.ResolvedAt.UTC(), inc.NotificationDue.UTC(), inc.ReviewDue.UTC(), nonNilMap(inc.NamespaceOrgs))
	})
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// OpenIncidents returns open incidents updated since t.
func (s *Store) OpenIncidents(ctx context.Context, since time.Time) ([]*responders.Incident, error) {
	return s.incidents(ctx, "status = 'open' AND updated_at >= ?", "updated_at", 0, since.UTC())
}

// Incidents lists incidents, newest first; status "" means any.
func (s *Store) Incidents(ctx context.Context, status string, limit int) ([]*responders.Incident, error) {
	if status == "" {
		return s.incidents(ctx, "1", "opened_at DESC", limit)
	}
	return s.incidents(ctx, "status = ?", "opened_at DESC", limit, status)
}

// Incident returns one incident, or nil when there is none with that id.
func (s *Store) Incident(ctx context.Context, id string) (*responders.Incident, error) {
	incs, err := s.incidents(ctx, "id = ?", "id", 1, id)
	if err != nil || len(incs) == 0 {
		return nil, err
	}
	return incs[0], nil
}

func (s *Store) incidents(ctx context.Context, where, order string, limit int, args ...any) ([]*responders.Incident, error) {
	q := "SELECT " + incidentColumns + " FROM " + s.db + ".incidents FINAL WHERE " + where + " ORDER BY " + order
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read incidents: %w", err)
	}
	defer rows.Close()
	var out []*responders.Incident
	for rows.Next() {
		inc := &responders.Incident{}
		var sev uint8
		var alerts uint32
		if err := rows.Scan(&inc.ID, &inc.Rule, &inc.RuleHash, &inc.RuleFileHash, &inc.RuleFile, &sev, &inc.SeverityName,
			&inc.PHI, &inc.Status, &inc.Source, &inc.Group, &inc.GroupJSON, &inc.Orgs, &inc.Namespaces, &inc.Keys,
			&inc.AdminKeys, &inc.Addresses, &inc.FirstEvent, &inc.LastEvent, &inc.SampleIDs, &inc.Query, &inc.QueryParams,
			&inc.Threshold, &inc.Value, &alerts, &inc.AlertKeys, &inc.Labels, &inc.Actions, &inc.Notes, &inc.OpenedAt,
			&inc.UpdatedAt, &inc.ResolvedAt, &inc.NotificationDue, &inc.ReviewDue, &inc.NamespaceOrgs); err != nil {
			return nil, fmt.Errorf("clickhouse: read incidents: %w", err)
		}
		inc.Severity, inc.Alerts = int(sev), int(alerts)
		for _, t := range []*time.Time{&inc.FirstEvent, &inc.LastEvent, &inc.OpenedAt, &inc.UpdatedAt, &inc.ResolvedAt, &inc.NotificationDue, &inc.ReviewDue} {
			if t.Unix() <= 0 {
				*t = time.Time{}
			} else {
				*t = t.UTC()
			}
		}
		out = append(out, inc)
	}
	return out, rows.Err()
}

// Evidence reads who was involved in the events with the given ids.
func (s *Store) Evidence(ctx context.Context, source string, ids []string, from, to time.Time) (responders.Evidence, error) {
	ev := responders.Evidence{NamespaceOrgs: map[string]string{}}
	if len(ids) == 0 {
		return ev, nil
	}
	table, idCol := "request_events", "request_id"
	if source == "audit" {
		table, idCol = "audit_events", "event_id"
	}
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT org_id, namespace, api_key_id, key_permission, ip FROM "+s.db+"."+table+
		" WHERE ts >= ? AND ts <= ? AND has(?, "+idCol+")", from.UTC(), to.UTC(), ids)
	if err != nil {
		return ev, fmt.Errorf("clickhouse: read evidence: %w", err)
	}
	defer rows.Close()
	sets := map[*[]string]map[string]bool{&ev.Orgs: {}, &ev.Namespaces: {}, &ev.Keys: {}, &ev.AdminKeys: {}, &ev.Addresses: {}}
	add := func(dst *[]string, v string) {
		if v != "" && !sets[dst][v] {
			sets[dst][v] = true
			*dst = append(*dst, v)
		}
	}
	for rows.Next() {
		var org, ns, key, perm, ip string
		if err := rows.Scan(&org, &ns, &key, &perm, &ip); err != nil {
			return ev, fmt.Errorf("clickhouse: read evidence: %w", err)
		}
		add(&ev.Orgs, org)
		add(&ev.Namespaces, ns)
		add(&ev.Keys, key)
		add(&ev.Addresses, ip)
		if perm == "ADMIN" {
			add(&ev.AdminKeys, key)
		}
		if ns != "" && org != "" {
			ev.NamespaceOrgs[ns] = org
		}
	}
	for dst := range sets {
		sort.Strings(*dst)
	}
	return ev, rows.Err()
}

const actionColumns = "at, incident_id, kind, target, outcome, guard, attempt, error, detail, expires_at"

// actionInsertColumns adds the alert_key that only the plan's records carry.
const actionInsertColumns = actionColumns + ", alert_key"

// WriteActions appends to the action log.
func (s *Store) WriteActions(ctx context.Context, recs []responders.ActionRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return s.insert(ctx, "actions ("+actionInsertColumns+")", "", func(b driver.Batch) error {
		for _, r := range recs {
			if err := b.Append(r.At.UTC(), r.IncidentID, r.Kind, r.Target, r.Outcome, r.Guard, uint16(r.Attempt),
				r.Error, r.Detail, r.ExpiresAt.UTC(), r.AlertKey); err != nil {
				return err
			}
		}
		return nil
	})
}

// Actions returns the action log of an incident, oldest first.
func (s *Store) Actions(ctx context.Context, incidentID string) ([]responders.ActionRecord, error) {
	return s.actions(ctx, "SELECT "+actionColumns+" FROM "+s.db+".actions WHERE incident_id = ? ORDER BY at", incidentID)
}

// LatestActions returns the latest planned, succeeded or failed record per
// kind and target. A skip with an attempt number counts too: the kill
// switch stopped a planned action before its call, which ends it (a skip
// at plan time has none and leaves what is in force alone).
func (s *Store) LatestActions(ctx context.Context, kinds []string) ([]responders.ActionRecord, error) {
	return s.actions(ctx, "SELECT max(at), argMax(incident_id, at), kind, target, argMax(outcome, at), '', "+
		"argMax(attempt, at), '', argMax(detail, at), argMax(expires_at, at) FROM "+s.db+".actions "+
		"WHERE has(?, kind) AND (outcome IN ('planned', 'succeeded', 'failed') OR (outcome = 'skipped' AND attempt > 0)) "+
		"GROUP BY kind, target", kinds)
}

// UnsentNotifications returns the notifications whose latest record since t
// is planned or retried, per incident and notifier.
func (s *Store) UnsentNotifications(ctx context.Context, since time.Time) ([]responders.ActionRecord, error) {
	return s.actions(ctx, "SELECT max(at), incident_id, kind, target, argMax(outcome, at) AS last, '', "+
		"argMax(attempt, at), '', argMax(detail, at), argMax(expires_at, at) FROM "+s.db+".actions "+
		"WHERE kind = ? AND at >= ? GROUP BY incident_id, kind, target HAVING last IN ('planned', 'retried')",
		responders.OpenIncident, since.UTC())
}

func (s *Store) actions(ctx context.Context, q string, args ...any) ([]responders.ActionRecord, error) {
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read actions: %w", err)
	}
	defer rows.Close()
	var out []responders.ActionRecord
	for rows.Next() {
		var r responders.ActionRecord
		var attempt uint16
		if err := rows.Scan(&r.At, &r.IncidentID, &r.Kind, &r.Target, &r.Outcome, &r.Guard, &attempt, &r.Error, &r.Detail, &r.ExpiresAt); err != nil {
			return nil, fmt.Errorf("clickhouse: read actions: %w", err)
		}
		r.Attempt = int(attempt)
		r.At, r.ExpiresAt = r.At.UTC(), r.ExpiresAt.UTC()
		if r.ExpiresAt.Unix() <= 0 {
			r.ExpiresAt = time.Time{}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// WriteBlocks records blocks in the offender ledger.
func (s *Store) WriteBlocks(ctx context.Context, recs []responders.BlockRecord) error {
	if len(recs) == 0 {
		return nil
	}
	now := time.Now().UTC()
	return s.insert(ctx, "blocks (prefix, incident_id, blocked_at, expires_at, offense, status, updated_at)", "", func(b driver.Batch) error {
		for i, r := range recs {
			if err := b.Append(r.Prefix, r.IncidentID, r.BlockedAt.UTC(), r.ExpiresAt.UTC(), uint32(r.Offense), r.Status,
				now.Add(time.Duration(i)*time.Microsecond)); err != nil {
				return err
			}
		}
		return nil
	})
}

// ActiveBlocks returns the blocks in force or due for removal.
func (s *Store) ActiveBlocks(ctx context.Context) ([]responders.BlockRecord, error) {
	rows, err := s.conn.Query(ctx, "SELECT prefix, incident_id, blocked_at, expires_at, offense, status FROM "+s.db+
		".blocks FINAL WHERE status = 'active' ORDER BY expires_at")
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read blocks: %w", err)
	}
	defer rows.Close()
	var out []responders.BlockRecord
	for rows.Next() {
		var r responders.BlockRecord
		var off uint32
		if err := rows.Scan(&r.Prefix, &r.IncidentID, &r.BlockedAt, &r.ExpiresAt, &off, &r.Status); err != nil {
			return nil, fmt.Errorf("clickhouse: read blocks: %w", err)
		}
		r.Offense = int(off)
		r.BlockedAt, r.ExpiresAt = r.BlockedAt.UTC(), r.ExpiresAt.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// Offenses counts the blocks of a range since t that were applied (a
// block not applied is no offense). Rows with no TTL are what unblocking
// a range that was not blocked used to write: no offense either.
func (s *Store) Offenses(ctx context.Context, prefix string, since time.Time) (int, error) {
	var n uint64
	err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.db+".blocks FINAL WHERE prefix = ? AND blocked_at >= ? "+
		"AND status IN ('active', 'removed') AND expires_at > blocked_at", prefix, since.UTC()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("clickhouse: read block ledger: %w", err)
	}
	return int(n), nil
}

// PendingAlerts returns alerts stored since t that no incident holds yet.
func (s *Store) PendingAlerts(ctx context.Context, since time.Time) ([]responders.StoredAlert, error) {
	return s.storedAlerts(ctx, "pending alerts", "SELECT alert_key, alert_json FROM "+s.db+".alerts FINAL WHERE stored_at >= ? AND NOT shadow AND alert_key NOT IN "+
		"(SELECT arrayJoin(alert_keys) FROM "+s.db+".incidents WHERE updated_at >= ?) ORDER BY at, alert_key", since.UTC(), since.UTC())
}

// UnplannedAlerts returns the alerts held by incidents updated since t
// whose plan was never written: no action record carries the alert's key
// (a plan writes all its records in one insert, each with the key). An
// incident planned before action records carried keys counts as planned
// when it has a planned, skipped or dry-run record and none with a key.
func (s *Store) UnplannedAlerts(ctx context.Context, since time.Time) ([]responders.StoredAlert, error) {
	return s.storedAlerts(ctx, "unplanned alerts", "SELECT alert_key, alert_json FROM "+s.db+".alerts FINAL WHERE stored_at >= ? AND NOT shadow AND alert_key IN "+
		"(SELECT arrayJoin(alert_keys) FROM "+s.db+".incidents WHERE updated_at >= ? AND id NOT IN "+
		"(SELECT incident_id FROM "+s.db+".actions GROUP BY incident_id HAVING countIf(alert_key != '') = 0 AND countIf(outcome IN ('planned', 'skipped', 'dry_run')) > 0)) "+
		"AND alert_key NOT IN (SELECT alert_key FROM "+s.db+".actions WHERE alert_key != '' AND at >= ?) "+
		"ORDER BY at, alert_key", since.UTC(), since.UTC(), since.UTC())
}

func (s *Store) storedAlerts(ctx context.Context, what, q string, args ...any) ([]responders.StoredAlert, error) {
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read %s: %w", what, err)
	}
	defer rows.Close()
	var out []responders.StoredAlert
	for rows.Next() {
		var a responders.StoredAlert
		if err := rows.Scan(&a.Key, &a.JSON); err != nil {
			return nil, fmt.Errorf("clickhouse: read %s: %w", what, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

const pausedSetting = "responders.paused"

// Paused reads the responders' kill switch.
func (s *Store) Paused(ctx context.Context) (bool, error) {
	var v string
	err := s.conn.QueryRow(ctx, "SELECT argMax(value, at) FROM "+s.db+".control WHERE name = ?", pausedSetting).Scan(&v)
	if err != nil {
		return false, fmt.Errorf("clickhouse: read kill switch: %w", err)
	}
	return v == "true", nil
}

// SetPaused sets the responders' kill switch for every daemon using this database.
func (s *Store) SetPaused(ctx context.Context, paused bool) error {
	return s.insert(ctx, "control (name, value, at)", "", func(b driver.Batch) error {
		return b.Append(pausedSetting, fmt.Sprint(paused), time.Now().UTC())
	})
}
