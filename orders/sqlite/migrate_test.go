package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"google.golang.org/protobuf/proto"
)

// A database written by the first version, before schemas had versions,
// keeps its orders when opened by this one.
func TestMigratesFirstVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "orders.db")
	old := &ordersv1.Order{Id: "ord_old", Status: ordersv1.OrderStatus_ORDER_STATUS_PAID}
	data, err := proto.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, migrations[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, `INSERT INTO orders (id, idempotency_key, request_hash, payment_token, status, updated_at, data)
		VALUES ('ord_old', 'key-1', x'00', 'tok_visa', 2, 0, ?)`, data); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Order(ctx, "ord_old")
	if err != nil || !proto.Equal(got, old) {
		t.Fatalf("old order after migration: got %v (err %v), want %v", got, err, old)
	}
	// Its key belonged to nobody; a customer may use it.
	o, err := s.Create(ctx, "key-1", []byte("h"), "tok_visa", &ordersv1.Order{Id: "ord_new", CustomerId: "cus_a"})
	if err != nil || o.GetId() != "ord_new" {
		t.Fatalf("Create with the old key: got %v (err %v), want ord_new", o, err)
	}
	// Opening again migrates nothing twice.
	s.Close()
	if s, err = Open(ctx, path); err != nil {
		t.Fatalf("reopen: %v", err)
	}
}
