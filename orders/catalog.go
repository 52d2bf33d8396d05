package orders

import (
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
)

// currency is the currency of every price in the catalog.
const currency = "USD"

// catalog is what the shop sells. Prices live here, on the server: a client
// only says which products it wants and how many.
var catalog = []*ordersv1.Product{
	{Id: "gopher-plush", Name: "Gopher plush", Description: "A soft blue gopher, 20 cm tall.", Price: usd(1999)},
	{Id: "protobuf-mug", Name: "Protobuf mug", Description: "Holds 350 ml of coffee, encoded as varints.", Price: usd(1450)},
	{Id: "h2c-hoodie", Name: "h2c hoodie", Description: "Cleartext outside, multiplexed inside.", Price: usd(4900)},
	{Id: "sticker-pack", Name: "Sticker pack", Description: "Connect, gRPC and gRPC-Web stickers.", Price: usd(499)},
	{Id: "idempotency-socks", Name: "Idempotency socks", Description: "Put them on twice; still one pair.", Price: usd(1200)},
}

var productsByID = func() map[string]*ordersv1.Product {
	m := make(map[string]*ordersv1.Product, len(catalog))
	for _, p := range catalog {
		m[p.GetId()] = p
	}
	return m
}()

func usd(minorUnits int64) *ordersv1.Money {
	return &ordersv1.Money{CurrencyCode: currency, MinorUnits: minorUnits}
}
