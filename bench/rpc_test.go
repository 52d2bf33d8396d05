package bench

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/internal/telemetry"
	"github.com/connectshop/connectshop/orders"
	"github.com/connectshop/connectshop/payments"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// concurrency is the number of calls in flight, all on one HTTP/2
// connection (HTTP/1.1 needs one connection per call in flight).
const concurrency = 32

var createdAt = timestamppb.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))

// charge is the handler every server runs: a pure function, so that the
// benchmark measures the protocol stack, not a database.
func charge(req *paymentsv1.ChargeRequest) *paymentsv1.ChargeResponse {
	return &paymentsv1.ChargeResponse{Payment: &paymentsv1.Payment{
		Id:        "pay_K7VY7HSKY6QLMG4RESIG4R5FAI",
		Status:    paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED,
		Amount:    req.GetAmount(),
		Reference: req.GetReference(),
		Replica:   "payments-1",
		CreatedAt: createdAt,
	}}
}

type connectPayments struct {
	paymentsv1connect.UnimplementedPaymentServiceHandler
}

func (connectPayments) Charge(_ context.Context, req *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error) {
	return connect.NewResponse(charge(req.Msg)), nil
}

// grpcPayments registers charge with grpc-go. protoc-gen-go-grpc would write
// this into the package of the generated messages, which would make the shop
// depend on grpc-go; the bench module spells out the one method instead.
var grpcPayments = grpc.ServiceDesc{
	ServiceName: paymentsv1connect.PaymentServiceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Charge",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			req := new(paymentsv1.ChargeRequest)
			if err := dec(req); err != nil {
				return nil, err
			}
			return charge(req), nil
		},
	}},
}

func listen(b *testing.B) net.Listener {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return lis
}

// keepNothing is a payments store that stores nothing: it answers every
// charge with the payment it was given, so that a benchmark of the payments
// replica measures the protocol stack and the service, not a database.
type keepNothing struct{ payments.Store }

func (keepNothing) Charge(_ context.Context, _ string, _ []byte, p *paymentsv1.Payment) (*paymentsv1.Payment, error) {
	return p, nil
}

func (keepNothing) Close() error { return nil }

func (keepNothing) Ping(context.Context) error { return nil }

// serviceKey is the key with which the clients prove to the shop's replica
// that they are orders, as in production.
var serviceKey = func() auth.Key {
	key, err := auth.NewKey()
	if err != nil {
		panic(err)
	}
	return key
}()

// asOrders is the client option of a Connect client that calls the shop's
// replica: orders' service credentials.
var asOrders = connect.WithInterceptors(auth.ServiceCredentials(serviceKey, auth.OrdersCaller, auth.PaymentsAudience))

// serveConnect serves the Charge RPC on loopback. shop=true is the payments
// replica as production assembles it (payments.New: its HTTP server,
// interceptors, service-token checks, a text logger, validation and request
// fingerprints) over a store that keeps nothing, traced and measured by tel
// if it is not nil; false is the pure charge handler on connect-go with its
// defaults on a plain h2c server.
func serveConnect(b *testing.B, shop bool, tel *telemetry.Telemetry) string {
	b.Helper()
	lis := listen(b)
	var srv *http.Server
	if shop {
		var scope *telemetry.Scope
		if tel != nil {
			var err error
			if scope, err = tel.Scope("payments", "payments-1"); err != nil {
				b.Fatal(err)
			}
		}
		replica, err := payments.New(payments.Config{
			Telemetry:  scope,
			Name:       "payments-1",
			Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
			Store:      keepNothing{},
			ServiceKey: serviceKey,
		})
		if err != nil {
			b.Fatal(err)
		}
		srv = replica.HTTPServer()
	} else {
		mux := http.NewServeMux()
		mux.Handle(paymentsv1connect.NewPaymentServiceHandler(connectPayments{}))
		srv = &http.Server{Handler: mux, Protocols: new(http.Protocols)}
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	go srv.Serve(lis)
	b.Cleanup(func() { srv.Close() })
	return "http://" + lis.Addr().String()
}

func serveGRPC(b *testing.B) string {
	b.Helper()
	lis := listen(b)
	srv := grpc.NewServer()
	srv.RegisterService(&grpcPayments, nil)
	go srv.Serve(lis)
	b.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// serveRawGRPC answers Charge in gRPC on net/http's h2c server without
// connect: it reads the request and writes a pre-encoded response frame and
// the grpc-status trailer. It is the ceiling for any handler on net/http.
func serveRawGRPC(b *testing.B) string {
	b.Helper()
	msg, err := proto.Marshal(charge(chargeRequest()))
	if err != nil {
		b.Fatal(err)
	}
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	frame = append(frame, msg...)
	lis := listen(b)
	srv := &http.Server{Protocols: new(http.Protocols), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.Write(frame)
		w.Header().Set("Grpc-Status", "0")
	})}
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(lis)
	b.Cleanup(func() { srv.Close() })
	return lis.Addr().String()
}

func http1Client() *http.Client {
	t := &http.Transport{MaxIdleConnsPerHost: concurrency, Protocols: new(http.Protocols)}
	t.Protocols.SetHTTP1(true)
	return &http.Client{Transport: t}
}

