// Package cluster is crowdpilot's etcd layer: the embedded server, membership
// under leases, leader election, and watched views of a key prefix.
//
// Every key lives under Prefix(cluster). The data plane never waits on
// anything here: Membership keeps its last snapshot when etcd is unreachable,
// and Members is a lock-free read.
package cluster
