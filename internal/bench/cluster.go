package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/sim"
)

// clusterStreams is how many streams the cluster scenario relays.
const clusterStreams = 20

// clusterScenario measures what playing a stream on a node that is not its
// origin costs: two nodes with embedded NATS, streams published to the
// origin, viewers on the relay node. It reports the relay node's CPU and
// memory per relayed stream with one viewer, the latency a relay adds over
// the origin's own (LL-HLS and WebRTC, from the clip's SEI stamps), and how
// long a first viewer waits for a first part on each node.
func clusterScenario(o options, clip *sim.Clip) (map[string]any, error) {
	n := clusterStreams
	fmt.Fprintf(o.out, "\n== cluster: two nodes (embedded NATS, %s), %d streams published to the origin, viewers on the relay node (%v per point)\n", routesKind(o), n, o.duration)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	origin, relay, err := startPair(ctx, o.clusterPlain)
	if err != nil {
		return nil, err
	}
	defer origin.stop()
	defer relay.stop()

	var wg sync.WaitGroup
	errs := make(chan error, 1)
	var streams []*streamInfo
	for i := range n {
		st, err := origin.createStream(fmt.Sprintf("relayed-%d", i))
		if err != nil {
			return nil, err
		}
		streams = append(streams, st)
		publish(ctx, &wg, clip, st.Ingest.RTMPURL, errs)
	}
	for _, st := range streams {
		if _, code, err := get(ctx, st.Playback.HLS); err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("stream %s did not start: %d %v", st.ID, code, err)
		}
		if err := relay.waitStream(ctx, st.ID); err != nil {
			return nil, err
		}
	}
	out := map[string]any{"streams": n}

	// Both nodes with no viewer: the relay node relays nothing.
	idleCPU, _, idleRSS, err := relay.cpuWindow(o)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.out, "  relay node, no viewer:            %5.1f %% CPU  %6.1f MB\n", idleCPU, idleRSS)
	originIdle, _, originIdleRSS, err := origin.cpuWindow(o)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.out, "  origin, no viewer:                %5.1f %% CPU  %6.1f MB\n", originIdle, originIdleRSS)

	// First viewers: on the relay node the first request starts the relay.
	var firstRelay, firstOrigin []time.Duration
	for _, st := range streams {
		d, err := firstPart(ctx, on(relay, st.Playback.HLS))
		if err != nil {
			return nil, fmt.Errorf("relay node, first viewer: %w", err)
		}
		firstRelay = append(firstRelay, d)
		if d, err = firstPart(ctx, st.Playback.HLS); err != nil {
			return nil, fmt.Errorf("origin, a new viewer: %w", err)
		}
		firstOrigin = append(firstOrigin, d)
	}
	fr, fo := summarize(firstRelay), summarize(firstOrigin)
	fmt.Fprintf(o.out, "  a new viewer's first part:        origin %s; relay node, first viewer (the relay starts) %s\n", spread(firstOrigin), spread(firstRelay))
	out["firstPartOriginMs"], out["firstPartRelayMs"] = msf(fo.P50), msf(fr.P50)

	// One LL-HLS viewer per stream on the relay node, then on the origin.
	measureViewers := func(srv *server) (latencySummary, float64, float64, error) {
		rec := &recorder{}
		var mvs []string
		for _, st := range streams {
			mvs = append(mvs, on(srv, st.Playback.HLS))
		}
		stop := watchLLHLS(ctx, mvs, 1, rec)
		defer stop()
		go func() {
			time.Sleep(o.warmup) // settling the load, not synchronising
			rec.mu.Lock()
			rec.lat = rec.lat[:0]
			rec.mu.Unlock()
		}()
		cpu, _, rss, err := srv.cpuWindow(o)
		return rec.summary(), cpu, rss, err
	}
	lat, cpu, rss, err := measureViewers(relay)
	if err != nil {
		return nil, err
	}
	perCPU, perMB := (cpu-idleCPU)/float64(n), (rss-idleRSS)/float64(n)
	fmt.Fprintf(o.out, "  relay node, 1 viewer per stream:  %5.1f %% CPU  %6.1f MB   per stream: %.3f %% CPU, %.2f MB\n", cpu, rss, perCPU, perMB)
	originLat, ocpu, orss, err := measureViewers(origin)
	if err != nil {
		return nil, err
	}
	viewerCPU, viewerMB := (ocpu-originIdle)/float64(n), (orss-originIdleRSS)/float64(n)
	fmt.Fprintf(o.out, "  origin, 1 viewer per stream:      %5.1f %% CPU  %6.1f MB   per stream: %.3f %% CPU, %.2f MB\n", ocpu, orss, viewerCPU, viewerMB)
	fmt.Fprintf(o.out, "  the relay itself, per stream (relay node's cost less the viewer's at the origin): %.3f %% CPU, %.2f MB\n",
		perCPU-viewerCPU, perMB-viewerMB)
	fmt.Fprintf(o.out, "  LL-HLS latency:                   origin %s, relay node %s   (+%.1f ms p95)\n", originLat, lat, msf(lat.P95-originLat.P95))
	out["relayNodeCPUPerStream"], out["relayNodeMBPerStream"] = perCPU, perMB
	out["relayCPUPerStream"], out["relayMBPerStream"] = perCPU-viewerCPU, perMB-viewerMB
	out["llhlsOriginP95Ms"], out["llhlsRelayP95Ms"] = msf(originLat.P95), msf(lat.P95)

	// WebRTC on one stream, at the origin and through the relay node.
	var webrtc [2]latencySummary
	for i, srv := range []*server{origin, relay} {
		w, err := watch(ctx, on(srv, streams[0].Playback.WebRTC), o.duration)
		if err != nil {
			return nil, fmt.Errorf("webrtc: %w", err)
		}
		webrtc[i] = summarize(w.latency)
	}
	fmt.Fprintf(o.out, "  WebRTC latency:                   origin %s, relay node %s   (+%.1f ms p95)\n", webrtc[0], webrtc[1], msf(webrtc[1].P95-webrtc[0].P95))
	out["webrtcOriginP95Ms"], out["webrtcRelayP95Ms"] = msf(webrtc[0].P95), msf(webrtc[1].P95)
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return out, nil
}