func connectCall(httpClient *http.Client, url string, opts ...connect.ClientOption) func(context.Context) error {
	c := paymentsv1connect.NewPaymentServiceClient(httpClient, url, opts...)
	return func(ctx context.Context) error {
		_, err := c.Charge(ctx, connect.NewRequest(chargeRequest()))
		return err
	}
}

// orders' service token as grpc-go per-RPC credentials.
type serviceCredentials func() string

func (c serviceCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": c()}, nil
}

func (serviceCredentials) RequireTransportSecurity() bool { return false }

func grpcCall(b *testing.B, addr string, opts ...grpc.DialOption) func(context.Context) error {
	conn, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return func(ctx context.Context) error {
		return conn.Invoke(ctx, paymentsv1connect.PaymentServiceChargeProcedure, chargeRequest(), new(paymentsv1.ChargeResponse))
	}
}

// BenchmarkCharge runs one unary Charge per op, 32 in flight. Names read
// client→server/protocol; compare ns/op within one run.
func BenchmarkCharge(b *testing.B) {
	cases := []struct {
		name string
		call func(b *testing.B) func(context.Context) error
	}{
		{"grpc-go→grpc-go/grpc", func(b *testing.B) func(context.Context) error { return grpcCall(b, serveGRPC(b)) }},
		{"grpc-go→net/http-raw/grpc", func(b *testing.B) func(context.Context) error { return grpcCall(b, serveRawGRPC(b)) }},
		{"connect→net/http-raw/grpc", func(b *testing.B) func(context.Context) error {
			return connectCall(rpc.NewH2CClient(), "http://"+serveRawGRPC(b), connect.WithGRPC())
		}},
		{"connect→shop/grpc", func(b *testing.B) func(context.Context) error {
			return connectCall(rpc.NewH2CClient(), serveConnect(b, true, nil), connect.WithGRPC(), asOrders)
		}},
		{"connect→shop+telemetry/grpc", func(b *testing.B) func(context.Context) error {
			// As production runs it without a collector: orders' client and
			// the replica trace (spans made and dropped) and measure the call.
			tel := newTelemetry(b)
			client, err := tel.Scope("orders", "")
			if err != nil {
				b.Fatal(err)
			}
			return connectCall(rpc.NewH2CClient(), serveConnect(b, true, tel), connect.WithGRPC(),
				connect.WithInterceptors(client.Interceptors()...), asOrders)
		}},
		{"orders-client→shop+telemetry/grpc", func(b *testing.B) func(context.Context) error {
			// The hop exactly as production runs it: orders' payments client
			// (balancer with health checks and ejection, deadline, retries,
			// telemetry, service token) to a traced and measured replica.
			tel := newTelemetry(b)
			scope, err := tel.Scope("orders", "")
			if err != nil {
				b.Fatal(err)
			}
			client, closer, err := orders.NewPaymentsClient(orders.PaymentsConfig{
				Target: serveConnect(b, true, tel), ServiceKey: serviceKey, HealthInterval: time.Second,
			}, scope)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { closer.Close() })
			return func(ctx context.Context) error {
				_, err := client.Charge(ctx, connect.NewRequest(chargeRequest()))
				return err
			}
		}},
		{"connect→connect-defaults/grpc", func(b *testing.B) func(context.Context) error {
			return connectCall(rpc.NewH2CClient(), serveConnect(b, false, nil), connect.WithGRPC())
		}},
		{"grpc-go→shop/grpc", func(b *testing.B) func(context.Context) error {
			url := serveConnect(b, true, nil)
			return grpcCall(b, url[len("http://"):],
				grpc.WithPerRPCCredentials(serviceCredentials(auth.ServiceAuthorization(serviceKey, auth.OrdersCaller, auth.PaymentsAudience))))
		}},
		{"connect→grpc-go/grpc", func(b *testing.B) func(context.Context) error {
			return connectCall(rpc.NewH2CClient(), "http://"+serveGRPC(b), connect.WithGRPC())
		}},
		{"connect→shop/connect-proto", func(b *testing.B) func(context.Context) error {
			return connectCall(rpc.NewH2CClient(), serveConnect(b, true, nil), asOrders)
		}},
		{"connect→shop/connect-json", func(b *testing.B) func(context.Context) error {
			return connectCall(rpc.NewH2CClient(), serveConnect(b, true, nil), connect.WithProtoJSON(), asOrders)
		}},
		{"connect→shop/grpcweb", func(b *testing.B) func(context.Context) error {
			return connectCall(rpc.NewH2CClient(), serveConnect(b, true, nil), connect.WithGRPCWeb(), asOrders)
		}},
		{"connect→shop/connect-json-http1", func(b *testing.B) func(context.Context) error {
			return connectCall(http1Client(), serveConnect(b, true, nil), connect.WithProtoJSON(), asOrders)
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			call := c.call(b)
			if err := call(context.Background()); err != nil { // warm the connection
				b.Fatal(err)
			}
			b.SetParallelism(max(1, concurrency/goMaxProcs())) // RunParallel starts parallelism × GOMAXPROCS goroutines
			b.ReportAllocs()
			report := measureCPU(b)
			defer report()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if err := call(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
