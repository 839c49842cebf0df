package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/node"
)

const upAbout = `Runs a whole cluster in one process: an embedded etcd, --nodes nodes (node i
listens on the --listen and --admin ports + i) and, without --origin, a
deliberately slow demo origin. It prints every address and a generated
admin token; Ctrl-C stops it all. The node flags apply to every node.`

// runUp runs the one-machine cluster: embedded etcd, N nodes and, without
// --origin, the slow demo origin.
func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crowdpilot up", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	nodes := fs.Int("nodes", 3, "number of nodes (0 runs only etcd and the demo origin)")
	dataDir := fs.String("data-dir", "", "embedded etcd data directory (if empty, a temporary directory removed at exit)")
	etcdListen := fs.String("etcd-listen", "127.0.0.1:2379", "embedded etcd client host:port")
	etcdPeer := fs.String("etcd-peer", "127.0.0.1:2380", "embedded etcd peer host:port")
	demoListen := fs.String("demo-listen", "127.0.0.1:9000", "demo origin host:port, used when --origin is empty")
	demoLatency := fs.Duration("demo-latency", 50*time.Millisecond, "demo origin response time")
	demoCapacity := fs.Int("demo-capacity", 8, "demo origin concurrency before requests queue (and are shed past 4x)")
	if err := parseFlags(fs, args, stdout, "crowdpilot up [flags]", upAbout); err != nil {
		return badInput(stderr, "up", err)
	}
	if err := checkNodeFlags(fs, &nf); err != nil {
		return badInput(stderr, "up", err)
	}
	if *nodes < 0 || *nodes > 64 {
		return badInput(stderr, "up", fmt.Errorf("--nodes %d must be between 0 and 64", *nodes))
	}
	logger, err := newLogger(stderr, nf.logFormat, nf.logLevel)
	if err != nil {
		return badInput(stderr, "up", err)
	}
	listenHost, listenPort, err := splitHostPort(nf.listen)
	if err != nil {
		return badInput(stderr, "up", fmt.Errorf("--listen: %w", err))
	}
	adminHost, adminPort, err := splitHostPort(nf.admin)
	if err != nil {
		return badInput(stderr, "up", fmt.Errorf("--admin: %w", err))
	}
	if nf.adminToken == "" {
		b := make([]byte, 16)
		rand.Read(b)
		nf.adminToken = hex.EncodeToString(b)
	}
	// Check the node settings before anything starts: embedded etcd binds
	// ports and prints its banner, and a typo should cost neither.
	if *nodes > 0 {
		cfg := nf.config(logger)
		cfg.ID = nodeID(nf.id, 0)
		cfg.Etcd = []string{"http://" + *etcdListen}
		if cfg.Origin == "" {
			cfg.Origin = "http://" + *demoListen
		}
		if err := node.CheckConfig(cfg); err != nil {
			return badInput(stderr, "up", withFlagNames(fmt.Errorf("node config: %w", err)))
		}
		memoryLimit(logger, cfg.StoreBytes*int64(*nodes), *nodes)
		defer startGCFloor(ctx, logger, gcFloorFor(cfg.StoreBytes*int64(*nodes), *nodes, debug.SetMemoryLimit(-1)))()
	}
	maxProcs(logger, node.CPULimit())

	dir := *dataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "crowdpilot-etcd-"); err != nil {
			fmt.Fprintf(stderr, "crowdpilot up: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
	}
	etcd, err := cluster.StartEmbedded(ctx, cluster.EmbedConfig{Dir: dir, ClientAddr: *etcdListen, PeerAddr: *etcdPeer, Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "crowdpilot up: embedded etcd: %v\n", err)
		return 1
	}
	defer etcd.Close()
	fmt.Fprintf(stdout, "etcd:   %s  (join more nodes: crowdpilot node --etcd %s --origin ...)\n", etcd.ClientURL(), etcd.ClientURL())

	if nf.origin == "" {
		ln, err := net.Listen("tcp", *demoListen)
		if err != nil {
			fmt.Fprintf(stderr, "crowdpilot up: demo origin: %v\n", err)
			return 1
		}
		srv := &http.Server{Handler: demo.New(demo.Config{Latency: *demoLatency, Capacity: *demoCapacity}), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		nf.origin = "http://" + ln.Addr().String()
		fmt.Fprintf(stdout, "origin: %s  (demo: %v per response, %d at a time, drowns past that)\n", nf.origin, *demoLatency, *demoCapacity)
	} else {
		fmt.Fprintf(stdout, "origin: %s\n", nf.origin)
	}
	nf.etcd = etcd.ClientURL()

	var started []*node.Node
	defer func() {
		// Leave the cluster first, then drain, node by node in parallel.
		done := make(chan struct{}, len(started))
		for _, n := range started {
			go func() { n.Shutdown(context.Background()); done <- struct{}{} }()
		}
		for range started {
			<-done
		}
	}()
	for i := range *nodes {
		cfg := nf.config(logger.With("node", "n"+strconv.Itoa(i)))
		cfg.ID = nodeID(nf.id, i)
		cfg.Listen = net.JoinHostPort(listenHost, portPlus(listenPort, i))
		cfg.Admin = net.JoinHostPort(adminHost, portPlus(adminPort, i))
		cfg.SharesProcess = *nodes > 1
		n, err := node.New(cfg)
		if err != nil {
			return badInput(stderr, "up", withFlagNames(err))
		}
		if err := n.Start(ctx); err != nil {
			fmt.Fprintf(stderr, "crowdpilot up: %v\n", err)
			return 1
		}
		started = append(started, n)
		fmt.Fprintf(stdout, "node %-4s data http://%s  admin http://%s\n", n.ID(), n.DataAddr(), n.AdminAddr())
	}
	fmt.Fprintf(stdout, "admin token: %s\n", nf.adminToken)
	fmt.Fprintf(stdout, "ready: try  curl -si http://%s/live/match-1\n", func() string {
		if len(started) > 0 {
			return started[0].DataAddr()
		}
		return "<node>"
	}())
	select {
	case <-ctx.Done():
	case err := <-etcd.Err():
		if err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("embedded etcd failed", "err", err)
		}
	}
	logger.Info("shutting down")
	return 0
}

func nodeID(prefix string, i int) string {
	if prefix == "" {
		prefix = "n"
	}
	return prefix + strconv.Itoa(i)
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", port)
	}
	return host, p, nil
}

// portPlus is port+i, or 0 (any free port) when port is 0.
func portPlus(port, i int) string {
	if port == 0 {
		return "0"
	}
	return strconv.Itoa(port + i)
}
