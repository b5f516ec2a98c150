#!/usr/bin/env bash
# The fault-injection suite in bounded form (see README, "Reliability"): 300 orders while the
# broker connections are closed, Redis restarts, Postgres backends are terminated and the
# runner is SIGKILLed mid-batch, with handler errors, crashes between commit and publish,
# slow handlers and duplicate deliveries injected in-process. Exits non-zero on a violation.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p local --bin orderflow
"${CARGO_TARGET_DIR:-target}/debug/orderflow" chaos --orders 300 --rate 50
