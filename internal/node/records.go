package node

import (
	"fmt"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

// newRecords is how this node seals what it writes to etcd (member and
// replica records, election candidates, purge log entries, tenant records,
// object settings) and checks everyone else's: under a key derived from
// the admin token, or not at all without one (then anyone who can write to
// etcd can add members, purge, or steer routing, and the node says so).
func (n *Node) newRecords() (*cluster.Records, error) {
	r, err := cluster.NewRecords(n.cfg.AdminToken, n.cfg.Registry, n.cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("etcd records: %w", err)
	}
	if !r.Authenticated() {
		n.cfg.Logger.Warn("no admin token: records in etcd are not authenticated (anyone who can write to etcd can add members, purge, or change tenants and pins); set --admin-token")
	}
	return r, nil
}
