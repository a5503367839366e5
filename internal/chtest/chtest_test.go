package chtest_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vigil-sec/vigil/internal/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

const eventsTable = `CREATE TABLE events (
	id      UInt64,
	version UInt32,
	ts      DateTime64(3, 'UTC'),
	host    LowCardinality(String),
	src     IPv6,
	attrs   Map(String, String)
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toDate(ts)
ORDER BY (host, id)`

// TestNativeProtocol creates a table of the column types Vigil uses, batch
// inserts 10k rows over the native protocol and reads them back.
func TestNativeProtocol(t *testing.T) {
	addr, db := chtest.NewDatabase(t)
	conn := chtest.Open(t, addr, db)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if err := conn.Exec(ctx, eventsTable); err != nil {
		t.Fatal(err)
	}
	// 5000 ids, each inserted twice (version 1 and 2): 10k rows, 5000 after FINAL.
	const ids, total = 5000, 10000
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	// One 10k-row block: without optimize_on_insert=0 the engine would already
	// collapse the duplicates within the block while writing it.
	insertCtx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"optimize_on_insert": 0}))
	batch, err := conn.PrepareBatch(insertCtx, "INSERT INTO events")
	if err != nil {
		t.Fatal(err)
	}
	for n := range total {
		id, version := uint64(n%ids), uint32(1+n/ids)
		err := batch.Append(id, version,
			base.Add(time.Duration(id)*time.Millisecond),
			fmt.Sprintf("host-%d", id%7),
			net.ParseIP(fmt.Sprintf("2001:db8::%x", id)),
			map[string]string{"v": fmt.Sprint(version), "user": fmt.Sprintf("u%d", id%13)},
		)
		if err != nil {
			batch.Abort()
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}

	if got := count(t, conn, "SELECT count() FROM events"); got != total {
		t.Errorf("count() = %d, want %d", got, total)
	}
	if got := count(t, conn, "SELECT count() FROM events FINAL"); got != ids {
		t.Errorf("count() FINAL = %d, want %d", got, ids)
	}
	if got := count(t, conn, "SELECT count() FROM events FINAL WHERE version != 2 OR attrs['v'] != '2'"); got != 0 {
		t.Errorf("FINAL kept %d rows of the older version", got)
	}

	// Round-trip of every type, one id.
	rows, err := conn.Query(ctx, "SELECT id, version, ts, host, src, attrs FROM events FINAL WHERE id = ?", uint64(1234))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var (
			id      uint64
			version uint32
			ts      time.Time
			host    string
			src     net.IP
			attrs   map[string]string
		)
		if err := rows.Scan(&id, &version, &ts, &host, &src, &attrs); err != nil {
			t.Fatal(err)
		}
		n++
		wantTS := base.Add(1234 * time.Millisecond)
		if id != 1234 || version != 2 || !ts.Equal(wantTS) || host != "host-2" ||
			!src.Equal(net.ParseIP("2001:db8::4d2")) || attrs["v"] != "2" || attrs["user"] != "u12" {
			t.Errorf("got row %d %d %v %q %v %v", id, version, ts, host, src, attrs)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("got %d rows for id 1234, want 1", n)
	}

	if err := conn.Exec(ctx, "OPTIMIZE TABLE events FINAL"); err != nil {
		t.Fatal(err)
	}
	if got := count(t, conn, "SELECT count() FROM events"); got != ids {
		t.Errorf("count() after OPTIMIZE FINAL = %d, want %d", got, ids)
	}
	if err := conn.Exec(ctx, "DROP TABLE events SYNC"); err != nil {
		t.Fatal(err)
	}
	if got := count(t, conn, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'events'"); got != 0 {
		t.Errorf("events still listed after DROP")
	}
}

// TestNewDatabaseIsolated: each NewDatabase is a fresh, distinct database.
func TestNewDatabaseIsolated(t *testing.T) {
	addr, db1 := chtest.NewDatabase(t)
	_, db2 := chtest.NewDatabase(t)
	if db1 == db2 {
		t.Fatalf("two NewDatabase calls returned %s", db1)
	}
	conn := chtest.Open(t, addr, db1)
	if got := count(t, conn, "SELECT count() FROM system.tables WHERE database = currentDatabase()"); got != 0 {
		t.Errorf("new database %s has %d tables", db1, got)
	}
	if got := count(t, conn, fmt.Sprintf("SELECT count() FROM system.databases WHERE name IN ('%s', '%s')", db1, db2)); got != 2 {
		t.Errorf("%d of the 2 databases exist", got)
	}
}

// TestRestartKeepsRows stops a server with the script and starts it again on
// the same data directory; then kills it and lets the watchdog restart it.
func TestRestartKeepsRows(t *testing.T) {
	if testing.Short() {
		t.Skip("chtest: needs a real ClickHouse server: skipped in -short mode")
	}
	inst, err := chtest.StartInstance(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := inst.Stop(); err != nil {
			t.Error(err)
		}
	})
	const rowsWanted = 1000
	func() {
		conn := chtest.Open(t, inst.Addr.Native, "default")
		ctx := context.Background()
		if err := conn.Exec(ctx, "CREATE DATABASE keep"); err != nil {
			t.Fatal(err)
		}
		if err := conn.Exec(ctx, "CREATE TABLE keep.t (id UInt64, ts DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY id"); err != nil {
			t.Fatal(err)
		}
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO keep.t")
		if err != nil {
			t.Fatal(err)
		}
		for i := range rowsWanted {
			if err := batch.Append(uint64(i), time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if err := batch.Send(); err != nil {
			t.Fatal(err)
		}
	}()

	t.Run("stop and start", func(t *testing.T) {
		began := time.Now()
		if err := inst.Stop(); err != nil {
			t.Fatal(err)
		}
		t.Logf("stop: %v", time.Since(began).Round(time.Millisecond))
		if pingHTTP(inst.Addr.HTTP) == nil {
			t.Fatal("server still answers /ping after Stop")
		}
		began = time.Now()
		if err := inst.Start(); err != nil {
			t.Fatal(err)
		}
		t.Logf("start: %v", time.Since(began).Round(time.Millisecond))
		if err := inst.Start(); err != nil { // running: a no-op
			t.Fatalf("second Start: %v", err)
		}
		conn := chtest.Open(t, inst.Addr.Native, "keep")
		if got := count(t, conn, "SELECT count() FROM t"); got != rowsWanted {
			t.Errorf("after restart: count() = %d, want %d", got, rowsWanted)
		}
	})

	t.Run("watchdog restarts a killed server", func(t *testing.T) {
		pid, err := inst.PID()
		if err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for {
			if newPID, err := inst.PID(); err == nil && newPID != pid && pingHTTP(inst.Addr.HTTP) == nil {
				break
			}
			if time.Since(killed) > 30*time.Second {
				t.Fatal("the watchdog did not bring the server back within 30 s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("back %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
		conn := chtest.Open(t, inst.Addr.Native, "keep")
		if got := count(t, conn, "SELECT count() FROM t"); got != rowsWanted {
			t.Errorf("after the watchdog's restart: count() = %d, want %d", got, rowsWanted)
		}
	})
}

func count(t *testing.T, conn driver.Conn, query string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// pingHTTP asks the HTTP interface's /ping; nil when it answers Ok.
func pingHTTP(addr string) error {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/ping")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/ping: %s", resp.Status)
	}
	return nil
}
