package cloudflare

import (
	"context"

	"github.com/cloudflare/cloudflare-go/v6/firewall"
	"github.com/cloudflare/cloudflare-go/v6/option"

	"github.com/vigil-sec/vigil/responders"
)

const (
	opAccessRules      = "GET /zones/{zone_id}/firewall/access_rules/rules"
	opNewAccessRule    = "POST /zones/{zone_id}/firewall/access_rules/rules"
	opDeleteAccessRule = "DELETE /zones/{zone_id}/firewall/access_rules/rules/{rule_id}"

	accessRulesPerPage = 100
)

// accessRuleStore keeps ranges as IP Access Rules of a zone, one rule per
// range. Writes are synchronous, one request each. All its methods run
// under Client.mu.
type accessRuleStore struct {
	api    *api
	zoneID string
}

func (s *accessRuleStore) setup(context.Context) error { return nil }

func (s *accessRuleStore) list(ctx context.Context) ([]entry, error) {
	var out []entry
	for page := 1; ; page++ {
		var p firewall.AccessRuleListParams
		p.ZoneID.Value = s.zoneID
		p.Page.Value, p.Page.Present = float64(page), true
		p.PerPage.Value, p.PerPage.Present = accessRulesPerPage, true
		var rules []firewall.AccessRuleListResponse
		perPage := accessRulesPerPage
		err := s.api.call(opAccessRules, func(o ...option.RequestOption) error {
			res, err := s.api.access.List(ctx, p, o...)
			if err == nil {
				rules = res.Result
				if n := int(res.ResultInfo.PerPage); n > 0 {
					perPage = n // the server may cap the page size
				}
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			switch r.Configuration.Target {
			case firewall.AccessRuleListResponseConfigurationTargetIP,
				firewall.AccessRuleListResponseConfigurationTargetIp6,
				firewall.AccessRuleListResponseConfigurationTargetIPRange:
				if prefix, ok := parseEdgeValue(r.Configuration.Value); ok {
					out = append(out, entry{prefix: prefix, id: r.ID, comment: r.Notes})
				}
			}
		}
		if len(rules) < perPage || len(rules) == 0 {
			return out, nil
		}
	}
}

func (s *accessRuleStore) add(ctx context.Context, blocks []responders.Block) ([]entry, error) {
	added := make([]entry, 0, len(blocks))
	for _, b := range blocks {
		var p firewall.AccessRuleNewParams
		p.ZoneID.Value = s.zoneID
		p.Mode.Value, p.Mode.Present = firewall.AccessRuleNewParamsModeBlock, true
		p.Notes.Value, p.Notes.Present = b.Comment(), true
		if b.Prefix.Addr().Is4() {
			var c firewall.AccessRuleIPConfigurationParam
			c.Target.Value, c.Target.Present = firewall.AccessRuleIPConfigurationTargetIP, true
			c.Value.Value, c.Value.Present = edgeValue(b.Prefix), true
			p.Configuration.Value, p.Configuration.Present = c, true
		} else {
			// The ip6 target takes a single address; a /64 is an ip_range.
			var c firewall.AccessRuleCIDRConfigurationParam
			c.Target.Value, c.Target.Present = firewall.AccessRuleCIDRConfigurationTargetIPRange, true
			c.Value.Value, c.Value.Present = edgeValue(b.Prefix), true
			p.Configuration.Value, p.Configuration.Present = c, true
		}
		var id string
		err := s.api.call(opNewAccessRule, func(o ...option.RequestOption) error {
			r, err := s.api.access.New(ctx, p, o...)
			if err == nil {
				id = r.ID
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		added = append(added, entry{prefix: b.Prefix, id: id, comment: b.Comment()})
	}
	return added, nil
}

func (s *accessRuleStore) remove(ctx context.Context, entries []entry) error {
	for _, e := range entries {
		var p firewall.AccessRuleDeleteParams
		p.ZoneID.Value = s.zoneID
		err := s.api.call(opDeleteAccessRule, func(o ...option.RequestOption) error {
			_, err := s.api.access.Delete(ctx, e.id, p, o...)
			return err
		})
		if err != nil && responders.StatusOf(err) != 404 { // gone already is fine
			return err
		}
	}
	return nil
}
