#!/usr/bin/env bash
# The fault-injection suite in bounded form (see README, "Reliability"): 300 orders (good and
# declined cards, a scarce product) while the broker connections are closed, Redis restarts,
# Postgres backends are terminated and the runner is SIGKILLed with deliveries in flight, with
# handler errors, crashes between commit and publish, slow handlers and duplicate deliveries
# injected in-process. Exits non-zero on a violated invariant, an order that ended otherwise
# than its inputs imply, or an announced fault that never fired.
set -euo pipefail
cd "$(dirname "$0")/.."
# `cargo run` runs what it just built, wherever the target directory is configured to be.
cargo run -q -p local --bin orderflow -- chaos --orders 300 --rate 50
