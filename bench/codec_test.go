package bench

import (
	"encoding/json"
	"testing"

	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The real messages of the two hops, filled as the shop fills them.
func createOrderRequest() *ordersv1.CreateOrderRequest {
	return &ordersv1.CreateOrderRequest{
		Items: []*ordersv1.CartItem{
			{ProductId: "gopher-plush", Quantity: 2},
			{ProductId: "sticker-pack", Quantity: 1},
		},
		PaymentToken:   "tok_visa",
		IdempotencyKey: "8a7f3c2e-5b1d-4e9a-9f0c-2d6b8e4a1c37",
	}
}

func chargeRequest() *paymentsv1.ChargeRequest {
	return &paymentsv1.ChargeRequest{
		IdempotencyKey: "ord_M5W5QC6TXFJ4QZ2K7B3N8R1D9E",
		Amount:         &paymentsv1.Money{CurrencyCode: "USD", MinorUnits: 4497},
		PaymentToken:   "tok_visa",
		Reference:      "ord_M5W5QC6TXFJ4QZ2K7B3N8R1D9E",
	}
}

// Plain structs with the same fields and JSON names, for encoding/json: what
// a hand-written REST service would use.
type (
	cartItemJSON struct {
		ProductID string `json:"productId"`
		Quantity  int32  `json:"quantity"`
	}
	createOrderJSON struct {
		Items          []cartItemJSON `json:"items"`
		PaymentToken   string         `json:"paymentToken"`
		IdempotencyKey string         `json:"idempotencyKey"`
	}
	moneyJSON struct {
		CurrencyCode string `json:"currencyCode"`
		MinorUnits   int64  `json:"minorUnits,string"`
	}
	chargeJSON struct {
		IdempotencyKey string    `json:"idempotencyKey"`
		Amount         moneyJSON `json:"amount"`
		PaymentToken   string    `json:"paymentToken"`
		Reference      string    `json:"reference"`
	}
)

func BenchmarkCodec(b *testing.B) {
	for _, m := range []struct {
		name            string
		msg             proto.Message
		plain, plainOut any
	}{
		{"CreateOrderRequest", createOrderRequest(), createOrderJSON{
			Items:        []cartItemJSON{{"gopher-plush", 2}, {"sticker-pack", 1}},
			PaymentToken: "tok_visa", IdempotencyKey: "8a7f3c2e-5b1d-4e9a-9f0c-2d6b8e4a1c37",
		}, new(createOrderJSON)},
		{"ChargeRequest", chargeRequest(), chargeJSON{
			IdempotencyKey: "ord_M5W5QC6TXFJ4QZ2K7B3N8R1D9E", Amount: moneyJSON{"USD", 4497},
			PaymentToken: "tok_visa", Reference: "ord_M5W5QC6TXFJ4QZ2K7B3N8R1D9E",
		}, new(chargeJSON)},
	} {
		b.Run(m.name+"/proto", func(b *testing.B) {
			out := m.msg.ProtoReflect().New().Interface()
			for b.Loop() {
				data, err := proto.Marshal(m.msg)
				if err != nil {
					b.Fatal(err)
				}
				proto.Reset(out)
				if err := proto.Unmarshal(data, out); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(m.name+"/protojson", func(b *testing.B) {
			out := m.msg.ProtoReflect().New().Interface()
			for b.Loop() {
				data, err := protojson.Marshal(m.msg)
				if err != nil {
					b.Fatal(err)
				}
				proto.Reset(out)
				if err := protojson.Unmarshal(data, out); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(m.name+"/encoding-json", func(b *testing.B) {
			for b.Loop() {
				data, err := json.Marshal(m.plain)
				if err != nil {
					b.Fatal(err)
				}
				if err := json.Unmarshal(data, m.plainOut); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
