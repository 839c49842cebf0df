package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/crowdpilot/crowdpilot/internal/tenant"
)

// tenantsFlag is --tenants FILE: the file is read and validated when the
// flag is set (on the command line, from the environment or the config
// file), so a bad file is a one-line error naming the flag.
type tenantsFlag struct {
	path string
	cfg  *tenant.Config
}

func (f *tenantsFlag) String() string { return f.path }

func (f *tenantsFlag) Set(path string) error {
	if path == "" {
		f.path, f.cfg = "", nil
		return nil
	}
	cfg, err := tenant.Load(path)
	if err != nil {
		return err
	}
	f.path, f.cfg = path, cfg
	return nil
}

// labelsFlag is --labels k=v,k=v: the node's labels, for tenant isolation.
type labelsFlag struct {
	m map[string]string
}

func (f *labelsFlag) String() string {
	keys := slices.Sorted(maps.Keys(f.m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + f.m[k]
	}
	return strings.Join(parts, ",")
}

func (f *labelsFlag) Set(s string) error {
	m := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("label %q: want name=value", part)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	f.m = m
	if len(m) == 0 {
		f.m = nil
	}
	return nil
}