// routesKind says how the cluster scenarios' routes run.
func routesKind(o options) string {
	if o.clusterPlain {
		return "plain routes"
	}
	return "mutual TLS routes"
}

// startPair runs two nodes that form a cluster on embedded NATS.
func startPair(ctx context.Context, plain bool) (*server, *server, error) {
	nodes, err := startCluster(ctx, plain, "origin", "relay")
	if err != nil {
		return nil, nil, err
	}
	return nodes[0], nodes[1], nil
}

// startCluster runs nodes, by name, that form a cluster on embedded NATS:
// its routes mutual TLS with certificates made for the run, or plain.
func startCluster(ctx context.Context, plain bool, names ...string) ([]*server, error) {
	return startClusterWith(ctx, plain, nil, names...)
}

// startClusterWith is startCluster with more flags for every node (a later
// flag wins over an earlier one).
func startClusterWith(ctx context.Context, plain bool, extra []string, names ...string) ([]*server, error) {
	ports := make([]int, len(names))
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	certs, err := os.MkdirTemp("", "glasscast-bench-certs-")
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { os.RemoveAll(certs) })
	if err := cluster.MakeCerts(certs, names, nil); err != nil {
		return nil, err
	}
	var nodes []*server
	for i, name := range names {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		args := []string{"--node", name, "--jwt-secret", "bench-cluster-secret-0123456789-abcdef", "--max-rtmp-conns", "4096", "--drain-timeout", "0s",
			"--nats-listen", fmt.Sprintf("127.0.0.1:%d", ports[i]), "--nats-routes", strings.Join(routes, ",")}
		args = append(args, extra...)
		if plain {
			args = append(args, "--nats-insecure")
		} else {
			cert, key := cluster.NodeCertFiles(certs, name)
			args = append(args, "--nats-tls-cert", cert, "--nats-tls-key", key, "--nats-tls-ca", filepath.Join(certs, cluster.CACertFile))
		}
		srv, err := startServer(ctx, args...)
		if err != nil {
			for _, s := range nodes {
				s.stop()
			}
			return nil, err
		}
		nodes = append(nodes, srv)
	}
	return nodes, nil
}

