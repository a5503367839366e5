// Package chtest is a test helper that gives tests a real ClickHouse server.
//
// A package whose tests need ClickHouse calls Main from its TestMain:
//
//	func TestMain(m *testing.M) { chtest.Main(m) }
//
// and each test asks for a database of its own:
//
//	addr, db := chtest.NewDatabase(t) // dropped when the test ends
//	conn := chtest.Open(t, addr, db)  // closed when the test ends
//
// When VIGIL_CLICKHOUSE_ADDR (host:port of the native protocol) is set, that
// server is used, e.g. one started by `scripts/clickhouse.sh start` (see its
// `env` command). Otherwise the first test that asks starts a server for the
// whole test binary through scripts/clickhouse.sh, which fetches and builds it
// first if needed (chDB's engine from npm, cached under .cache/chdb): free
// loopback ports, data in a temporary directory, stopped by Main when the
// binary exits (and by the script's watchdog should the binary die first).
//
// A test of sharded storage calls StartCluster for a cluster of its own
// (`scripts/clickhouse.sh start-cluster`: one server per shard, no Keeper).
//
// Integration tests never skip silently: when no server can be had, the test
// fails with the reason. Under `go test -short` they are skipped, saying so.
//
// The server is chDB's embedded ClickHouse 26.7 engine run as a server. A
// protocol error aborts it (the script's watchdog restarts it, data kept), and
// so does a client process that exits with an unread result set in its socket:
// always `defer rows.Close()`, and close connections (Open does).
package chtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Environment variables naming an already running server; `scripts/clickhouse.sh env` prints them.
const (
	EnvAddr     = "VIGIL_CLICKHOUSE_ADDR"      // host:port, native protocol
	EnvHTTPAddr = "VIGIL_CLICKHOUSE_HTTP_ADDR" // host:port, HTTP interface (optional)
)

// Addr is where a server listens.
type Addr struct {
	Native string // host:port of the native protocol (clickhouse-go's default)
	HTTP   string // host:port of the HTTP interface; "" when VIGIL_CLICKHOUSE_ADDR is set without VIGIL_CLICKHOUSE_HTTP_ADDR
}

var (
	mainCalled atomic.Bool

	sharedOnce sync.Once
	sharedMu   sync.Mutex
	shared     *Instance
	sharedErr  error

	envMu    sync.Mutex
	envErr   error
	envPing  bool
	dbSerial atomic.Int64
)

// Main runs the tests and then stops the server this binary started, if any.
// Call it from TestMain; it does not return.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	sharedMu.Lock()
	inst := shared
	sharedMu.Unlock()
	if inst != nil {
		if err := inst.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "chtest: stopping ClickHouse: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		os.RemoveAll(inst.Dir)
	}
	os.Exit(code)
}

// Server returns the address of the test binary's ClickHouse server, starting
// it on first use. It fails the test when there is no server to be had, and
// skips it under -short.
func Server(t testing.TB) Addr {
	t.Helper()
	if testing.Short() {
		t.Skip("chtest: needs a real ClickHouse server: skipped in -short mode")
	}
	if native := os.Getenv(EnvAddr); native != "" {
		addr := Addr{Native: native, HTTP: os.Getenv(EnvHTTPAddr)}
		if err := pingEnvServer(native); err != nil {
			t.Fatalf("chtest: %s=%s: %v", EnvAddr, native, err)
		}
		return addr
	}
	if !mainCalled.Load() {
		t.Fatal("chtest: the package's TestMain must call chtest.Main(m), which stops the server when the tests end")
	}
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vigil-clickhouse-")
		if err != nil {
			sharedErr = err
			return
		}
		inst, err := startInstance(dir, true)
		if err != nil {
			os.RemoveAll(dir)
			sharedErr = err
			return
		}
		sharedMu.Lock()
		shared = inst
		sharedMu.Unlock()
	})
	if sharedErr != nil {
		t.Fatalf("chtest: cannot start a ClickHouse server (set %s to use a running one): %v", EnvAddr, sharedErr)
	}
	return shared.Addr
}

// ServerPID returns the process id of the server this binary started, and
// false when it uses a server of VIGIL_CLICKHOUSE_ADDR or has none yet:
// benchmarks read the server's CPU time from it.
func ServerPID() (int, bool) {
	sharedMu.Lock()
	inst := shared
	sharedMu.Unlock()
	if inst == nil {
		return 0, false
	}
	pid, err := inst.PID()
	return pid, err == nil
}

func pingEnvServer(native string) error {
	envMu.Lock()
	defer envMu.Unlock()
	if envPing {
		return envErr
	}
	envPing = true
	conn, err := dial(native, "default")
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = conn.Ping(ctx)
		cancel()
		conn.Close()
	}
	if err != nil {
		envErr = fmt.Errorf("no ClickHouse server answers there: %w", err)
	}
	return envErr
}

// NewDatabase creates a database with a unique name on the test binary's
// server and drops it when the test ends. It returns the server's native
// address and the database's name.
func NewDatabase(t testing.TB) (addr string, db string) {
	t.Helper()
	native := Server(t).Native
	db = databaseName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := execOnce(ctx, native, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		t.Fatalf("chtest: creating database %s: %v", db, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := execOnce(ctx, native, "DROP DATABASE IF EXISTS "+db+" SYNC"); err != nil {
			t.Errorf("chtest: dropping database %s: %v", db, err)
		}
	})
	return native, db
}

