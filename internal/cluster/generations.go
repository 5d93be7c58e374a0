package cluster

import (
	"context"
	"fmt"
	"strconv"
)

// generationsBucket keeps each stream's playback-token generation (on
// disk): a revocation on any node holds on every node.
const generationsBucket = "glasscast_generations"

// PutGeneration records a stream's playback-token generation; every node
// hears of it (Config.Generation).
func (c *Cluster) PutGeneration(ctx context.Context, streamID string, gen uint32) error {
	if err := c.WaitReady(ctx); err != nil {
		return err
	}
	if _, err := c.generationsKV.Put(ctx, streamID, []byte(strconv.FormatUint(uint64(gen), 10))); err != nil {
		return fmt.Errorf("cluster: generation of %s: %w", streamID, err)
	}
	return nil
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
