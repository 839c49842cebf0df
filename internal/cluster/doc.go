// Package cluster is crowdpilot's etcd layer, and the only package that
// talks to etcd: the embedded server, membership under leases, leader
// election, watched views of a key prefix, and the typed stores of the
// replica records (ReplicaStore), the purge log (PurgeLog), tenants
// (TenantStore) and operators' object settings (ObjectStore). Each store
// owns its key prefix, its timeouts and the sealing of its records.
//
// Every key lives under Prefix(cluster). The data plane never waits on
// anything here: Membership keeps its last snapshot when etcd is unreachable,
// and Members is a lock-free read.
package cluster
