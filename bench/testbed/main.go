// Command testbed is the Go half of bench/testbed.sh. The script starts the
// processes and their cgroups; this program picks free loopback ports, runs
// the demo origin (noting when it served the hot object), and turns what a
// run left in its directory (the load generator's JSON, /metrics and
// cpu.stat snapshots, the origin's /_stats and hot-object fetch times) into
// the "Testbed: flash crowd" section of bench/RESULTS.md. It measures no
// latency itself: every latency and count comes from `crowdpilot load
// --out-json`.
//
//	testbed ports N
//	testbed origin --listen HOST:PORT [--latency 50ms --capacity 8 --max-age 5s --hot PATH]
//	testbed report --run-dir DIR --results FILE [--objective 100ms] ...
//	testbed tenants-poll --admin HOST:PORT[,...] --duration D --out FILE
//	testbed tenants-report --run-dir DIR --results FILE --chart PNG
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testbed ports N | testbed origin [flags] | testbed report --run-dir DIR --results FILE [flags] | testbed tenants-poll [flags] | testbed tenants-report [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "ports":
		os.Exit(runPorts(os.Args[2:]))
	case "origin":
		os.Exit(runOrigin(os.Args[2:]))
	case "report":
		os.Exit(runReport(os.Args[2:]))
	case "tenants-poll":
		os.Exit(runTenantsPoll(os.Args[2:]))
	case "tenants-report":
		os.Exit(runTenantsReport(os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "testbed: unknown command %q (want ports, origin, report, tenants-poll or tenants-report)\n", os.Args[1])
		os.Exit(2)
	}
}

// runPorts prints n distinct free TCP ports on 127.0.0.1, one a line. They
// are held open until all are chosen, so they are distinct; another process
// may still take one before the caller binds it, which the caller's
// readiness checks then report.
func runPorts(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: testbed ports N")
		return 2
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > 1000 {
		fmt.Fprintf(os.Stderr, "testbed ports: %q: want a count in 1..1000\n", args[0])
		return 2
	}
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintf(os.Stderr, "testbed ports: %v\n", err)
			return 1
		}
		ls = append(ls, l)
	}
	for _, l := range ls {
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	return 0
}
