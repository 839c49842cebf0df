package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
)

// Client timings. Keep-alive pings every 5s (the least etcd servers accept by
// default, see --grpc-keepalive-min-time) with a 2s timeout, so a dead or
// partitioned server is noticed within about 7s; reconnect attempts back off
// to at most 2s, so a server that returns is used again within seconds.
const (
	clientDialTimeout      = 2 * time.Second
	clientKeepAliveTime    = 5 * time.Second
	clientKeepAliveTimeout = 2 * time.Second
	clientReconnectMax     = 2 * time.Second
)

// NewClient returns an etcd client for endpoints ("host:port" or
// "http://host:port"). Creation does not wait for a connection: operations
// fail or wait (bounded by their contexts) while etcd is unreachable. Auto
// sync of endpoints is off, and etcd's own client logging is quiet (errors
// only). logger receives crowdpilot's messages; nil discards them.
func NewClient(endpoints []string, logger *slog.Logger) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("etcd client: no endpoints")
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          clientDialTimeout,
		DialKeepAliveTime:    clientKeepAliveTime,
		DialKeepAliveTimeout: clientKeepAliveTimeout,
		AutoSyncInterval:     0,
		Logger:               quietZap(),
		DialOptions: []grpc.DialOption{
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: grpcbackoff.Config{
					BaseDelay:  100 * time.Millisecond,
					Multiplier: 1.6,
					Jitter:     0.2,
					MaxDelay:   clientReconnectMax,
				},
				MinConnectTimeout: clientDialTimeout,
			}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	orDiscard(logger).Debug("etcd client created", "endpoints", endpoints)
	return c, nil
}
