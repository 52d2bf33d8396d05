// The connectshop page: a small shop on the generated OrderService client,
// showing for every order how it travelled. No framework: the DOM is small.
//
// Orders belong to customers. Orders gives this browser a guest session as
// an HttpOnly cookie when it serves the page, and fetch sends it with every
// call (same origin), so the page holds no token and sees only its own
// orders: the history and the live feed are this browser's.
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { timestampDate, type Duration } from "@bufbuild/protobuf/wkt";
import {
  ErrorReason,
  OrderService,
  OrderStatus,
  type GetStatsResponse,
  type Hop,
  type Money,
  type Order,
  type Product,
} from "./gen/orders/v1/orders_pb";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb";

type Protocol = "connect-json" | "connect-proto" | "grpcweb";

const protocolLabels: Record<Protocol, string> = {
  "connect-json": "Connect JSON",
  "connect-proto": "Connect binary",
  grpcweb: "gRPC-Web",
};

// The API is served by the same origin as the page, so no CORS is involved.
function transportFor(protocol: Protocol): Transport {
  const baseUrl = window.location.origin;
  switch (protocol) {
    case "grpcweb":
      return createGrpcWebTransport({ baseUrl });
    case "connect-proto":
      return createConnectTransport({ baseUrl, useBinaryFormat: true, useHttpGet: true });
    case "connect-json":
      return createConnectTransport({ baseUrl, useHttpGet: true });
  }
}

const state = {
  protocol: "connect-json" as Protocol,
  client: createClient(OrderService, transportFor("connect-json")) as Client<typeof OrderService>,
  products: [] as Product[],
  cart: new Map<string, number>(),
  // The idempotency key of the current cart: a retry after an error reuses
  // it, so the same checkout can never be charged twice.
  checkoutKey: crypto.randomUUID(),
  orders: [] as Order[],
  nextPageToken: "",
  watch: new AbortController(),
};

// --- small DOM helpers -----------------------------------------------------

type Child = Node | string | null | undefined | false;

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) if (c) el.append(c);
  return el;
}

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing`);
  return el as T;
}

// --- formatting --------------------------------------------------------------

function money(m: Money | undefined): string {
  if (!m) return "";
  return new Intl.NumberFormat("en-US", { style: "currency", currency: m.currencyCode || "USD" }).format(
    Number(m.minorUnits) / 100,
  );
}

function millis(d: Duration | undefined): string {
  if (!d) return "";
  const ms = Number(d.seconds) * 1000 + d.nanos / 1e6;
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(1)} ms`;
}

function statusBadge(s: OrderStatus): HTMLElement {
  const [cls, text] = {
    [OrderStatus.PAID]: ["paid", "paid"],
    [OrderStatus.PAYMENT_DECLINED]: ["declined", "declined"],
    [OrderStatus.PENDING]: ["pending", "pending"],
    [OrderStatus.CANCELLED]: ["cancelled", "cancelled"],
    [OrderStatus.CANCELLING]: ["pending", "cancelling"],
    [OrderStatus.UNSPECIFIED]: ["pending", "unknown"],
  }[s];
  return h("span", { class: `badge ${cls}` }, text);
}

function shortID(id: string): string {
  return id.length > 12 ? `${id.slice(0, 12)}…` : id;
}

// describe turns any error into what a person wants to read: the Connect
// code decides the tone, details (ErrorInfo, BadRequest) the words.
function describe(err: unknown): { kind: "bad" | "warn"; title: string; lines: string[] } {
  const ce = ConnectError.from(err);
  const reason = ce.findDetails(ErrorInfoSchema)[0]?.reason ?? "";
  const lines = ce.findDetails(BadRequestSchema).flatMap((br) =>
    br.fieldViolations.map((v) => `${v.field}: ${v.description}`),
  );
  switch (true) {
    case reason === ErrorReason[ErrorReason.CARD_DECLINED]:
      return { kind: "bad", title: "Your card was declined. Nothing was charged.", lines: ["Try the approved test card."] };
    case reason === ErrorReason[ErrorReason.PAYMENTS_UNAVAILABLE] || ce.code === Code.Unavailable:
      return {
        kind: "warn",
        title: "Payments is unavailable right now. Your order is kept as pending.",
        lines: ["Press Pay again: the same idempotency key makes sure you are charged once."],
      };
    case ce.code === Code.InvalidArgument:
      return { kind: "bad", title: "Some of the order is not right.", lines };
    case reason === ErrorReason[ErrorReason.IDEMPOTENCY_KEY_REUSED]:
      return { kind: "bad", title: "This checkout was already used for a different cart.", lines: ["Change the cart and pay again."] };
    case ce.code === Code.Unauthenticated:
      return {
        kind: "warn",
        title: "Your session has ended.",
        lines: ["Reload the page to start a new one. Sessions last 24 hours; a new one starts with an empty order history."],
      };
    case ce.code === Code.NotFound:
      return { kind: "bad", title: "That order does not exist.", lines: [] };
    case ce.code === Code.FailedPrecondition:
      return { kind: "bad", title: ce.rawMessage, lines: [] };
    default:
      return { kind: "bad", title: `Something went wrong (${Code[ce.code]}).`, lines: [ce.rawMessage] };
  }
}