// Spread: how the load of many streams and viewers divides over three nodes.
const (
	spreadNodes   = 3
	spreadStreams = 60
	spreadViewers = 5 // per stream: 300 in all
)

// spreadScenario measures three nodes doing what one node does: 60 streams,
// a third published to each node, and 300 LL-HLS viewers, each stream's
// spread round-robin over the nodes (as a load balancer without
// stickiness would), so every node also relays the streams of the other
// two. It reports each node's CPU and memory, their sum, and one node
// doing the same work alone.
func spreadScenario(o options, clip *sim.Clip) (map[string]any, error) {
	fmt.Fprintf(o.out, "\n== cluster-spread: %d streams and %d LL-HLS viewers, on one node, then on %d nodes (streams published a third to each, viewers round-robin) (%v per point)\n",
		spreadStreams, spreadStreams*spreadViewers, spreadNodes, o.duration)
	one, err := measure(o, clip, spreadStreams, spreadViewers)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(o.out, "  one node:"+one.line()[1:])
	out := map[string]any{"streams": spreadStreams, "viewers": spreadStreams * spreadViewers,
		"oneNodeCPU": one.CPUPercent, "oneNodeMB": one.RSSMB, "oneNodeLLHLSP95Ms": one.HLSP95Ms}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	names := make([]string, spreadNodes)
	for i := range names {
		names[i] = fmt.Sprintf("n%d", i+1)
	}
	nodes, err := startCluster(ctx, o.clusterPlain, names...)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	var streams []*streamInfo
	for i := range spreadStreams {
		st, err := nodes[i%spreadNodes].createStream(fmt.Sprintf("spread-%d", i))
		if err != nil {
			return nil, err
		}
		streams = append(streams, st)
		publish(ctx, &wg, clip, st.Ingest.RTMPURL, errs)
	}
	var atOrigin, relayed []string
	for i, st := range streams {
		if _, code, err := get(ctx, st.Playback.HLS); err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("stream %s did not start: %d %v", st.ID, code, err)
		}
		for _, n := range nodes {
			if err := n.waitStream(ctx, st.ID); err != nil {
				return nil, err
			}
		}
		for v := range spreadViewers {
			if n := (i + v) % spreadNodes; n == i%spreadNodes {
				atOrigin = append(atOrigin, on(nodes[n], st.Playback.HLS))
			} else {
				relayed = append(relayed, on(nodes[n], st.Playback.HLS))
			}
		}
	}
	recOrigin, recRelayed := &recorder{}, &recorder{}
	stopOrigin := watchLLHLS(ctx, atOrigin, 1, recOrigin)
	defer stopOrigin()
	stopRelayed := watchLLHLS(ctx, relayed, 1, recRelayed)
	defer stopRelayed()
	time.Sleep(o.warmup) // settling the load, not synchronising
	for _, rec := range []*recorder{recOrigin, recRelayed} {
		rec.mu.Lock()
		rec.lat = rec.lat[:0]
		rec.mu.Unlock()
	}
	busy0, total0 := machineCPU()
	u0 := make([]usage, len(nodes))
	for i, n := range nodes {
		if u0[i], err = procUsage(n.cmd.Process.Pid); err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	time.Sleep(o.duration) // the measuring window
	el := float64(time.Since(t0))
	busy1, total1 := machineCPU()
	var sumCPU, sumMB float64
	var perNode []map[string]any
	for i, n := range nodes {
		u1, err := procUsage(n.cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		cpu, mb := 100*float64(u1.cpu-u0[i].cpu)/el, float64(u1.rss)/(1<<20)
		sumCPU, sumMB = sumCPU+cpu, sumMB+mb
		fmt.Fprintf(o.out, "  %s: %d streams published, %d relayed, %d viewers: CPU %5.1f %% of a core   RSS %6.1f MB\n",
			names[i], spreadStreams/spreadNodes, spreadStreams-spreadStreams/spreadNodes, spreadStreams*spreadViewers/spreadNodes, cpu, mb)
		perNode = append(perNode, map[string]any{"node": names[i], "cpu": cpu, "mb": mb})
	}
	lo, lr := recOrigin.summary(), recRelayed.summary()
	fmt.Fprintf(o.out, "  three nodes together: CPU %5.1f %% (one node alone %.1f %%: %+.0f %%)   RSS %6.1f MB (alone %.1f MB)\n",
		sumCPU, one.CPUPercent, 100*(sumCPU/one.CPUPercent-1), sumMB, one.RSSMB)
	fmt.Fprintf(o.out, "  LL-HLS: viewers at the origin %s, on relay nodes %s (one node alone p95 %d ms), %d errors\n",
		lo, lr, one.HLSP95Ms, recOrigin.errs+recRelayed.errs)
	if total1 > total0 {
		fmt.Fprintf(o.out, "  the machine (%d cores, with the load tool) was busy %.0f %% of the time\n", runtime.NumCPU(), 100*float64(busy1-busy0)/float64(total1-total0))
	}
	out["nodes"], out["sumCPU"], out["sumMB"] = perNode, sumCPU, sumMB
	out["llhlsOriginP95Ms"], out["llhlsRelayedP95Ms"] = msf(lo.P95), msf(lr.P95)
	stopOrigin()
	stopRelayed()
	cancel()
	wg.Wait()
	select {
	case err := <-errs:
		if !errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("a publisher failed: %w", err)
		}
	default:
	}
	return out, nil
}

