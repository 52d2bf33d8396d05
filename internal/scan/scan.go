// Package scan reads query results the same way in every store, whether
// they come from database/sql (SQLite) or pgx (PostgreSQL).
package scan

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Rows is what both drivers' result sets offer.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// Page reads up to limit values with scan, which also returns each row's
// cursor (the ordering column), and one row more to learn whether another
// page follows: it returns the values and the cursor of the last one, or 0
// on the last page. The query must ask for limit+1 rows.
func Page[T any](rs Rows, limit int, scan func(Rows) (cursor int64, v T, err error)) ([]T, int64, error) {
	var (
		list []T
		last int64
	)
	for rs.Next() {
		if len(list) == limit {
			return list, last, rs.Err()
		}
		cursor, v, err := scan(rs)
		if err != nil {
			return nil, 0, err
		}
		list, last = append(list, v), cursor
	}
	return list, 0, rs.Err()
}

// Decode returns the protobuf message stored as data.
func Decode[T any, M interface {
	*T
	proto.Message
}](data []byte) (M, error) {
	m := M(new(T))
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("decode stored %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return m, nil
}

// Counts reads rows of (key, count) into a map.
func Counts(rs Rows) (map[string]int, error) {
	counts := make(map[string]int)
	for rs.Next() {
		var (
			key string
			n   int
		)
		if err := rs.Scan(&key, &n); err != nil {
			return nil, err
		}
		counts[key] = n
	}
	return counts, rs.Err()
}

// All reads every row with scan.
func All[T any](rs Rows, scan func(Rows) (T, error)) ([]T, error) {
	var list []T
	for rs.Next() {
		v, err := scan(rs)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	return list, rs.Err()
}

// Message reads a row of (cursor, protobuf encoding): the shape of the
// stores' ordered tables. Use it with [Page] and [All].
func Message[T any, M interface {
	*T
	proto.Message
}](rs Rows) (int64, M, error) {
	var (
		cursor int64
		data   []byte
	)
	if err := rs.Scan(&cursor, &data); err != nil {
		return 0, nil, err
	}
	m, err := Decode[T, M](data)
	return cursor, m, err
}
