package web_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/auth"
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
	return ctx, consoleProblems(ctx) // starts the browser
}

// newCustomer opens a tab in a browser context of its own, with its own
// cookies: to the shop, another customer. browser is a context from
// newBrowser.
func newCustomer(t *testing.T, browser context.Context) (context.Context, func() []string) {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	return ctx, consoleProblems(ctx)
}

// consoleProblems collects the console errors, uncaught exceptions and
// failed loads of the tab of ctx, opening it if need be.
func consoleProblems(ctx context.Context) func() []string {
	var (
		mu       sync.Mutex
		problems []string
	)
	messages := chromedp.Console(ctx)
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
	return func() []string {
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

// sessionToken returns the page's session: the cookie that orders set when
// it served the page to the tab of ctx, read with the DevTools protocol, as
// the page's scripts cannot read it.
func sessionToken(t *testing.T, ctx context.Context, pageURL string) string {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{pageURL}})
	if err != nil {
		t.Fatalf("read the cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name != "shop_session" {
			continue
		}
		if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/" || c.Value == "" {
			t.Errorf("session cookie: HttpOnly %v, SameSite %q, Path %q, %d bytes; want HttpOnly, Strict, / and a token",
				c.HTTPOnly, c.SameSite, c.Path, len(c.Value))
		}
		return c.Value
	}
	t.Fatalf("the page has no shop_session cookie (%d others)", len(res.Cookies))
	return ""
}

// apiAs returns a gRPC client of the shop that acts as the customer whose
// session token it is given.
func apiAs(pageURL, token string) ordersv1connect.OrderServiceClient {
	return ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), pageURL,
		connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(token)))
}

// orderIDs returns the order ids that the page lists in the element with
// the id list ("orders", the history, or "live-feed"), without waiting.
func orderIDs(ctx context.Context, list string) ([]string, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("#`+list+` li[data-order-id]")].map((li) => li.dataset.orderId)`))
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
	// The API client below acts as this page's customer, with its cookie.
	token := sessionToken(t, ctx, pageURL)
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
	api := apiAs(pageURL, token)
	list, err := api.ListOrders(ctx, connect.NewRequest(&ordersv1.ListOrdersRequest{PageSize: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if got := list.Msg.GetOrders()[0].GetHops()[0].GetProtocol(); got != "grpcweb" {
		t.Errorf("server saw the newest order over %q, want grpcweb", got)
	}

	// An order of this customer's placed elsewhere shows up in the live feed
	// within 2 s, and the page names the customer.
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
	customer, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`#customer [data-customer]`), "data-customer"))
	if want := created.Msg.GetOrder().GetCustomerId(); err != nil || customer.Value != want || !strings.HasPrefix(want, "cus_") {
		t.Errorf("page names the customer %q (err %v), want %q", customer.Value, err, want)
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

// TestTwoCustomersInTwoBrowserContexts runs two customers of one shop in two
// browser contexts, which share no cookies, and shows that each sees only
// their own orders: in the history, in the live feed, and through the API
// with their session.
func TestTwoCustomersInTwoBrowserContexts(t *testing.T) {
	t.Parallel()
	browser, _ := newBrowser(t)
	pageURL := shoptest.Start(t, slog.New(slog.DiscardHandler))
	a, aProblems := newCustomer(t, browser)
	b, bProblems := newCustomer(t, browser)
	for who, ctx := range map[string]context.Context{"A": a, "B": b} {
		err := chromedp.Do(ctx, chromedp.Navigate(pageURL), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)))
		if err != nil {
			t.Fatalf("%s opens the page: %v", who, err)
		}
	}
	tokenA, tokenB := sessionToken(t, a, pageURL), sessionToken(t, b, pageURL)
	if tokenA == tokenB {
		t.Fatal("the two browser contexts share one session")
	}

	// order pays for product on the page of ctx, and returns the new order's
	// id once the page's live feed shows it.
	order := func(ctx context.Context, who, product string) string {
		t.Helper()
		before, err := orderIDs(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		newRow := `#orders li[data-order-id]`
		for _, id := range before {
			newRow += `:not([data-order-id="` + id + `"])`
		}
		err = chromedp.Do(ctx, addAndPay("tok_visa", product), chromedp.WaitVisible(chromedp.CSS(newRow)))
		if err != nil {
			t.Fatalf("%s pays for %s: %v", who, product, err)
		}
		id, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(newRow), "data-order-id"))
		if err != nil {
			t.Fatal(err)
		}
		feedCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := chromedp.Do(feedCtx, chromedp.WaitVisible(chromedp.CSS(`#live-feed li[data-order-id="`+id.Value+`"]`))); err != nil {
			t.Fatalf("%s's order %s did not reach %s's live feed within 2s: %v", who, id.Value, who, err)
		}
		return id.Value
	}
	// sees checks that the history and the live feed of the page of ctx hold
	// every order of own and none of others.
	sees := func(ctx context.Context, who string, own, others []string) {
		t.Helper()
		for _, list := range []string{"orders", "live-feed"} {
			ids, err := orderIDs(ctx, list)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range own {
				if !slices.Contains(ids, id) {
					t.Errorf("%s's #%s %q lacks their order %s", who, list, ids, id)
				}
			}
			for _, id := range others {
				if slices.Contains(ids, id) {
					t.Errorf("%s's #%s %q shows the other customer's order %s", who, list, ids, id)
				}
			}
		}
	}

	// A's page watches while B orders. A's own second order reaches A's feed
	// after B's would have, as one stream delivers changes in order.
	a1 := order(a, "A", "gopher-plush")
	b1 := order(b, "B", "sticker-pack")
	a2 := order(a, "A", "protobuf-mug")
	sees(a, "A", []string{a1, a2}, []string{b1})
	b2 := order(b, "B", "h2c-hoodie")
	sees(b, "B", []string{b1, b2}, []string{a1, a2})

	// After a reload (the same customer: the cookie stays) the history is
	// what ListOrders returns, and it is exactly each customer's own.
	customers := map[string]string{}
	for _, c := range []struct {
		who  string
		ctx  context.Context
		want []string
	}{{"A", a, []string{a2, a1}}, {"B", b, []string{b2, b1}}} {
		who, ctx, want := c.who, c.ctx, c.want
		err := chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)))
		if err != nil {
			t.Fatalf("%s reloads: %v", who, err)
		}
		if ids, err := orderIDs(ctx, "orders"); err != nil || !slices.Equal(ids, want) {
			t.Errorf("%s's history after a reload: %q (err %v), want %q", who, ids, err, want)
		}
		customer, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`#customer [data-customer]`), "data-customer"))
		if err != nil {
			t.Fatal(err)
		}
		customers[who] = customer.Value
	}
	if customers["A"] == customers["B"] {
		t.Errorf("both pages name the customer %q", customers["A"])
	}

	// With A's cookie as its token, the API answers as A.
	_, err := apiAs(pageURL, tokenA).GetOrder(a, connect.NewRequest(&ordersv1.GetOrderRequest{Id: b1}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("A gets B's order: %v, want not_found", err)
	}
	got, err := apiAs(pageURL, tokenB).GetOrder(b, connect.NewRequest(&ordersv1.GetOrderRequest{Id: b1}))
	if err != nil || got.Msg.GetOrder().GetCustomerId() != customers["B"] {
		t.Errorf("B gets their order: customer %q (err %v), want %q", got.Msg.GetOrder().GetCustomerId(), err, customers["B"])
	}

	if p := append(aProblems(), bProblems()...); len(p) > 0 {
		t.Errorf("browser console reported problems:\n%s", strings.Join(p, "\n"))
	}
}