// waitStream waits until the node's Streams API knows a stream (the
// cluster has formed, and the directory reached it).
func (s *server) waitStream(ctx context.Context, id string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := s.getStream(id); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not know stream %s after 60 s", s.httpURL, id)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // polling the API, not synchronising
		}
	}
}

// on is url on node s.
func on(s *server, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return s.httpURL + u.RequestURI()
}

// firstPart is how long a new LL-HLS viewer waits from its first request
// to the newest part's last byte: the multivariant playlist, the video
// playlist, the part.
func firstPart(ctx context.Context, multivariant string) (time.Duration, error) {
	t0 := time.Now()
	if _, code, err := get(ctx, multivariant); err != nil || code != http.StatusOK {
		return 0, fmt.Errorf("%s: %d %v", multivariant, code, err)
	}
	base := strings.TrimSuffix(multivariant, "index.m3u8")
	pl, code, err := get(ctx, base+"video.m3u8")
	if err != nil || code != http.StatusOK {
		return 0, fmt.Errorf("video playlist: %d %v", code, err)
	}
	parts := partURI.FindAllSubmatch(pl, -1)
	if len(parts) == 0 {
		return 0, errors.New("a playlist without parts")
	}
	last := parts[len(parts)-1]
	if _, code, err := get(ctx, fmt.Sprintf("%s%s-p%s.m4s", base, last[1], last[2])); err != nil || code != http.StatusOK {
		return 0, fmt.Errorf("part: %d %v", code, err)
	}
	return time.Since(t0), nil
}

// spread is durations as p50, p95 and max.
func spread(d []time.Duration) string {
	l := summarize(d)
	return fmt.Sprintf("p50 %s  p95 %s  max %s", ms(l.P50), ms(l.P95), ms(l.Max))
}

// machineCPU reads the machine's busy and total CPU time, in clock ticks
// summed over its cores (/proc/stat).
func machineCPU() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			continue
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}