function showMessage(kind: "ok" | "bad" | "warn", title: string, lines: string[] = []): void {
  const box = $("message");
  box.className = `message ${kind}`;
  box.replaceChildren(h("strong", {}, title));
  if (lines.length) box.append(h("ul", {}, ...lines.map((l) => h("li", {}, l))));
  box.hidden = false;
}

// showError explains a failed call. Without a valid session every call but
// the catalog's fails, and only a reload (which sets a new cookie) helps: the
// page offers one and stops its live feed rather than retrying.
function showError(err: unknown, prefix = ""): void {
  const d = describe(err);
  showMessage(d.kind, prefix + d.title, d.lines);
  if (ConnectError.from(err).code !== Code.Unauthenticated) return;
  state.watch.abort();
  $("live-dot").classList.remove("on");
  $("message").append(button("Reload the page", () => location.reload(), { "data-reload": "" }));
}

// --- products and cart -------------------------------------------------------

async function loadProducts(): Promise<void> {
  const res = await state.client.listProducts({});
  state.products = res.products;
  $("products").replaceChildren(
    ...res.products.map((p) =>
      h(
        "li",
        { class: "product" },
        h("span", { class: "name" }, p.name),
        h("span", { class: "desc" }, p.description),
        h(
          "span",
          { class: "row" },
          h("span", { class: "price" }, money(p.price)),
          button("Add", () => addToCart(p.id), { "data-product": p.id, "aria-label": `Add ${p.name} to the cart` }),
        ),
      ),
    ),
  );
}

function button(label: string, onClick: () => void, attrs: Record<string, string> = {}): HTMLButtonElement {
  const b = h("button", { type: "button", ...attrs }, label);
  b.addEventListener("click", onClick);
  return b;
}

function addToCart(productID: string, delta = 1): void {
  const q = (state.cart.get(productID) ?? 0) + delta;
  if (q <= 0) state.cart.delete(productID);
  else state.cart.set(productID, Math.min(q, 100));
  state.checkoutKey = crypto.randomUUID(); // a different cart is a different checkout
  renderCart();
}

function renderCart(): void {
  const pay = $<HTMLButtonElement>("pay");
  pay.disabled = state.cart.size === 0;
  if (state.cart.size === 0) {
    $("cart").replaceChildren(h("p", { class: "muted" }, "Your cart is empty."));
    return;
  }
  let total = 0n;
  let currency = "USD";
  const rows = [...state.cart].map(([id, qty]) => {
    const p = state.products.find((x) => x.id === id);
    const line = (p?.price?.minorUnits ?? 0n) * BigInt(qty);
    total += line;
    currency = p?.price?.currencyCode ?? currency;
    return h(
      "tr",
      { "data-cart-item": id },
      h("td", {}, p?.name ?? id),
      h("td", { class: "num qty" }, button("−", () => addToCart(id, -1), { "aria-label": "One less" }), String(qty), button("+", () => addToCart(id), { "aria-label": "One more" })),
      h("td", { class: "num" }, money({ currencyCode: currency, minorUnits: line } as Money)),
    );
  });
  $("cart").replaceChildren(
    h(
      "table",
      {},
      h("tbody", {}, ...rows),
      h("tfoot", {}, h("tr", {}, h("td", {}, "Total (priced again by the server)"), h("td", {}), h("td", { class: "num" }, money({ currencyCode: currency, minorUnits: total } as Money)))),
    ),
  );
}

