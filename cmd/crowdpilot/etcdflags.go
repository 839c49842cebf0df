package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/crowdpilot/crowdpilot/internal/node"
)

// etcdPasswordEnv carries the etcd password when no --etcd-password-file
// is given. There is no --etcd-password: a password on the command line is
// visible to every user of the machine (ps, /proc).
const etcdPasswordEnv = "CROWDPILOT_ETCD_PASSWORD"

// etcdFlags secure a node's connection to etcd, named as etcd's own
// clients (etcdctl) name them.
type etcdFlags struct {
	cacert, cert, key, username, passwordFile string
}

func (f *etcdFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cacert, "etcd-cacert", "", "PEM `file` of the CA that signs etcd's server certificate (https endpoints; empty: the system's roots)")
	fs.StringVar(&f.cert, "etcd-cert", "", "PEM `file` of this node's client certificate for etcd (with --etcd-key)")
	fs.StringVar(&f.key, "etcd-key", "", "PEM `file` of the private key of --etcd-cert")
	fs.StringVar(&f.username, "etcd-username", "", "etcd user, for an etcd with authentication enabled (password from --etcd-password-file or "+etcdPasswordEnv+")")
	fs.StringVar(&f.passwordFile, "etcd-password-file", "", "`file` holding the etcd user's password (one trailing newline is ignored)")
}

// apply reads the password and puts the settings into c; an error names
// the flag (or variable) to change.
func (f *etcdFlags) apply(c *node.Config, lookupEnv func(string) (string, bool)) error {
	c.EtcdCACert, c.EtcdCert, c.EtcdKey, c.EtcdUsername = f.cacert, f.cert, f.key, f.username
	env, envSet := lookupEnv(etcdPasswordEnv)
	switch {
	case f.passwordFile != "" && envSet:
		return fmt.Errorf("--etcd-password-file and %s are both set: use one", etcdPasswordEnv)
	case f.passwordFile != "":
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return fmt.Errorf("--etcd-password-file %s: %w", f.passwordFile, err)
		}
		pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if pw == "" {
			return fmt.Errorf("--etcd-password-file %s is empty", f.passwordFile)
		}
		c.EtcdPassword = pw
	case envSet:
		if env == "" {
			return fmt.Errorf("%s is set but empty", etcdPasswordEnv)
		}
		c.EtcdPassword = env
	}
	if c.EtcdPassword != "" && f.username == "" {
		return errors.New("--etcd-username is required with an etcd password")
	}
	if f.username != "" && c.EtcdPassword == "" {
		return fmt.Errorf("--etcd-username needs a password: --etcd-password-file or %s", etcdPasswordEnv)
	}
	return nil
}
