package cloudflare

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/cloudflare/cloudflare-go/v6/option"
	"github.com/cloudflare/cloudflare-go/v6/rules"
	"github.com/cloudflare/cloudflare-go/v6/rulesets"

	"github.com/vigil-sec/vigil/responders"
)

// Endpoint templates, used as CallError.Op.
const (
	opLists       = "GET /accounts/{account_id}/rules/lists"
	opCreateList  = "POST /accounts/{account_id}/rules/lists"
	opListItems   = "GET /accounts/{account_id}/rules/lists/{list_id}/items"
	opAppendItems = "POST /accounts/{account_id}/rules/lists/{list_id}/items"
	opDeleteItems = "DELETE /accounts/{account_id}/rules/lists/{list_id}/items"
	opBulkStatus  = "GET /accounts/{account_id}/rules/lists/bulk_operations/{operation_id}"
	opEntrypoint  = "GET /zones/{zone_id}/rulesets/phases/http_request_firewall_custom/entrypoint"
	opNewRuleset  = "POST /zones/{zone_id}/rulesets"
	opNewRule     = "POST /zones/{zone_id}/rulesets/{ruleset_id}/rules"
)

const (
	// maxBulkItems is the most items sent in one list write; Cloudflare
	// caps the size of a request.
	maxBulkItems = 1000
	// itemsPerPage is the page size when reading list items.
	itemsPerPage = 500
)

// listStore keeps ranges as items of an account IP list that a WAF custom
// rule blocks. All its methods run under Client.mu.
type listStore struct {
	api                     *api
	log                     *slog.Logger
	accountID, zoneID, name string
	description             string // of the WAF rule
	pollEvery, pollFor      time.Duration

	listID  string // found or created once, then cached
	ruleOK  bool   // the WAF rule is known to exist
	pending string // a bulk operation not yet seen to finish
}

func (s *listStore) expression() string { return "ip.src in $" + s.name }

func (s *listStore) setup(ctx context.Context) error {
	if s.listID == "" {
		id, err := s.findList(ctx)
		if err == nil && id == "" {
			id, err = s.createList(ctx)
		}
		if err != nil {
			return err
		}
		s.listID = id
	}
	if !s.ruleOK && s.zoneID != "" {
		if err := s.ensureRule(ctx); err != nil {
			return err
		}
	}
	s.ruleOK = true
	return nil
}

// findList returns the id of the IP list named s.name, or "".
func (s *listStore) findList(ctx context.Context) (string, error) {
	var p rules.ListListParams
	p.AccountID.Value = s.accountID
	var lists []rules.ListsList
	err := s.api.call(opLists, func(o ...option.RequestOption) error {
		page, err := s.api.lists.List(ctx, p, o...)
		if err == nil {
			lists = page.Result
		}
		return err
	})
	if err != nil {
		return "", err
	}
	for _, l := range lists {
		if l.Name != s.name {
			continue
		}
		if l.Kind != rules.ListsListKindIP {
			return "", &responders.CallError{System: system, Op: opLists, Final: true, Msg: fmt.Sprintf(
				"the account already has a list named %q of kind %q; choose another %slist_name", s.name, l.Kind, keyPrefix)}
		}
		return l.ID, nil
	}
	return "", nil
}

func (s *listStore) createList(ctx context.Context) (string, error) {
	var p rules.ListNewParams
	p.AccountID.Value = s.accountID
	p.Kind.Value, p.Kind.Present = rules.ListNewParamsKindIP, true
	p.Name.Value, p.Name.Present = s.name, true
	p.Description.Value, p.Description.Present = "Addresses blocked by Vigil; items are added and removed automatically", true
	var id string
	err := s.api.call(opCreateList, func(o ...option.RequestOption) error {
		l, err := s.api.lists.New(ctx, p, o...)
		if err == nil {
			id = l.ID
		}
		return err
	})
	if err != nil {
		// Another replica may have created it since our lookup.
		if again, _ := s.findList(ctx); again != "" {
			return again, nil
		}
		return "", err
	}
	s.log.Info("cloudflare: created IP list", "list", s.name, "id", id)
	return id, nil
}

// ensureRule adds the WAF custom rule blocking the list to the zone's
// entrypoint ruleset, creating the entrypoint if the zone has none. Rules
// already there are left as they are.
func (s *listStore) ensureRule(ctx context.Context) error { return s.ensureRuleIn(ctx, true) }

