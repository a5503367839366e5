package storage

import (
	"context"
	"fmt"
)

// Rows is a query's result set, read row by row; close it even when not
// read to the end. It is an alias of an interface literal, not a named
// type, so that packages reading ClickHouse through an interface of their
// own (longrules.Querier) declare the same literal and *Store satisfies
// it without either package importing the other.
type Rows = interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

// Query runs a read-only query. Its `?` placeholders take args, which the
// driver formats as quoted literals (strings escaped, slices as arrays):
// callers pass values from rules as args, never as query text.
func (s *Store) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse query: %w", err)
	}
	return rows, nil
}
