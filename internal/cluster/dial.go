package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrAccess marks an etcd that answered but refused this client: wrong or
// missing credentials, a role without access to the cluster's prefix, or
// a TLS handshake that failed. Retrying does not help; the configuration
// must change.
var ErrAccess = errors.New("etcd refused access")

// Dial is NewClient followed by one bounded read of prefix, so a client
// that etcd will refuse fails now, with ErrAccess and what to change,
// rather than as retries in the background. An etcd that does not answer
// in time is not an error: the client is returned and connects when etcd
// comes back (logged at warn).
func Dial(ctx context.Context, cfg ClientConfig, prefix string, logger *slog.Logger) (*Client, error) {
	c, err := NewClient(cfg, logger)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, clientDialTimeout)
	defer cancel()
	_, err = c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err == nil {
		return c, nil
	}
	xerr := refusal(ctx, cfg, prefix, err)
	if errors.Is(xerr, ErrAccess) {
		c.Close()
		return nil, fmt.Errorf("etcd %v: %w", cfg.Endpoints, xerr)
	}
	orDiscard(logger).Warn("etcd not reachable yet; starting anyway, joining when it answers", "etcd", cfg.LogValue(), "err", err)
	return c, nil
}

// refusal is explainAccess, and when that cannot tell and the connection is
// TLS, a handshake of our own: etcd's client says only "deadline
// exceeded" when every TLS handshake fails.
func refusal(ctx context.Context, cfg ClientConfig, prefix string, err error) error {
	xerr := explainAccess(cfg, prefix, err)
	if errors.Is(xerr, ErrAccess) || !cfg.usesTLS() {
		return xerr
	}
	tlsCfg, _ := cfg.tlsConfig()
	if herr := probeTLS(context.WithoutCancel(ctx), cfg.Endpoints[0], tlsCfg); herr != nil {
		return explainAccess(cfg, prefix, herr)
	}
	return xerr
}

// explainAccess wraps err in ErrAccess, with what to check, when it says
// etcd refused this client rather than could not be reached.
func explainAccess(cfg ClientConfig, prefix string, err error) error {
	msg := err.Error()
	st, _ := status.FromError(err)
	var hint string
	switch {
	case strings.Contains(msg, "user name is empty"):
		hint = "etcd has authentication enabled: set --etcd-username and --etcd-password-file"
	case strings.Contains(msg, "authentication failed"), strings.Contains(msg, "invalid auth token"):
		hint = fmt.Sprintf("user %q or its password is wrong: check --etcd-username and --etcd-password-file", cfg.Username)
	case (st.Code() == codes.PermissionDenied || strings.Contains(msg, "permission denied")) && cfg.Username == "" && cfg.Cert != "":
		hint = "etcd has authentication enabled and takes the client certificate's common name as the user, which has no access to the cluster's keys: set --etcd-username and --etcd-password-file, or grant that user readwrite on the prefix " + prefix
	case st.Code() == codes.PermissionDenied || strings.Contains(msg, "permission denied"):
		hint = fmt.Sprintf("user %q lacks access to the cluster's keys: grant its role readwrite on the prefix %s", cfg.Username, prefix)
	case strings.Contains(msg, "x509:") || strings.Contains(msg, "handshake") || strings.Contains(msg, "tls:") ||
		strings.Contains(msg, "certificate"):
		hint = "TLS with etcd failed: check --etcd-cacert (the CA of etcd's server certificate) and --etcd-cert/--etcd-key (etcd's --trusted-ca-file must sign them)"
	case strings.Contains(msg, "auth:") || st.Code() == codes.Unauthenticated:
		hint = "check --etcd-username and --etcd-password-file"
	default:
		return err
	}
	return fmt.Errorf("%w: %s (%s)", ErrAccess, strings.TrimSpace(msg), hint)
}

// tlsProbeTimeout bounds probeTLS.
const tlsProbeTimeout = time.Second

// probeTLS shakes hands with endpoint ep as etcd's client would and
// returns the handshake's error, or nil when it succeeds or the endpoint
// cannot be reached at all (that is not a TLS problem). A server that
// refuses a client certificate says so in an alert after the handshake
// (TLS 1.3), so the probe reads briefly too.
func probeTLS(ctx context.Context, ep string, cfg *tls.Config) error {
	addr := ep
	if u, err := url.Parse(ep); err == nil && u.Host != "" {
		addr = u.Host
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.NextProtos = []string{"h2"}
	ctx, cancel := context.WithTimeout(ctx, tlsProbeTimeout)
	defer cancel()
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil // not listening: unreachable, not refused
		}
		return err
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(tlsProbeTimeout / 2))
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil && !errors.Is(err, io.EOF) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	}
	return nil
}