// ensureRuleIn is ensureRule; without mayCreate a zone with no entrypoint
// is the lookup's 404 error.
func (s *listStore) ensureRuleIn(ctx context.Context, mayCreate bool) error {
	var p rulesets.PhaseGetParams
	p.ZoneID.Value = s.zoneID
	var entrypoint *rulesets.PhaseGetResponse
	err := s.api.call(opEntrypoint, func(o ...option.RequestOption) (err error) {
		entrypoint, err = s.api.rulesets.Phases.Get(ctx, rulesets.PhaseHTTPRequestFirewallCustom, p, o...)
		return err
	})
	if responders.StatusOf(err) == 404 && mayCreate {
		return s.createEntrypoint(ctx)
	}
	if err != nil {
		return err
	}
	for _, r := range entrypoint.Rules {
		if !sameExpression(r.Expression, s.expression()) {
			continue
		}
		if !r.Enabled || r.Action != rulesets.PhaseGetResponseRulesActionBlock {
			s.log.Warn("cloudflare: the WAF rule for the block list exists but does not block; blocks have no effect until it does",
				"zone", s.zoneID, "rule", r.ID, "action", r.Action, "enabled", r.Enabled)
		}
		return nil
	}
	rulesetID := entrypoint.ID
	var np rulesets.RuleNewParams
	np.ZoneID.Value = s.zoneID
	np.Body = rulesets.RuleNewParamsBodyBlockRule{BlockRuleParam: s.blockRule()}
	err = s.api.call(opNewRule, func(o ...option.RequestOption) error {
		_, err := s.api.rulesets.Rules.New(ctx, rulesetID, np, o...)
		return err
	})
	if err == nil {
		s.log.Info("cloudflare: added the WAF custom rule", "zone", s.zoneID, "ruleset", rulesetID, "expression", s.expression())
	}
	return err
}

func (s *listStore) createEntrypoint(ctx context.Context) error {
	var p rulesets.RulesetNewParams
	p.ZoneID.Value = s.zoneID
	p.Kind.Value, p.Kind.Present = rulesets.KindZone, true
	p.Name.Value, p.Name.Present = "default", true
	p.Phase.Value, p.Phase.Present = rulesets.PhaseHTTPRequestFirewallCustom, true
	p.Rules.Value, p.Rules.Present = []rulesets.RulesetNewParamsRuleUnion{s.blockRule()}, true
	err := s.api.call(opNewRuleset, func(o ...option.RequestOption) error {
		_, err := s.api.rulesets.New(ctx, p, o...)
		return err
	})
	if err != nil {
		// Another replica, or an operator command, may have created it
		// since our lookup (Cloudflare then answers 20217): add the rule to
		// that one, as createList does with the list.
		if s.ensureRuleIn(ctx, false) == nil {
			return nil
		}
		return err
	}
	s.log.Info("cloudflare: created the zone's custom rules entrypoint with the block rule", "zone", s.zoneID, "expression", s.expression())
	return nil
}

func (s *listStore) blockRule() rulesets.BlockRuleParam {
	var r rulesets.BlockRuleParam
	r.Action.Value, r.Action.Present = rulesets.BlockRuleActionBlock, true
	r.Expression.Value, r.Expression.Present = s.expression(), true
	r.Description.Value, r.Description.Present = s.description, true
	r.Enabled.Value, r.Enabled.Present = true, true
	return r
}

func sameExpression(a, b string) bool {
	return strings.Join(strings.Fields(a), " ") == strings.Join(strings.Fields(b), " ")
}