async function pay(): Promise<void> {
  const payButton = $<HTMLButtonElement>("pay");
  payButton.disabled = true;
  try {
    const res = await state.client.createOrder({
      items: [...state.cart].map(([productId, quantity]) => ({ productId, quantity })),
      paymentToken: $<HTMLSelectElement>("card").value,
      idempotencyKey: state.checkoutKey,
    });
    const order = res.order!;
    showMessage("ok", `Paid ${money(order.total)}. Order ${shortID(order.id)} is on its way.`);
    renderJourney(order);
    state.cart.clear();
    state.checkoutKey = crypto.randomUUID();
    renderCart();
    upsertOrder(order);
  } catch (err) {
    showError(err);
    $("journey").hidden = true;
    payButton.disabled = state.cart.size === 0;
    // Keep the key only where a retry may finish this very checkout; a
    // decline or a rejected request is final for it.
    if (!retryable(err)) state.checkoutKey = crypto.randomUUID();
  }
  void refreshStats();
}

function retryable(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return code === Code.Unavailable || code === Code.DeadlineExceeded || code === Code.Unknown || code === Code.Canceled;
}

// --- hops ----------------------------------------------------------------------

function hopsView(order: Order): HTMLElement {
  const parts: Child[] = [h("span", { class: "node" }, "browser")];
  for (const hop of order.hops) {
    parts.push(hopArrow(hop), h("span", { class: "node", "data-server": hop.server }, hop.server));
  }
  if (order.traceId) {
    // The same id the servers' logs and spans carry: paste it into the tracing backend.
    parts.push(h("span", { class: "trace muted small", title: "W3C trace id of this order's CreateOrder" }, "trace ", h("code", { "data-trace-id": order.traceId }, order.traceId)));
  }
  return h("div", { class: "hops" }, ...parts);
}

function hopArrow(hop: Hop): HTMLElement {
  const rpc = hop.procedure.split("/").pop() ?? hop.procedure;
  return h(
    "span",
    { class: "hop", title: hop.procedure, "data-protocol": hop.protocol },
    h("span", {}, rpc),
    h("b", {}, `${hop.protocol} · ${hop.codec}`),
    h("span", { class: "arrow" }, "→"),
    h("span", {}, `${hop.httpVersion} · ${millis(hop.duration)}`),
  );
}

function renderJourney(order: Order): void {
  const j = $("journey");
  j.replaceChildren(h("strong", {}, "How this order travelled"), hopsView(order));
  j.hidden = false;
}

// --- replicas --------------------------------------------------------------------

async function refreshStats(): Promise<void> {
  let stats: GetStatsResponse;
  try {
    stats = await state.client.getStats({});
  } catch {
    return; // the next order refreshes it
  }
  if (stats.replicas.length === 0) return;
  $("replicas").replaceChildren(
    ...stats.replicas.map((r) =>
      h(
        "div",
        { class: "bar", "data-replica": r.name },
        h("span", {}, r.name),
        h("span", { class: "track" }, h("span", { class: "fill", style: `width:${(r.share * 100).toFixed(1)}%` })),
        h("span", { class: "num" }, `${Math.round(r.share * 100)}% · ${r.calls}`),
      ),
    ),
  );
}

// --- orders: history and the live feed ---------------------------------------------

async function loadOrders(reset: boolean): Promise<void> {
  const res = await state.client.listOrders({ pageSize: 10, pageToken: reset ? "" : state.nextPageToken });
  state.orders = reset ? res.orders : [...state.orders, ...res.orders];
  state.nextPageToken = res.nextPageToken;
  $("more").hidden = !res.nextPageToken;
  renderOrders();
}

function upsertOrder(order: Order): void {
  const i = state.orders.findIndex((o) => o.id === order.id);
  if (i >= 0) state.orders[i] = order;
  else state.orders.unshift(order);
  renderOrders();
}

function renderOrders(): void {
  const customer = state.orders[0]?.customerId;
  if (customer) {
    $("customer").replaceChildren("Only this browser's orders: you are guest ", h("code", { "data-customer": customer }, customer), ".");
  }
  const list = $("orders");
  if (state.orders.length === 0) {
    list.replaceChildren(h("li", { class: "muted" }, "No orders yet."));
    return;
  }
  list.replaceChildren(...state.orders.map(orderRow));
}

