package chtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ClusterName is the cluster's name in the shards' remote_servers.
const ClusterName = "vigil"

// Cluster is a ClickHouse cluster started by `scripts/clickhouse.sh
// start-cluster`: one server per shard, each listing all of them in
// remote_servers as cluster ClusterName, with macros shard and replica.
// There is no Keeper (the engine cannot run one): no ON CLUSTER DDL, no
// replicated tables. Distributed tables work.
type Cluster struct {
	Name   string
	Shards []*Instance // in shard order; Stop and Start one to take its shard down
}

// Natives returns the shards' native addresses, in shard order.
func (c *Cluster) Natives() []string {
	out := make([]string, len(c.Shards))
	for i, s := range c.Shards {
		out[i] = s.Addr.Native
	}
	return out
}

// StartCluster starts a cluster of n shards of its own on free loopback
// ports, with its data in a temporary directory, and stops it when the
// test ends (the script's watchdogs stop it should the test binary die
// first). It fails the test when the cluster cannot start, and skips it
// under -short.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("chtest: needs real ClickHouse servers: skipped in -short mode")
	}
	script, err := findScript()
	if err != nil {
		t.Fatalf("chtest: %v", err)
	}
	dir := t.TempDir()
	var c *Cluster
	for attempt := 0; ; attempt++ {
		c, err = startCluster(script, dir, n)
		// Another process may take a free port between picking and binding it.
		if err == nil || attempt == 2 || !strings.Contains(err.Error(), "already in use") {
			break
		}
	}
	t.Cleanup(func() {
		if _, err := runScript(script, 2*time.Minute, "stop-cluster", clusterEnv(dir)); err != nil {
			t.Errorf("chtest: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("chtest: cannot start a ClickHouse cluster of %d shards: %v", n, err)
	}
	return c
}

func startCluster(script, dir string, n int) (*Cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: ClusterName}
	var tcp, http []string
	for i := range n {
		addr := Addr{
			Native: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i])),
			HTTP:   net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i+1])),
		}
		tcp, http = append(tcp, strconv.Itoa(ports[2*i])), append(http, strconv.Itoa(ports[2*i+1]))
		c.Shards = append(c.Shards, &Instance{Dir: filepath.Join(dir, fmt.Sprintf("shard%d", i+1)), Addr: addr, script: script})
	}
	env := append(clusterEnv(dir),
		"CLICKHOUSE_CLUSTER_NAME="+ClusterName,
		"CLICKHOUSE_CLUSTER_TCP_PORTS="+strings.Join(tcp, ","),
		"CLICKHOUSE_CLUSTER_HTTP_PORTS="+strings.Join(http, ","),
	)
	// The first run may fetch and build the engine.
	if _, err := runScript(script, 15*time.Minute, "start-cluster", env); err != nil {
		return nil, err
	}
	return c, nil
}

func clusterEnv(dir string) []string {
	return []string{
		"CLICKHOUSE_CLUSTER_DIR=" + dir,
		"CLICKHOUSE_OWNER_PID=" + strconv.Itoa(os.Getpid()),
		"CLICKHOUSE_REMOVE_DIR_WITH_OWNER=",
	}
}

func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// runScript runs a script command with env added; the error includes its output.
func runScript(script string, timeout time.Duration, command string, env []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script, command)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %v", timeout)
		}
		return string(out), fmt.Errorf("%s %s: %w\n%s", script, command, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
