// Package deploy holds the packaging files (Dockerfile, Kubernetes
// manifests, systemd unit, example configuration, Prometheus rules and a
// Grafana dashboard); its tests check that they decode and fit together.
package deploy
