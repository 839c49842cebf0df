package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/purge"
	"github.com/crowdpilot/crowdpilot/purgeclient"
)

const purgeAbout = `Appends a purge to the cluster's invalidation log through a node's admin API.
It is acknowledged once committed and reaches every node; with --wait the
command returns once every live node has applied it. What to purge (--key,
--tag, --prefix, --all, --soft) is read from the command line only.

Exit status: 0 purged (and, with --wait, applied everywhere); 1 refused or
failed; 2 bad input; 3 committed, but some nodes had not applied it within
--wait (they are listed).`

// purgeTarget are the flags that say what to purge: command line only, so
// a stray CROWDPILOT_ALL or config key never purges anything.
var purgeTarget = []string{"key", "tag", "prefix", "all", "soft", "token"}

// runPurge runs "crowdpilot purge". --admin and --admin-token come, like
// every flag, from the command line, CROWDPILOT_ADMIN and
// CROWDPILOT_ADMIN_TOKEN, or --config; the purge target only from the
// command line.
func runPurge(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crowdpilot purge", flag.ContinueOnError)
	var (
		admin      = fs.String("admin", "http://127.0.0.1:9080", "admin `URL` (or host:port) of any node")
		adminToken = fs.String("admin-token", "", "admin bearer `token`")
		token      = fs.String("token", "", "same as --admin-token, and wins over it")
		key        = fs.String("key", "", "purge one cache key (`URL`)")
		tag        = fs.String("tag", "", "purge every object with this `tag` (Surrogate-Key / Cache-Tag)")
		prefix     = fs.String("prefix", "", "purge every object under this `path` prefix")
		all        = fs.Bool("all", false, "purge everything")
		soft       = fs.Bool("soft", false, "mark stale instead of dropping (served once more while refreshing)")
		wait       = fs.Duration("wait", 0, fmt.Sprintf("wait up to this long (at most %s) for every live node to apply it, e.g. 2s", purge.MaxWait))
		asJSON     = fs.Bool("json", false, "print the server's answer as JSON")
	)
	if err := parseFlags(fs, args, stdout, "crowdpilot purge (--key URL | --tag TAG | --prefix PATH | --all) [flags]", purgeAbout, purgeTarget...); err != nil {
		return badInput(stderr, "purge", err)
	}
	tok := *adminToken
	if *token != "" {
		tok = *token
	}
	base := strings.TrimSpace(*admin)
	if base == "" {
		return badInput(stderr, "purge", errors.New("--admin is empty"))
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base // the node's --admin is a host:port
	}

	// Check locally with the server's own rules, so bad input is exit 2.
	pr := purge.Request{Key: *key, Tag: *tag, Prefix: *prefix, All: *all, Soft: *soft, Wait: purge.Duration(*wait)}
	if err := pr.Validate(); err != nil {
		msg := strings.NewReplacer(`"key"`, "--key", `"tag"`, "--tag", `"prefix"`, "--prefix", `"all"`, "--all").Replace(err.Error())
		return badInput(stderr, "purge", errors.New(msg))
	}

	ctx, cancel := context.WithTimeout(ctx, *wait+15*time.Second)
	defer cancel()
	c := &purgeclient.Client{BaseURL: base, Token: tok}
	res, err := c.Purge(ctx, purgeclient.Request{Key: *key, Tag: *tag, Prefix: *prefix, All: *all, Soft: *soft, Wait: *wait})
	var refused *purgeclient.Error
	switch {
	case errors.Is(err, purgeclient.ErrInvalidRequest):
		return badInput(stderr, "purge", err)
	case errors.As(err, &refused):
		fmt.Fprintf(stderr, "crowdpilot purge: refused by %s (%d): %s\n", base, refused.StatusCode, refused.Message)
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "crowdpilot purge: %v (the purge may or may not be committed; purges are safe to repeat)\n", err)
		return 1
	}

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		fmt.Fprintln(stdout, describePurge(res, *wait))
	}
	if *wait > 0 && !res.Complete {
		if *asJSON {
			fmt.Fprintf(stderr, "crowdpilot purge: not applied within %s on: %s\n", *wait, strings.Join(res.Pending, ", "))
		}
		return 3
	}
	return 0
}

// describePurge renders a result as one line for people.
func describePurge(res purgeclient.Result, wait time.Duration) string {
	what := res.Kind
	if res.Value != "" {
		what = fmt.Sprintf("%s %q", res.Kind, res.Value)
	}
	verb := "purge"
	if res.Soft {
		verb = "soft purge"
	}
	nodes := len(res.Applied) + len(res.Pending)
	switch {
	case res.Complete && nodes > 0:
		return fmt.Sprintf("%s of %s committed at rev %d and applied on all %d nodes", verb, what, res.Rev, nodes)
	case res.Complete:
		return fmt.Sprintf("%s of %s committed at rev %d (no live nodes)", verb, what, res.Rev)
	case wait > 0:
		return fmt.Sprintf("%s of %s committed at rev %d, but %d of %d nodes had not applied it within %s: %s",
			verb, what, res.Rev, len(res.Pending), nodes, wait, strings.Join(res.Pending, ", "))
	default:
		return fmt.Sprintf("%s of %s committed at rev %d; applied so far on %d of %d nodes (use --wait to wait for all)",
			verb, what, res.Rev, len(res.Applied), nodes)
	}
}
