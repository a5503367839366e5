package storage

import (
	"context"
	"slices"
	"testing"
)

// Placeholder values reach the server as values, whatever they contain.
func TestQueryBindsArgumentsAsValues(t *testing.T) {
	s, _, _ := openStore(t)
	hostile := `x' OR 1=1 -- \' ? \? ` + "\x00\n" + `"; DROP TABLE alerts`
	rows, err := s.Query(context.Background(), "SELECT ?, length(?), has(CAST(? AS Array(String)), ?), toInt64(?)",
		hostile, hostile, []string{"a", hostile}, hostile, int64(-5))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got string
	var n uint64
	var has uint8
	var i int64
	var seen int
	for rows.Next() {
		if err := rows.Scan(&got, &n, &has, &i); err != nil {
			t.Fatal(err)
		}
		seen++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != 1 || got != hostile || n != uint64(len(hostile)) || has != 1 || i != -5 {
		t.Errorf("got %d rows: %q, %d, %d, %d; want %q, %d, 1, -5", seen, got, n, has, i, hostile, len(hostile))
	}
}

func TestQueryReportsServerErrors(t *testing.T) {
	s, _, db := openStore(t)
	if _, err := s.Query(context.Background(), "SELECT nope FROM "+db+".request_events"); err == nil {
		t.Error("a query of an unknown column succeeded")
	}
	rows, err := s.Query(context.Background(), "SELECT name FROM system.tables WHERE database = ? ORDER BY name", db)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if !slices.Contains(names, "request_events") || !slices.Contains(names, "alerts") {
		t.Errorf("tables %v", names)
	}
}
