package ingest

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"
)

// Elect runs lead while this process owns the only partition of topic in
// group, and returns when ctx ends. The consumer group protocol is the
// election: among the processes calling Elect with the same group, at most
// one member is assigned the partition in a generation, and a member that
// dies loses it when its session times out. lead's context ends when the
// generation does (a rebalance), and the next generation starts only after
// lead has returned. The topic must exist with one partition (EnsureTopics).
func Elect(ctx context.Context, cfg Config, group, topic string, lead func(ctx context.Context)) error {
	cfg, mech, err := cfg.prepare(false)
	if err != nil {
		return err
	}
	info, errs := kafkaLoggers(cfg.Logger, "elect")
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                group,
		Brokers:           cfg.Brokers,
		Topics:            []string{topic},
		Dialer:            cfg.newDialer(mech),
		HeartbeatInterval: cfg.HeartbeatInterval,
		SessionTimeout:    cfg.SessionTimeout,
		RebalanceTimeout:  cfg.RebalanceTimeout,
		JoinGroupBackoff:  cfg.HeartbeatInterval,
		Logger:            info,
		ErrorLogger:       errs,
	})
	if err != nil {
		return err
	}
	defer cg.Close()
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			cfg.Logger.Warn("ingest: election: joining the group failed; retrying", "group", group, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(cfg.HeartbeatInterval):
			}
			continue
		}
		if len(gen.Assignments[topic]) > 0 {
			gen.Start(lead)
		}
	}
}
