// Package cluster is crowdpilot's etcd layer: the embedded server, membership
// under leases, and leader election.
//
// Every key lives under Prefix(cluster). The data plane never waits on
// anything here: Membership keeps its last snapshot when etcd is unreachable,
// and Members is a lock-free read.
package cluster
