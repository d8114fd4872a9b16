"""A sample database with everything a logical backup must carry: views, triggers, a
procedure, a function, an event, foreign keys, a BLOB column and utf8mb4 text."""

from __future__ import annotations

import os
import random
from typing import Any

SCHEMA = """
CREATE TABLE customers (
  id INT PRIMARY KEY AUTO_INCREMENT,
  name VARCHAR(100) NOT NULL,
  note TEXT,
  order_count INT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE orders (
  id INT PRIMARY KEY AUTO_INCREMENT,
  customer_id INT NOT NULL,
  amount DECIMAL(12,2) NOT NULL,
  created_at DATETIME(6) NOT NULL,
  FOREIGN KEY (customer_id) REFERENCES customers(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE attachments (
  id INT PRIMARY KEY AUTO_INCREMENT,
  order_id INT NOT NULL,
  payload LONGBLOB NOT NULL,
  FOREIGN KEY (order_id) REFERENCES orders(id)
) ENGINE=InnoDB;

CREATE VIEW order_totals AS
  SELECT c.id AS customer_id, c.name, COUNT(o.id) AS orders, COALESCE(SUM(o.amount), 0) AS total
  FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id, c.name;

CREATE TRIGGER orders_count AFTER INSERT ON orders FOR EACH ROW
  UPDATE customers SET order_count = order_count + 1 WHERE id = NEW.customer_id;

CREATE FUNCTION with_tax(amount DECIMAL(12,2)) RETURNS DECIMAL(12,2) DETERMINISTIC
  RETURN ROUND(amount * 1.2, 2);

CREATE PROCEDURE big_spenders(IN threshold DECIMAL(12,2))
  SELECT * FROM order_totals WHERE total > threshold ORDER BY total DESC;

CREATE EVENT nightly_cleanup ON SCHEDULE EVERY 1 DAY DISABLE
  DO DELETE FROM attachments WHERE id < 0;
"""

NAMES = ["Zoë Ångström", "李小龍", "Ольга", "José Müller 🎉", "O'Brien \"the\" `quoted`",
         "Ædelgard 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "plain ascii"]


def create_sample(connection: Any, database: str, *, customers: int = 200,
                  orders_per_customer: int = 5, blob_bytes: int = 2048, seed: int = 7) -> None:
    """Create ``database`` with the sample schema and deterministic data."""
    rng = random.Random(seed)
    with connection.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        cur.execute(f"USE `{database}`")
        for statement in _statements(SCHEMA):
            cur.execute(statement)
        cur.executemany("INSERT INTO customers (name, note) VALUES (%s, %s)",
                        [(f"{rng.choice(NAMES)} #{i}", "ñ" * rng.randint(0, 50))
                         for i in range(customers)])
        cur.executemany("INSERT INTO orders (customer_id, amount, created_at) VALUES (%s,%s,%s)",
                        [(c + 1, rng.randint(1, 10**6) / 100, f"2026-01-01 00:00:{i % 60:02d}.5")
                         for c in range(customers) for i in range(orders_per_customer)])
        cur.executemany("INSERT INTO attachments (order_id, payload) VALUES (%s, %s)",
                        [(o + 1, os.urandom(blob_bytes)) for o in range(0, customers, 3)])
    connection.commit()


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";\n") if s.strip()]