func (s *listStore) list(ctx context.Context) ([]entry, error) {
	// Our own unfinished write would make the read stale.
	if err := s.await(ctx); err != nil {
		return nil, err
	}
	var out []entry
	cursor := ""
	for {
		var p rules.ListItemListParams
		p.AccountID.Value = s.accountID
		p.PerPage.Value, p.PerPage.Present = itemsPerPage, true
		if cursor != "" {
			p.Cursor.Value, p.Cursor.Present = cursor, true
		}
		next := ""
		err := s.api.call(opListItems, func(o ...option.RequestOption) error {
			page, err := s.api.lists.Items.List(ctx, s.listID, p, o...)
			if err != nil {
				return err
			}
			for _, it := range page.Result {
				prefix, ok := parseEdgeValue(it.IP)
				if !ok {
					s.log.Warn("cloudflare: skipping a list item that is not an address", "list", s.name, "item", it.ID)
					continue
				}
				out = append(out, entry{prefix: prefix, id: it.ID, comment: it.Comment})
			}
			if len(page.Result) > 0 {
				next = page.ResultInfo.Cursors.After
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if next == "" || next == cursor {
			return out, nil
		}
		cursor = next
	}
}

func (s *listStore) add(ctx context.Context, blocks []responders.Block) ([]entry, error) {
	added := make([]entry, 0, len(blocks))
	for chunk := range slices.Chunk(blocks, maxBulkItems) {
		var p rules.ListItemNewParams
		p.AccountID.Value = s.accountID
		p.Body = make([]rules.ListItemNewParamsBodyUnion, len(chunk))
		for i, b := range chunk {
			var item rules.ListItemNewParamsBodyListsListItemIPComment
			item.IP.Value, item.IP.Present = edgeValue(b.Prefix), true
			item.Comment.Value, item.Comment.Present = b.Comment(), true
			p.Body[i] = item
		}
		err := s.bulk(ctx, opAppendItems, func(o ...option.RequestOption) (string, error) {
			r, err := s.api.lists.Items.New(ctx, s.listID, p, o...)
			if err != nil {
				return "", err
			}
			return r.OperationID, nil
		})
		if err != nil {
			return nil, err
		}
		for _, b := range chunk {
			added = append(added, entry{prefix: b.Prefix, comment: b.Comment()})
		}
	}
	return added, nil
}

func (s *listStore) remove(ctx context.Context, entries []entry) error {
	for chunk := range slices.Chunk(entries, maxBulkItems) {
		var p rules.ListItemDeleteParams
		p.AccountID.Value = s.accountID
		ids := make([]rules.ListItemDeleteParamsItem, len(chunk))
		for i, e := range chunk {
			ids[i].ID.Value, ids[i].ID.Present = e.id, true
		}
		p.Items.Value, p.Items.Present = ids, true
		err := s.bulk(ctx, opDeleteItems, func(o ...option.RequestOption) (string, error) {
			r, err := s.api.lists.Items.Delete(ctx, s.listID, p, o...)
			if err != nil {
				return "", err
			}
			return r.OperationID, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// bulk runs one list write after the previous one finished, and waits
// for it to finish in turn.
func (s *listStore) bulk(ctx context.Context, op string, write func(o ...option.RequestOption) (string, error)) error {
	if err := s.await(ctx); err != nil {
		return err
	}
	var opID string
	err := s.api.call(op, func(o ...option.RequestOption) error {
		var err error
		opID, err = write(o...)
		return err
	})
	if err != nil {
		return err
	}
	if opID == "" {
		return &responders.CallError{System: system, Op: op, Final: true, Msg: "malformed answer: no operation_id"}
	}
	s.pending = opID
	return s.await(ctx)
}

// await polls the pending bulk operation until it completes or fails,
// for about s.pollFor.
func (s *listStore) await(ctx context.Context) error {
	if s.pending == "" {
		return nil
	}
	var p rules.ListBulkOperationGetParams
	p.AccountID.Value = s.accountID
	deadline := time.Now().Add(s.pollFor)
	timer := time.NewTimer(s.pollEvery)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return &responders.CallError{System: system, Op: opBulkStatus,
				Msg: fmt.Sprintf("stopped waiting for bulk operation %s: %v", s.pending, ctx.Err())}
		case <-timer.C:
		}
		if time.Now().After(deadline) {
			return &responders.CallError{System: system, Op: opBulkStatus, Msg: fmt.Sprintf(
				"bulk operation %s still pending after %s (responders.cloudflare.bulk_timeout); the next list write waits for it first",
				s.pending, s.pollFor)}
		}
		var status rules.ListBulkOperationGetResponseStatus
		var failure string
		err := s.api.call(opBulkStatus, func(o ...option.RequestOption) error {
			r, err := s.api.lists.BulkOperations.Get(ctx, s.pending, p, o...)
			if err == nil {
				status, failure = r.Status, r.Error
			}
			return err
		})
		switch {
		case responders.StatusOf(err) == 404:
			// Cloudflare no longer knows it, so it cannot block writes.
			s.log.Warn("cloudflare: bulk operation vanished before it was seen to finish; the next read of the list shows its effect",
				"operation", s.pending)
			s.pending = ""
			return nil
		case err != nil:
			return err
		case status == rules.ListBulkOperationGetResponseStatusCompleted:
			s.pending = ""
			return nil
		case status == rules.ListBulkOperationGetResponseStatusFailed:
			id := s.pending
			s.pending = ""
			return &responders.CallError{System: system, Op: opBulkStatus, Final: true,
				Msg: fmt.Sprintf("bulk operation %s failed: %s", id, failure)}
		}
		timer.Reset(s.pollEvery)
	}
}
