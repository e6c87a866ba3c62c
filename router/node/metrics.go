package node

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router/worker"
)

// instruments are the node's OpenTelemetry instruments, named after the messaging semantic
// conventions where one fits (DESIGN.md §7). Attribute sets stay bounded: queue, shard id,
// operation, outcome.
type instruments struct {
	consumed  metric.Int64Counter     // messaging.client.consumed.messages
	operation metric.Float64Histogram // messaging.client.operation.duration (claims)
	process   metric.Float64Histogram // messaging.process.duration (handlers)
	acks      metric.Int64Counter     // braid.node.acks

	units, maintained atomic.Int64
}

var systemAttr = attribute.String("messaging.system", "braid")

func newInstruments(mp metric.MeterProvider, n *Node) (*instruments, error) {
	m := mp.Meter("github.com/braidq/braid/router/node")
	in := &instruments{}
	var err error
	if in.consumed, err = m.Int64Counter("messaging.client.consumed.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Jobs claimed by this node.")); err != nil {
		return nil, err
	}
	if in.operation, err = m.Float64Histogram("messaging.client.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of claim calls to a shard.")); err != nil {
		return nil, err
	}
	if in.process, err = m.Float64Histogram("messaging.process.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of job handlers.")); err != nil {
		return nil, err
	}
	if in.acks, err = m.Int64Counter("braid.node.acks", metric.WithUnit("{ack}"),
		metric.WithDescription("Acknowledgements by action and what the shard did with them.")); err != nil {
		return nil, err
	}
	units, err := m.Int64ObservableGauge("braid.node.units", metric.WithUnit("{unit}"),
		metric.WithDescription("Claim units (shard, queue, lane) this node owns."))
	if err != nil {
		return nil, err
	}
	maint, err := m.Int64ObservableGauge("braid.node.maintained_shards", metric.WithUnit("{shard}"),
		metric.WithDescription("Shards whose maintenance candidate this node is."))
	if err != nil {
		return nil, err
	}
	running, err := m.Int64ObservableGauge("braid.node.running", metric.WithUnit("{job}"),
		metric.WithDescription("Handlers running on this node."))
	if err != nil {
		return nil, err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(units, in.units.Load())
		o.ObserveInt64(maint, in.maintained.Load())
		o.ObserveInt64(running, int64(n.running.len()))
		return nil
	}, units, maint, running)
	if err != nil {
		return nil, err
	}
	return in, nil
}

func destination(queue string, shardID int) []attribute.KeyValue {
	return []attribute.KeyValue{systemAttr, attribute.String("messaging.destination.name", queue),
		attribute.String("messaging.destination.partition.id", strconv.Itoa(shardID))}
}

func (in *instruments) claimed(ctx context.Context, u unit, n int, d time.Duration, err error) {
	attrs := append(destination(u.queue, u.shard), attribute.String("messaging.operation.name", "claim"))
	if err != nil {
		attrs = append(attrs, attribute.String("error.type", "claim_failed"))
	}
	in.operation.Record(ctx, d.Seconds(), metric.WithAttributes(attrs...))
	if n > 0 {
		in.consumed.Add(ctx, int64(n), metric.WithAttributes(destination(u.queue, u.shard)...))
	}
}

func (in *instruments) processed(c engine.Claimed, res worker.Result) {
	attrs := append(destination(c.Queue, c.Receipt.ShardID), attribute.String("braid.job.action", res.Action.String()))
	in.process.Record(context.Background(), res.Duration.Seconds(), metric.WithAttributes(attrs...))
}

func (in *instruments) acked(acks []worker.Acked) {
	for _, a := range acks {
		outcome := "error"
		if a.Err == nil {
			outcome = a.Outcome.String()
		}
		in.acks.Add(context.Background(), 1, metric.WithAttributes(
			attribute.String("braid.job.action", a.Action.String()), attribute.String("braid.ack.outcome", outcome)))
	}
}

func (in *instruments) setOwned(units, maintained int) {
	in.units.Store(int64(units))
	in.maintained.Store(int64(maintained))
}