// TestSessionEndInABrowser shows what the page does when its session ends, as
// it does after 24 h: it says so, offers a reload instead of retrying, and the
// reload starts a new session.
func TestSessionEndInABrowser(t *testing.T) {
	t.Parallel()
	ctx, problems := newBrowser(t)
	pageURL := shoptest.Start(t, slog.New(slog.DiscardHandler))
	err := chromedp.Do(ctx,
		chromedp.Navigate(pageURL),
		chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)),
		addAndPay("tok_visa", "gopher-plush"),
		chromedp.WaitVisible(chromedp.CSS(`#orders li[data-order-id]`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	old := sessionToken(t, ctx, pageURL)

	// The browser drops the cookie when it expires.
	if _, err := chromedp.Call(ctx, network.DeleteCookies, network.DeleteCookiesParams{Name: "shop_session", URL: pageURL}); err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		addAndPay("tok_visa", "sticker-pack"),
		chromedp.WaitVisible(chromedp.CSS(`#message.warn button[data-reload]`)),
	)
	if err != nil {
		t.Fatalf("pay without a session: %v", err)
	}
	message, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("message")))
	if err != nil || !strings.Contains(message, "session has ended") || !strings.Contains(message, "Reload") {
		t.Errorf("got message %q (err %v), want the end of the session explained", message, err)
	}

	// The live feed's stream, opened again on another protocol, fails the
	// same way, once: the page does not retry what only a reload can fix.
	watches := chromedp.Evaluate[int](`performance.getEntriesByType("resource").filter((e) => e.name.endsWith("/WatchOrders")).length`)
	watchCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = chromedp.Do(watchCtx,
		chromedp.Evaluate[chromedp.Void](`document.getElementById("message").hidden = true`),
		chromedp.Click(chromedp.CSS(`input[value="grpcweb"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#message.warn button[data-reload]`)),
	)
	if err != nil {
		t.Fatalf("watch without a session: %v", err)
	}
	before, err := chromedp.Run(ctx, watches)
	if err != nil || before < 1 {
		t.Fatalf("the page made %d WatchOrders requests (err %v), want the one that failed", before, err)
	}
	if err := chromedp.Do(ctx, chromedp.Sleep(1500*time.Millisecond)); err != nil { // the page's first retry would come after 0.5 s
		t.Fatal(err)
	}
	after, err := chromedp.Run(ctx, watches)
	if err != nil || after != before {
		t.Errorf("WatchOrders requests went from %d to %d (err %v) after the session ended, want no retries", before, after, err)
	}

	// The reload gets a new session: a new guest with no orders yet.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`button[data-reload]`)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)),
	)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if token := sessionToken(t, ctx, pageURL); token == old {
		t.Error("the reload kept the old session")
	}
	if ids, err := orderIDs(ctx, "orders"); err != nil || len(ids) != 0 {
		t.Errorf("new session's history: %q (err %v), want none", ids, err)
	}

	// Chromium logs each call answered 401; anything else is a problem.
	var unexpected []string
	for _, p := range problems() {
		if !strings.Contains(p, "status of 401") {
			unexpected = append(unexpected, p)
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("browser console reported problems:\n%s", strings.Join(unexpected, "\n"))
	}
}
