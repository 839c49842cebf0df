// Command crowdpilot is a flash-crowd autopilot for read-heavy HTTP
// services: a cluster of caching nodes in front of an origin.
//
//	crowdpilot up      embedded etcd + N nodes (+ a demo origin): the local cluster
//	crowdpilot node    one node joining an etcd cluster
//	crowdpilot load    open-loop flash-crowd load generator
//	crowdpilot purge   purge by key, tag, prefix or everything
//	crowdpilot status  members, leader, hot objects and their replicas
//	crowdpilot version module version and VCS revision
//	crowdpilot tenant  list tenants, or show or change one
//	crowdpilot replicas  pin or cap an object's leased replicas
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// subcommands maps a name to its entry point. Each returns an exit code:
// 0 ok, 1 failure at run time, 2 bad input.
var subcommands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int{
	"up":       runUp,
	"node":     runNode,
	"load":     runLoad,
	"purge":    runPurge,
	"status":   runStatus,
	"version":  runVersion,
	"tenant":   runTenant,
	"drain":    runDrain,
	"replicas": runReplicas,
}

const usage = `crowdpilot: a flash-crowd autopilot for read-heavy HTTP services.

Usage:
  crowdpilot up     [flags]   run a local cluster: embedded etcd, N nodes, demo origin unless --origin
  crowdpilot node   [flags]   run one node against an etcd cluster
  crowdpilot load   [flags]   send an open-loop flash crowd at a cluster
  crowdpilot purge  [flags]   purge by --key, --tag, --prefix or --all
  crowdpilot status [flags]   members, autopilot leader, hot objects and replicas (--admin host:port)
  crowdpilot version          module version and VCS revision of this binary
  crowdpilot tenant [NAME] [flags]  list tenants, or show or change one (size, hold, min, max, isolation)
  crowdpilot replicas [pin KEY N | cap KEY N | clear KEY]  list, or pin or cap an object's leased replicas
  crowdpilot drain  [flags]   drain a node and wait until it serves nothing

Run "crowdpilot <command> --help" for the flags of a command. Every flag can
also be set as CROWDPILOT_<FLAG> in the environment (--store-bytes as
CROWDPILOT_STORE_BYTES) or in a YAML file given with --config.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		args[0] = "version"
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := subcommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "crowdpilot: unknown command %q (want up, node, load, purge, status, version, tenant, replicas or drain; see crowdpilot --help)\n", args[0])
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cmd(ctx, args[1:], stdout, stderr)
}
