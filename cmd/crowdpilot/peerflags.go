package main

import (
	"flag"
	"fmt"

	"github.com/crowdpilot/crowdpilot/internal/node"
)

// peerFlags turn on node-to-node TLS: a peer listener with mutual TLS,
// and https to every peer's.
type peerFlags struct {
	cert, key, cacert, listen, advertise string
}

func (f *peerFlags) register(fs *flag.FlagSet) {
	d := node.DefaultConfig()
	fs.StringVar(&f.cert, "peer-cert", "", "PEM `file` of this node's certificate for node-to-node TLS, for server and client authentication, naming the --advertise-peer host (with --peer-key and --peer-cacert)")
	fs.StringVar(&f.key, "peer-key", "", "PEM `file` of the private key of --peer-cert")
	fs.StringVar(&f.cacert, "peer-cacert", "", "PEM `file` of the CA that signs every node's --peer-cert; peers must present a certificate it signed")
	fs.StringVar(&f.listen, "peer-listen", d.PeerListen, "peer listener host:port, with --peer-cert: forwards, fills and node-to-node admin calls over mutual TLS")
	fs.StringVar(&f.advertise, "advertise-peer", "", "peer address other nodes dial (if empty, the peer listen address)")
}

// apply puts the settings into c; fs tells what was given. A peer address
// without the certificates would change nothing silently: an error naming
// the flag.
func (f *peerFlags) apply(fs *flag.FlagSet, c *node.Config) error {
	c.PeerCert, c.PeerKey, c.PeerCACert = f.cert, f.key, f.cacert
	c.PeerListen, c.AdvertisePeer = f.listen, f.advertise
	var err error
	fs.Visit(func(fl *flag.Flag) {
		if err == nil && (fl.Name == "peer-listen" || fl.Name == "advertise-peer") && f.cert == "" && f.key == "" && f.cacert == "" {
			err = fmt.Errorf("--%s is set without node-to-node TLS: add --peer-cert, --peer-key and --peer-cacert (without them peers use the data and admin listeners)", fl.Name)
		}
	})
	return err
}