function orderRow(o: Order): HTMLElement {
  const items = o.items.map((i) => `${i.quantity} × ${i.productName}`).join(", ");
  const when = o.createdAt ? timestampDate(o.createdAt).toLocaleTimeString() : "";
  return h(
    "li",
    { "data-order-id": o.id, "data-status": OrderStatus[o.status] },
    h(
      "div",
      { class: "line" },
      statusBadge(o.status),
      h("span", { class: "id", title: o.id }, shortID(o.id)),
      h("span", { class: "grow" }, items),
      h("span", { class: "price" }, money(o.total)),
      h("span", { class: "muted small" }, when),
      // A cancel left half-way (CANCELLING) is finished by cancelling again.
      o.status === OrderStatus.PAID || o.status === OrderStatus.CANCELLING
        ? button("Cancel", () => void cancel(o.id), { "data-cancel": o.id })
        : null,
    ),
    o.hops.length
      ? h(
          "details",
          {},
          h("summary", {}, o.paymentReplica ? `Charged by ${o.paymentReplica}` : "How it travelled"),
          hopsView(o),
        )
      : null,
  );
}

async function cancel(id: string): Promise<void> {
  try {
    const res = await state.client.cancelOrder({ id });
    upsertOrder(res.order!);
    showMessage("ok", `Order ${shortID(id)} is cancelled and its payment refunded.`);
  } catch (err) {
    if (ConnectError.from(err).code === Code.Unavailable) {
      showMessage("warn", "Payments is unavailable right now, so the refund has to wait.", ["Press Cancel again to finish the cancel."]);
    } else showError(err);
  }
  void refreshStats();
}

function feedEvent(o: Order): void {
  const feed = $("live-feed");
  feed.querySelector(".placeholder")?.remove();
  const row = h(
    "li",
    { class: "fresh", "data-order-id": o.id, "data-status": OrderStatus[o.status] },
    statusBadge(o.status),
    h("span", { class: "id", title: o.id }, shortID(o.id)),
    h("span", { class: "grow" }, money(o.total)),
    h("span", { class: "muted small", "data-replica": o.paymentReplica }, o.paymentReplica),
  );
  feed.prepend(row);
  while (feed.children.length > 12) feed.lastElementChild?.remove();
}

// watch keeps a WatchOrders stream open on the current transport, and
// reconnects after a pause if it ends or fails, resuming after the last
// change it saw, so none made meanwhile (on any orders instance) is missed.
async function watch(signal: AbortSignal): Promise<void> {
  let pause = 500;
  let resumeToken = "";
  while (!signal.aborted) {
    try {
      const stream = state.client.watchOrders({ resumeToken }, { signal });
      $("live-dot").classList.add("on");
      for await (const change of stream) {
        pause = 500;
        resumeToken = change.resumeToken;
        if (!change.order) continue;
        feedEvent(change.order);
        upsertOrder(change.order);
        void refreshStats();
      }
    } catch (err) {
      const code = ConnectError.from(err).code;
      if (signal.aborted || code === Code.Canceled) return;
      if (code === Code.Unauthenticated) {
        showError(err); // only a reload helps: retrying would fail forever
        return;
      }
      if (code === Code.OutOfRange) {
        // Away too long: what was missed is gone from the feed. Start from
        // now and read the list again instead.
        resumeToken = "";
        void loadOrders(true).catch(() => {});
      }
    }
    $("live-dot").classList.remove("on");
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 5000);
  }
}

function useProtocol(p: Protocol): void {
  state.protocol = p;
  state.client = createClient(OrderService, transportFor(p));
  state.watch.abort();
  state.watch = new AbortController();
  void watch(state.watch.signal);
  document.body.dataset.protocol = p;
  document.title = `connectshop · ${protocolLabels[p]}`;
}

async function main(): Promise<void> {
  $("pay").addEventListener("click", () => void pay());
  $("card").addEventListener("change", () => (state.checkoutKey = crypto.randomUUID()));
  $("more").addEventListener("click", () => loadOrders(false).catch((err) => showError(err)));
  $("protocol").addEventListener("change", (e) => useProtocol((e.target as HTMLInputElement).value as Protocol));
  useProtocol(state.protocol);
  try {
    await Promise.all([loadProducts(), loadOrders(true), refreshStats()]);
    document.body.dataset.ready = "true";
  } catch (err) {
    showError(err, "The shop could not load: ");
  }
}

void main();
