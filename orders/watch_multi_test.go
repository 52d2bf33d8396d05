package orders_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/pgdb/pgtest"
	"github.com/connectshop/connectshop/orders"
	"github.com/google/go-cmp/cmp"
)

// watchStream is a WatchOrders stream read with a deadline per change.
type watchStream struct {
	t      *testing.T
	stream *connect.ServerStreamForClient[ordersv1.WatchOrdersResponse]
	token  string // resume token of the last change read
}

func openWatch(t *testing.T, c ordersv1connect.OrderServiceClient, token string) *watchStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	stream, err := c.WatchOrders(ctx, connect.NewRequest(&ordersv1.WatchOrdersRequest{ResumeToken: token}))
	if err != nil {
		t.Fatal(err)
	}
	stream.ResponseHeader() // subscribed once the headers arrive
	return &watchStream{t: t, stream: stream, token: token}
}

// next returns "id:STATUS" of the next change, failing after 5 s.
func (w *watchStream) next() string {
	w.t.Helper()
	got := make(chan bool, 1)
	go func() { got <- w.stream.Receive() }()
	select {
	case ok := <-got:
		if !ok {
			w.t.Fatalf("stream ended: %v", w.stream.Err())
		}
	case <-time.After(5 * time.Second):
		w.t.Fatal("no change in 5s")
	}
	msg := w.stream.Msg()
	w.token = msg.GetResumeToken()
	return msg.GetOrder().GetId() + ":" + msg.GetOrder().GetStatus().String()
}

// Two orders instances on one PostgreSQL database: a watcher on one sees
// every change made on the other, in order, and one that reconnects with
// its resume token, to either instance, misses none of the changes made
// while it was away.
func TestWatchAcrossInstances(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{ordersDB: pgtest.URL(t)})
	other := s.anotherOrders(t)
	a := s.client(connect.WithGRPC())
	b := ordersv1connect.NewOrderServiceClient(other.Client(), other.URL(), connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(s.token)))

	var want []string
	place := func(i int, cancel bool) {
		o := createOrder(t, a, visaOrder(fmt.Sprintf("watch-%d", i)))
		want = append(want, o.GetId()+":ORDER_STATUS_PAID")
		if cancel {
			if _, err := a.CancelOrder(context.Background(), connect.NewRequest(&ordersv1.CancelOrderRequest{Id: o.GetId()})); err != nil {
				t.Fatal(err)
			}
			want = append(want, o.GetId()+":ORDER_STATUS_CANCELLING", o.GetId()+":ORDER_STATUS_CANCELLED")
		}
	}

	w := openWatch(t, b, "")
	var got []string
	for i := range 4 {
		place(i, i%2 == 1)
	}
	for len(got) < len(want) {
		got = append(got, w.next())
	}
	// Away: the stream ends, orders go on, the client comes back to the
	// other instance with its token.
	w.stream.Close()
	for i := 4; i < 8; i++ {
		place(i, i%2 == 1)
	}
	w = openWatch(t, a, w.token)
	for len(got) < len(want) {
		got = append(got, w.next())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes seen across instances and a reconnect (-want +got):\n%s", diff)
	}

	// A token from the future is not one the service gave.
	bad := openWatch(t, b, "1000000")
	if bad.stream.Receive() || connect.CodeOf(bad.stream.Err()) != connect.CodeInvalidArgument {
		t.Errorf("resume token ahead of the feed: got %v, want invalid_argument", bad.stream.Err())
	}
	// Once the changes after a token are pruned, resuming from it says so.
	if err := orders.PruneChanges(context.Background(), s.ordersServer, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	expired := openWatch(t, b, "1")
	if expired.stream.Receive() {
		t.Fatalf("resume from a pruned token: got a change, want an error")
	}
	assertError(t, expired.stream.Err(), connect.CodeOutOfRange, ordersv1.ErrorReason_RESUME_TOKEN_EXPIRED.String())
}
