#!/usr/bin/env python3
"""Prints one POST /orders/batch body of N orders (argv[1], default 500),
each with 1 to 3 items, for the producer to publish."""
import json
import random
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
orders = []
for i in range(n):
    items = [
        {"sku": f"SKU-{sku}", "name": "Widget",
         "quantity": random.randint(1, 5), "unit_price": f"{random.randint(100, 9999) / 100:.2f}"}
        for sku in random.sample(range(1, 1000), random.randint(1, 3))
    ]
    orders.append({"order": {
        "customer": {"id": f"c-{i % 97}", "name": "Ada Lovelace", "email": "ada@example.com",
                     "address": {"line1": "12 St James's Sq", "city": "London",
                                 "postal_code": "SW1Y 4JH", "country": "GB"}},
        "items": items,
        "currency": "EUR",
    }})
json.dump({"orders": orders}, sys.stdout)