// databaseName makes a unique, valid identifier: test name, process, serial.
func databaseName(testName string) string {
	var b strings.Builder
	b.WriteString("test_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 40 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	fmt.Fprintf(&b, "_%d_%d", os.Getpid(), dbSerial.Add(1))
	return b.String()
}

// Open connects to database db at the native address addr with clickhouse-go
// (LZ4 compression, user default) and closes the connection when the test ends.
func Open(t testing.TB, addr, db string) driver.Conn {
	t.Helper()
	conn, err := dial(addr, db)
	if err != nil {
		t.Fatalf("chtest: connecting to %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("chtest: ping %s: %v", addr, err)
	}
	return conn
}

func dial(addr, db string) (driver.Conn, error) {
	return clickhouse.Open(&clickhouse.Options{
		Addr:        []string{addr},
		Auth:        clickhouse.Auth{Database: db, Username: "default"},
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		DialTimeout: 10 * time.Second,
	})
}

func execOnce(ctx context.Context, addr, query string) error {
	// The engine aborts on some client hiccups (a cancelled query, a client
	// gone with an unread result) and the watchdog restarts it within
	// seconds: a connection that fails, or a server that answers that it
	// is shutting down (code 236), is retried until ctx ends, so one
	// test's abort does not fail the tests after it.
	for {
		err := execConn(ctx, addr, query)
		var ex *clickhouse.Exception
		if err == nil || (errors.As(err, &ex) && ex.Code != 236) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func execConn(ctx context.Context, addr, query string) error {
	conn, err := dial(addr, "default")
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Exec(ctx, query)
}

// Instance is a ClickHouse server run by scripts/clickhouse.sh, with its data,
// logs and pid files in Dir. It is stopped by the script's watchdog when the
// process that started it exits, should Stop not have been called.
type Instance struct {
	Dir  string // instance directory: data/, server.log, server.out, watchdog.log, server.pid
	Addr Addr

	script      string
	removeOwner bool
}

// StartInstance starts a server of its own on free loopback ports with its
// data in dir/data (dir is created if missing; an existing data directory is
// reused). It installs the engine first if needed. Most tests want Server or
// NewDatabase instead; this is for tests that stop and restart a server.
func StartInstance(dir string) (*Instance, error) {
	return startInstance(dir, false)
}

func startInstance(dir string, removeWithOwner bool) (*Instance, error) {
	script, err := findScript()
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	inst := &Instance{Dir: dir, script: script, removeOwner: removeWithOwner}
	if _, err := inst.run(15*time.Minute, "install"); err != nil {
		return nil, err
	}
	if err := inst.Start(); err != nil {
		return nil, err
	}
	return inst, nil
}

// Start starts the server again after Stop, with the same data directory and,
// when they are still free, the same ports (read Addr afterwards). It is a
// no-op when the server is running.
func (i *Instance) Start() error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if i.Addr.Native == "" || attempt > 0 {
			if err := i.pickPorts(); err != nil {
				return err
			}
		}
		var out string
		out, err = i.run(3*time.Minute, "start")
		if err == nil {
			return nil
		}
		// Another process may take a free port between picking and binding it.
		if !strings.Contains(out, "already in use") && !strings.Contains(out, "Address already in use") {
			return err
		}
	}
	return err
}

// Stop stops the server cleanly (see scripts/clickhouse.sh stop). The data
// directory is kept.
func (i *Instance) Stop() error {
	_, err := i.run(2*time.Minute, "stop")
	return err
}

// PID returns the process id of the running server, as recorded by the script.
func (i *Instance) PID() (int, error) {
	b, err := os.ReadFile(filepath.Join(i.Dir, "server.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func (i *Instance) pickPorts() error {
	var ports [2]int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for k := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports[k] = l.Addr().(*net.TCPAddr).Port
	}
	i.Addr = Addr{
		Native: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		HTTP:   net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
	}
	return nil
}

// run runs the script; the error includes its output.
func (i *Instance) run(timeout time.Duration, command string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", i.script, command)
	env := append(os.Environ(),
		"CLICKHOUSE_DIR="+i.Dir,
		"CLICKHOUSE_DATA="+filepath.Join(i.Dir, "data"),
		"CLICKHOUSE_OWNER_PID="+strconv.Itoa(os.Getpid()),
		"CLICKHOUSE_REMOVE_DIR_WITH_OWNER=",
	)
	if i.removeOwner {
		env = append(env, "CLICKHOUSE_REMOVE_DIR_WITH_OWNER=1")
	}
	if i.Addr.Native != "" {
		_, tcp, _ := net.SplitHostPort(i.Addr.Native)
		_, http, _ := net.SplitHostPort(i.Addr.HTTP)
		env = append(env, "CLICKHOUSE_TCP_PORT="+tcp, "CLICKHOUSE_HTTP_PORT="+http)
	}
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %v", timeout)
		}
		return out.String(), fmt.Errorf("%s %s: %w\n%s", i.script, command, err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// findScript finds scripts/clickhouse.sh in the module's root, walking up
// from the working directory (go test runs tests in their package's directory).
func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isVigilRoot(dir) {
			script := filepath.Join(dir, "scripts", "clickhouse.sh")
			if _, err := os.Stat(script); err != nil {
				return "", err
			}
			return script, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("scripts/clickhouse.sh not found: the working directory is not inside the vigil module")
		}
		dir = parent
	}
}

func isVigilRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == "github.com/vigil-sec/vigil"
		}
	}
	return false
}
