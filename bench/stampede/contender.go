package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// contender is one system under test: the addresses the client spreads its
// requests over, its own origin, and how to stop it.
type contender struct {
	name    string
	targets []string // host:port
	origin  *origin
	procs   []*proc
	admins  map[string]string // node ID -> admin host:port (crowdpilot only)
}

// pgids are the process groups of c's processes.
func (c *contender) pgids() []int {
	var g []int
	for _, p := range c.procs {
		g = append(g, p.cmd.Process.Pid)
	}
	return g
}

func (c *contender) stop(ctx context.Context) {
	for _, p := range c.procs {
		p.stop()
	}
	if c.origin != nil {
		c.origin.close(ctx)
	}
}

// proc is a child process in a process group of its own, so stopping it
// stops its workers too (nginx workers, the Varnish child).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// startProc starts bin in its own process group with stderr (and stdout,
// unless stdout is given) appended to logPath, and records its group in
// pgidFile so bench/stampede.sh can kill it should this program die.
func startProc(name, logPath, pgidFile string, stdout io.Writer, bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	cmd.Stdout = logf
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if f, err := os.OpenFile(pgidFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintln(f, cmd.Process.Pid)
		f.Close()
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends the group SIGTERM, then SIGKILL after 15 s, and waits.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		slog.Warn("process did not stop on SIGTERM; killing", "name", p.name)
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	syscall.Kill(-pgid, syscall.SIGKILL) // workers left behind, if any
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("probe a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// benchToken is the crowdpilot cluster's admin token, for --trace.
const benchToken = "stampede-bench"

// startCrowdpilot runs `crowdpilot up --nodes N` against o and waits until
// every node is ready and sees all N members.
func startCrowdpilot(ctx context.Context, cfg config, o *origin) (*contender, error) {
	etcdC, err := freePort()
	if err != nil {
		return nil, err
	}
	etcdP, err := freePort()
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("crowdpilot stdout pipe: %w", err)
	}
	defer pr.Close()
	p, err := startProc("crowdpilot", filepath.Join(cfg.out, "crowdpilot.log"), cfg.pgidFile, pw, cfg.crowdpilot,
		"up", "--nodes", strconv.Itoa(cfg.nodes), "--origin", o.url,
		"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--etcd-listen", "127.0.0.1:"+strconv.Itoa(etcdC), "--etcd-peer", "127.0.0.1:"+strconv.Itoa(etcdP),
		"--log-level", "warn", "--log-format", "text", "--admin-token", benchToken)
	pw.Close()
	if err != nil {
		return nil, err
	}
	c := &contender{name: "crowdpilot", origin: o, procs: []*proc{p}}
	var admins []string
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	deadline := time.After(60 * time.Second)
	for ready := false; !ready; {
		select {
		case l, ok := <-lines:
			if !ok {
				c.stop(ctx)
				return nil, errors.New("crowdpilot up exited before it was ready (see crowdpilot.log)")
			}
			slog.Debug("crowdpilot", "line", l)
			f := strings.Fields(l)
			if len(f) == 6 && f[0] == "node" && f[2] == "data" && f[4] == "admin" {
				c.targets = append(c.targets, strings.TrimPrefix(f[3], "http://"))
				admins = append(admins, strings.TrimPrefix(f[5], "http://"))
			}
			ready = strings.HasPrefix(l, "ready:")
		case <-deadline:
			c.stop(ctx)
			return nil, errors.New("crowdpilot up not ready within 60s")
		case <-ctx.Done():
			c.stop(ctx)
			return nil, ctx.Err()
		}
	}
	go func() { // keep draining stdout so the child never blocks on it
		for range lines {
		}
	}()
	if len(c.targets) != cfg.nodes {
		c.stop(ctx)
		return nil, fmt.Errorf("crowdpilot up printed %d nodes, want %d", len(c.targets), cfg.nodes)
	}
	if err := waitMembers(ctx, admins, cfg.nodes); err != nil {
		c.stop(ctx)
		return nil, err
	}
	c.admins = map[string]string{}
	for _, a := range admins {
		var v struct {
			Self string `json:"self"`
		}
		if err := getJSON(ctx, "http://"+a+"/api/v1/cluster", &v); err != nil {
			c.stop(ctx)
			return nil, fmt.Errorf("crowdpilot node %s: %w", a, err)
		}
		c.admins[v.Self] = a
	}
	return c, nil
}

// waitMembers polls each admin's /api/v1/cluster until it is ready and
// lists n members, within 30 s.
func waitMembers(ctx context.Context, admins []string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, a := range admins {
		for {
			var v struct {
				Ready   bool              `json:"ready"`
				Members []json.RawMessage `json:"members"`
			}
			err := getJSON(ctx, "http://"+a+"/api/v1/cluster", &v)
			if err == nil && v.Ready && len(v.Members) == n {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("crowdpilot node %s: not ready with %d members: %w (last: %v, %d members)", a, n, ctx.Err(), err, len(v.Members))
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// startNginx runs nginx (--nginx-workers, by default one per core) with proxy_cache,
// proxy_cache_lock, use_stale updating and background update in front of o.
func startNginx(ctx context.Context, cfg config, o *origin) (*contender, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.tmp, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("nginx dir: %w", err)
	}
	conf := fmt.Sprintf(`worker_processes %[5]s;
worker_rlimit_nofile 20000;
daemon off;
pid %[1]s/nginx.pid;
error_log %[2]s/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_timeout 120s;
  keepalive_requests 100000;
  proxy_cache_path %[1]s/cache levels=1:2 keys_zone=c:16m max_size=256m inactive=10m use_temp_path=off;
  upstream origin { server %[3]s; keepalive 64; }
  server {
    listen 127.0.0.1:%[4]d backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache c;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 30s;
      proxy_cache_lock_age 30s;
      proxy_cache_use_stale updating error timeout http_503;
      proxy_cache_background_update on;
      proxy_cache_revalidate on;
      add_header X-Cache $upstream_cache_status always;
    }
  }
}
`, dir, absPath(cfg.out), strings.TrimPrefix(o.url, "http://"), port, cfg.nginxWorkers)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("nginx conf: %w", err)
	}
	p, err := startProc("nginx", filepath.Join(cfg.out, "nginx.log"), cfg.pgidFile, nil, cfg.nginx, "-p", dir, "-c", confPath)
	if err != nil {
		return nil, err
	}
	c := &contender{name: "nginx", targets: []string{"127.0.0.1:" + strconv.Itoa(port)}, origin: o, procs: []*proc{p}}
	if err := waitServing(ctx, c); err != nil {
		c.stop(ctx)
		return nil, err
	}
	return c, nil
}

// startVarnish runs varnishd in front of o with a 256 MiB malloc store and
// the default VCL (grace 10 s). Its thread pools are sized for the crowd
// (the defaults, 2 × 100 threads and a queue of 20, drop a stampede of 2,000
// sessions), as an operator expecting a ticket sale would.
func startVarnish(ctx context.Context, cfg config, o *origin) (*contender, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.tmp, "varnish")
	p, err := startProc("varnish", filepath.Join(cfg.out, "varnish.log"), cfg.pgidFile, nil, cfg.varnishd,
		"-F", "-n", dir, "-a", "127.0.0.1:"+strconv.Itoa(port), "-b", strings.TrimPrefix(o.url, "http://"),
		"-s", "malloc,256m", "-T", "none",
		"-p", "thread_pool_min="+strconv.Itoa(cfg.requests/2+100), "-p", "thread_pool_max=5000",
		"-p", "thread_queue_limit="+strconv.Itoa(cfg.requests), "-p", "timeout_idle=30")
	if err != nil {
		return nil, err
	}
	c := &contender{name: "varnish", targets: []string{"127.0.0.1:" + strconv.Itoa(port)}, origin: o, procs: []*proc{p}}
	if err := waitServing(ctx, c); err != nil {
		c.stop(ctx)
		return nil, err
	}
	return c, nil
}

// waitServing waits until every target answers a probe with 200, within 30 s.
func waitServing(ctx context.Context, c *contender) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, t := range c.targets {
		for {
			err := probe(ctx, "http://"+t+"/probe/"+c.name)
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s at %s never answered: %w (last: %v)", c.name, t, ctx.Err(), err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func probe(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
