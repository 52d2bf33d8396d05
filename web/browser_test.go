package web_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/internal/shop/shoptest"
)

// newBrowser starts headless Chromium, collecting console errors, uncaught
// exceptions and failed loads into the returned function's result.
func newBrowser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium not found: .ci/run installs Debian's chromium package")
		}
		t.Skip("chromium not found (Debian package chromium); the browser test runs in CI")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })

	var (
		mu       sync.Mutex
		problems []string
	)
	messages := chromedp.Console(ctx) // starts the browser
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if expectedAPIError(m) {
				continue
			}
			switch m.Type {
			case chromedp.ConsoleError, chromedp.ConsoleWarning, chromedp.ConsoleException:
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s: %s %s", m.Type, m.Text, m.URL))
				mu.Unlock()
			}
		}
	}()
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

// expectedAPIError reports the browser's network log line for an RPC that
// answered 400: the Connect protocol sends an error such as a declined card
// with the HTTP status of its code, and Chromium logs every 4xx response,
// whether the page handles it or not. The page's own errors, exceptions and
// failed loads of anything else still count.
func expectedAPIError(m chromedp.ConsoleMessage) bool {
	return m.Source == "network" && strings.Contains(m.URL, "/orders.v1.OrderService/CreateOrder") &&
		strings.Contains(m.Text, "status of 400")
}

// addAndPay puts products in the cart and pays with the test card token.
func addAndPay(token string, products ...string) chromedp.Action[chromedp.Void] {
	var steps []chromedp.Action[chromedp.Void]
	for _, p := range products {
		steps = append(steps, chromedp.Click(chromedp.CSS(`button[data-product="`+p+`"]`)))
	}
	return chromedp.Steps(append(steps,
		chromedp.SetValue(chromedp.ID("card"), token),
		chromedp.Click(chromedp.ID("pay")),
	)...)
}

func TestPageInABrowser(t *testing.T) {
	t.Parallel()
	ctx, problems := newBrowser(t)
	pageURL := shoptest.Start(t, slog.New(slog.DiscardHandler))

	// Two products, an approved card: paid, with its hops and replica.
	err := chromedp.Do(ctx,
		chromedp.Navigate(pageURL),
		chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)),
		addAndPay("tok_visa", "gopher-plush", "sticker-pack"),
		chromedp.WaitVisible(chromedp.CSS(`#message.ok`)),
		chromedp.WaitVisible(chromedp.CSS(`#journey .hop`)),
	)
	if err != nil {
		t.Fatalf("pay with tok_visa: %v", err)
	}
	journey, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("journey")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CreateOrder", "connect · json", "orders", "Charge", "grpc · proto", "HTTP/2.0", "payments-"} {
		if !strings.Contains(journey, want) {
			t.Errorf("journey %q lacks %q", journey, want)
		}
	}

	// A declined card: a message a person can read.
	err = chromedp.Do(ctx,
		addAndPay("tok_declined", "h2c-hoodie"),
		chromedp.WaitVisible(chromedp.CSS(`#message.bad`)),
	)
	if err != nil {
		t.Fatalf("pay with tok_declined: %v", err)
	}
	message, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("message")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(message, "declined") || !strings.Contains(message, "Nothing was charged") {
		t.Errorf("got message %q, want the decline explained", message)
	}

	// gRPC-Web: the server sees the protocol the page switched to.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`input[value="grpcweb"]`)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-protocol="grpcweb"]`)),
		addAndPay("tok_visa"), // the hoodie is still in the cart
		chromedp.WaitVisible(chromedp.CSS(`#message.ok`)),
	)
	if err != nil {
		t.Fatalf("pay over gRPC-Web: %v", err)
	}
	first, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`#journey .hop`), "data-protocol"))
	if err != nil || first.Value != "grpcweb" {
		t.Errorf("page shows the first hop as %q (err %v), want grpcweb", first.Value, err)
	}
	api := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), pageURL, connect.WithGRPC())
	list, err := api.ListOrders(ctx, connect.NewRequest(&ordersv1.ListOrdersRequest{PageSize: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if got := list.Msg.GetOrders()[0].GetHops()[0].GetProtocol(); got != "grpcweb" {
		t.Errorf("server saw the newest order over %q, want grpcweb", got)
	}

	// An order placed elsewhere shows up in the live feed within 2 s.
	created, err := api.CreateOrder(ctx, connect.NewRequest(&ordersv1.CreateOrderRequest{
		Items: []*ordersv1.CartItem{{ProductId: "idempotency-socks", Quantity: 2}}, PaymentToken: "tok_visa",
	}))
	if err != nil {
		t.Fatal(err)
	}
	feedCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	row := `#live-feed li[data-order-id="` + created.Msg.GetOrder().GetId() + `"][data-status="PAID"]`
	if err := chromedp.Do(feedCtx, chromedp.WaitVisible(chromedp.CSS(row))); err != nil {
		t.Errorf("order created through the API did not reach the live feed within 2s: %v", err)
	}

	// Every paid order in the feed names the replica that charged it.
	paid, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll(`#live-feed li[data-status="PAID"]`)))
	if err != nil {
		t.Fatal(err)
	}
	named, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll(`#live-feed li[data-status="PAID"] [data-replica^="payments-"]`)))
	if err != nil || len(paid) != 3 || len(named) != len(paid) {
		t.Errorf("live feed: %d paid orders, %d with a replica (err %v); want 3 and 3", len(paid), len(named), err)
	}

	// The replica shares are drawn.
	bars, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll(`#replicas .bar`)))
	if err != nil || len(bars) == 0 {
		t.Errorf("got %d replica bars (err %v), want some", len(bars), err)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	shot := os.Getenv("SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(os.TempDir(), "connectshop-page.png")
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)

	if p := problems(); len(p) > 0 {
		t.Errorf("browser console reported problems:\n%s", strings.Join(p, "\n"))
	}
}
