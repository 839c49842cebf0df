package main

import "github.com/crowdpilot/crowdpilot/internal/tenant"

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
