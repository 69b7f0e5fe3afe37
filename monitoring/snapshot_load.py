"""Traffic for the dashboard snapshot: orders, their changes, refused
requests, dead letters and reads, from a few client threads, at a rate that
changes over the run so that the graphs have a shape.

Standard library only.
"""

from __future__ import annotations

import collections
import json
import queue
import random
import threading
import time
import urllib.error
import urllib.request
import uuid

# (fraction of the run, orders per second): the rate the run follows.
SCHEDULE = [(0.0, 6.0), (0.3, 14.0), (0.6, 4.0), (0.8, 9.0)]
WORKERS = 6
REASONS = ["customer_request", "payment_failed", "out_of_stock", "fraud_suspected", "other"]


class Client:
    """Posts and reads, counting every answer by (what, status)."""

    def __init__(self, producer: str, query: str):
        self.producer = f"http://{producer}"
        self.query = f"http://{query}"
        self.counts: collections.Counter[tuple[str, int]] = collections.Counter()
        self.lock = threading.Lock()
        self.known: collections.deque[str] = collections.deque(maxlen=500)
        self.users: collections.deque[str] = collections.deque(maxlen=200)

    def request(self, what: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
        if body is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as answer:
                status, text = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read()
        except (urllib.error.URLError, OSError):
            status, text = 0, b""
        with self.lock:
            self.counts[(what, status)] += 1
        try:
            return status, json.loads(text or b"{}")
        except ValueError:
            return status, {}

    def post(self, what: str, path: str, payload: object, headers: dict | None = None) -> tuple[int, dict]:
        return self.request(what, self.producer + path, json.dumps(payload).encode(), headers)


def new_order(rng: random.Random) -> tuple[dict, str]:
    """An order and its total, exact in cents."""
    items, cents = [], 0
    for n in range(rng.randint(1, 3)):
        quantity, price = rng.randint(1, 4), rng.randint(199, 9999)
        cents += quantity * price
        items.append({"sku": f"SKU-{rng.randint(1, 40)}", "name": f"Item {n}", "quantity": quantity,
                      "unit_price": f"{price // 100}.{price % 100:02d}"})
    customer = rng.randint(1, 200)
    order = {
        "customer": {"id": f"c-{customer}", "name": f"Customer {customer}", "email": f"c{customer}@example.com",
                     "address": {"line1": "12 St James's Sq", "city": "London", "postal_code": "SW1Y 4JH",
                                 "country": "GB"}},
        "items": items,
        "currency": "EUR",
    }
    return order, f"{cents // 100}.{cents % 100:02d}"


def lifecycle(client: Client, rng: random.Random, order_id: str, total: str) -> None:
    """Moves an order along: most are paid and shipped, some delivered or
    cancelled, and a few cancelled after shipping (refused by the consumer:
    an `invalid_transition` dead letter)."""
    base = f"/orders/{order_id}"
    roll = rng.random()
    if roll < 0.1:
        client.post("cancellation", base + "/cancellation", {"reason": rng.choice(REASONS)})
        return
    client.post("payment", base + "/payment", {"reference": f"psp-{rng.randint(1, 10**6)}", "amount": total,
                                               "currency": "EUR"})
    if roll < 0.3:
        return
    client.post("shipment", base + "/shipment", {"carrier": "DHL", "tracking_number": f"JD{rng.randint(10**9, 10**10)}"})
    if roll < 0.8:
        client.post("delivery", base + "/delivery", {})
    elif roll < 0.9:
        client.post("cancellation", base + "/cancellation", {"reason": "customer_request"})


def one_task(client: Client, rng: random.Random) -> None:
    """One unit of traffic: mostly an order (and often its changes), else a
    read, a user, a refused request or a reused idempotency key."""
    roll = rng.random()
    if roll < 0.04:
        client.request("order", client.producer + "/orders", b'{"customer": {', None)  # 400 malformed_json
    elif roll < 0.09:
        order, _ = new_order(rng)
        order["items"][0]["quantity"] = 0  # 422 validation_failed
        client.post("order", "/orders", order)
    elif roll < 0.11:
        # One key, two bodies: the second is dead-lettered as a conflict.
        key = str(uuid.uuid4())
        for _ in range(2):
            client.post("order", "/orders", new_order(rng)[0], {"Idempotency-Key": key})
    elif roll < 0.19:
        target = rng.choice(client.known) if client.known and rng.random() < 0.85 else str(uuid.uuid4())
        client.request("read order", f"{client.query}/orders/{target}")
    elif roll < 0.23:
        target = rng.choice(client.users) if client.users and rng.random() < 0.85 else f"u-{uuid.uuid4().hex[:12]}"
        client.request("read user", f"{client.query}/users/{target}")
    elif roll < 0.33:
        user = f"u-{uuid.uuid4().hex[:12]}"
        status, _ = client.post("user", "/users", {
            "user_id": user, "name": f"User {user[2:6]}", "email": f"{user}@example.com",
            "address": {"line1": "1 Main St", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"}})
        if status == 202:
            client.users.append(user)
    else:
        order, total = new_order(rng)
        status, answer = client.post("order", "/orders", order)
        if status == 202 and "order_id" in answer:
            client.known.append(answer["order_id"])
            if rng.random() < 0.6:
                lifecycle(client, rng, answer["order_id"], total)


def rate_at(fraction: float) -> float:
    return [rate for start, rate in SCHEDULE if start <= fraction][-1]


def drive(producer: str, query: str, seconds: float, seed: int = 7) -> collections.Counter:
    """Sends traffic for `seconds`; returns the answers counted by (what, status)."""
    client = Client(producer, query)
    tasks: queue.Queue[int | None] = queue.Queue(maxsize=WORKERS * 4)

    def work(n: int) -> None:
        rng = random.Random(seed * 100 + n)
        while tasks.get() is not None:
            one_task(client, rng)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    start = time.monotonic()
    due = start
    while (now := time.monotonic()) < start + seconds:
        if now < due:
            time.sleep(due - now)
            continue
        try:
            tasks.put(0, timeout=1)
        except queue.Full:
            pass  # the clients are behind: the services answer slower than the schedule
        # No burst to catch up after a stall: at most a second's worth is owed.
        due = max(due, now - 1.0) + 1.0 / rate_at((now - start) / seconds)
    for _ in threads:
        tasks.put(None)
    for thread in threads:
        thread.join(timeout=30)
    return client.counts
