package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
)

// generationsBucket keeps each stream's playback-token generation (on
// disk): a revocation on any node holds on every node.
const generationsBucket = "glasscast_generations"

// PutGeneration records a stream's playback-token generation; every node
// hears of it (Config.Generation). A generation only rises: the write is a
// compare-and-set on the entry's revision, and one already at gen or above
// is left as it is (two nodes revoking at once cannot lower it).
func (c *Cluster) PutGeneration(ctx context.Context, streamID string, gen uint32) error {
	if err := c.WaitReady(ctx); err != nil {
		return err
	}
	kv := c.generationsKV
	value := []byte(strconv.FormatUint(uint64(gen), 10))
	for try := 1; ; try++ {
		got, err := kv.Get(ctx, streamID)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = kv.Create(ctx, streamID, value)
		case err != nil:
			return fmt.Errorf("cluster: generation of %s: %w", streamID, err)
		default:
			if cur, perr := strconv.ParseUint(string(got.Value()), 10, 32); perr == nil && cur >= uint64(gen) {
				return nil
			}
			_, err = kv.Update(ctx, streamID, value, got.Revision())
		}
		if err == nil {
			return nil
		}
		if try >= 4 {
			return fmt.Errorf("cluster: generation of %s: %w", streamID, err)
		}
	}
}

// watchGenerations tells Config.Generation of every generation recorded,
// and of each one recorded from then on.
func (c *Cluster) watchGenerations() {
	c.follow(c.generationsKV, func(key string, value []byte, deleted bool) {
		if deleted || c.cfg.Generation == nil {
			return
		}
		if gen, err := strconv.ParseUint(string(value), 10, 32); err == nil {
			c.cfg.Generation(key, uint32(gen))
		}
	})
}
