package main

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/vigil-sec/vigil/config"
	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/pipeline"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
)

// keyedReplica is one replica of keyed detection (docs/scaling.md): a
// router pipeline that stores the input and re-keys it into repartition
// topics, and a detecting pipeline over the partitions of those topics the
// group gives this replica.
type keyedReplica struct {
	route, detect          *pipeline.Pipeline
	consumers              []*ingest.Consumer
	router                 *ingest.Router
	electGroup, electTopic string
}

func (k *keyedReplica) close() {
	for _, c := range k.consumers {
		c.Close()
	}
	k.router.Close()
}

// startKeyed creates the repartition topics and the two pipelines.
func startKeyed(ctx context.Context, cfg *config.Config, rs []*rules.Rule, icfg ingest.Config, plCfg pipeline.Config,
	store *storage.Store, dlq pipeline.DeadLetterSink, log *slog.Logger) (*keyedReplica, error) {
	sc := cfg.Scaling
	prefix := sc.TopicPrefix
	if prefix == "" {
		prefix = cfg.Kafka.GroupID + "-"
	}
	inputs := map[event.Source]string{event.Requests: cfg.Kafka.Topics.Requests, event.Audit: cfg.Kafka.Topics.Audit}
	keyedBy := map[event.Source][]string{}
	for src, fields := range sc.KeyedInputs {
		s, _ := event.ParseSource(src)
		keyedBy[s] = fields
	}
	fams := pipeline.Families(rs, prefix, inputs, keyedBy)
	if len(fams) == 0 {
		return nil, errors.New("scaling.mode keyed: no rules are loaded, so there is nothing to partition by")
	}
	lookback := func(rs []*rules.Rule) time.Duration {
		return detector.Lookback(rs, cfg.Detector.Lateness.D(), cfg.Detector.RebuildLookback.D())
	}
	// Each family's topic keeps its own rules' lookback: a family of
	// short windows need not keep a day of events because another holds
	// a new_value rule.
	retention := func(rs []*rules.Rule) time.Duration {
		if d := sc.Retention.D(); d > 0 {
			return d
		}
		return lookback(rs) + time.Hour
	}
	k := &keyedReplica{electGroup: cfg.Kafka.GroupID + "-responders", electTopic: prefix + "responders"}
	specs := map[string]ingest.TopicSpec{k.electTopic: {Partitions: 1, Replication: sc.Replication}}
	detTopics := map[string]event.Source{}
	byTopic := map[string]*pipeline.Family{}
	routed := false
	for _, f := range fams {
		detTopics[f.Topic], byTopic[f.Topic] = f.Source, f
		if d := sc.Retention.D(); d > 0 && d < lookback(f.Rules) {
			log.Warn("scaling.retention is shorter than a family's lookback: a gained partition's state will lack the oldest events",
				"family", f.Topic, "retention", d.String(), "lookback", lookback(f.Rules).String())
		}
		if !f.Direct {
			routed = true
			specs[f.Topic] = ingest.TopicSpec{Partitions: sc.Partitions, Replication: sc.Replication,
				Configs: map[string]string{"retention.ms": strconv.FormatInt(retention(f.Rules).Milliseconds(), 10)}}
		}
	}
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := ingest.EnsureTopics(tctx, icfg, specs); err != nil {
		return nil, err
	}

	routerCfg := icfg
	routerCfg.GroupID = cfg.Kafka.GroupID + "-router"
	rc, err := ingest.NewConsumer(routerCfg)
	if err != nil {
		return nil, err
	}
	k.consumers = append(k.consumers, rc)
	parts := map[string]int{}
	for t, spec := range specs {
		parts[t] = spec.Partitions
	}
	if k.router, err = ingest.NewRouter(icfg, parts); err != nil {
		k.consumers[0].Close()
		return nil, err
	}
	rcfg := plCfg
	read := func(ctx context.Context, topic string, partition int, from, until int64, fn func(ingest.Message) error) error {
		return ingest.ReadPartition(ctx, icfg, topic, partition, from, until, fn)
	}
	detCfg := detectorConfig(cfg)
	rcfg.OnAlert, rcfg.Routes, rcfg.Router, rcfg.Read, rcfg.Enrich = nil, pipeline.Routes(fams, sc.Partitions), k.router, read, detCfg.Enrich
	k.route = pipeline.New(rcfg, rc, store, dlq, nil)

	dcfg := icfg
	dcfg.Topics = detTopics
	dc, err := ingest.NewConsumer(dcfg)
	if err != nil {
		k.close()
		return nil, err
	}
	k.consumers = append(k.consumers, dc)
	detCfg.Shards = 1 // one detector per partition; partitions spread the work
	if detCfg.Epoch, err = streamEpoch(ctx, dc, icfg); err != nil {
		k.close()
		return nil, err
	}
	kd := &pipeline.Keyed{
		Families:    byTopic,
		NewDetector: func(rs []*rules.Rule) *detector.Detector { return detector.New(rs, detCfg) },
		Lookback:    lookback,
	}
	if routed {
		kd.Inputs = func(ctx context.Context) ([]ingest.Position, error) {
			return dc.PositionsOf(ctx, routerCfg.GroupID, icfg.Topics)
		}
	}
	dpl := plCfg
	dpl.Keyed, dpl.Read = kd, read
	k.detect = pipeline.New(dpl, dc, store, dlq, nil)
	names := make([]string, 0, len(fams))
	for _, f := range fams {
		names = append(names, f.Topic)
	}
	log.Info("keyed detection", "families", names, "epoch", time.Unix(0, detCfg.Epoch).UTC().Format(time.RFC3339), "partitions", sc.Partitions, "router_group", routerCfg.GroupID,
		"responders_group", k.electGroup)
	return k, nil
}

// errFound stops a partition read at the first valid record.
var errFound = errors.New("found")

// streamEpoch returns the event time of the stream's first event: the
// earliest first valid record of the input partitions, which is where
// `vigil replay --merge` starts. Keyed detectors count learning periods
// from it, since each sees only part of the stream; 0 when the inputs are
// empty.
func streamEpoch(ctx context.Context, c *ingest.Consumer, icfg ingest.Config) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ps, err := c.PositionsOf(ctx, icfg.GroupID, icfg.Topics)
	if err != nil {
		return 0, err
	}
	var epoch int64
	for _, p := range ps {
		var dec event.Decoder
		var e event.Event
		err := ingest.ReadPartition(ctx, icfg, p.Topic, p.Partition, 0, -1, func(m ingest.Message) error {
			if dec.Decode(p.Source, m.Value, &e) != nil {
				return nil
			}
			if epoch == 0 || e.TS < epoch {
				epoch = e.TS
			}
			return errFound
		})
		if err != nil && !errors.Is(err, errFound) {
			return 0, err
		}
	}
	return epoch, nil
}
