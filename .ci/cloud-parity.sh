#!/usr/bin/env bash
# Cloud parity (issues 4 and 13), after the workspace tests in .ci/run:
#   1. template.yaml linted by cfn-lint 1.53.3 (the last release that runs the SAM transform)
#      and by `sam validate --lint`, and no HTTP route without authorization as `sam deploy
#      --guided` judges it (it would stop and ask);
#   2. the LocalStack init script, against a stand-in for awslocal;
#   3. `sam build`, the command users run (BuildMethod rust-cargolambda: cargo lambda build
#      --release for arm64, per function), with the size of each bootstrap;
#   4. the watch path: `cargo lambda watch` serving the real binaries, one sample event per
#      service invoked with `cargo lambda invoke`, then `orderflow up --invoke-url` driving them
#      and an order placed over HTTP that must reach CONFIRMED within 60 s;
#   5. the init time of every function binary (host build) under a stand-in Runtime API,
#      with plaintext URLs and with them read by ARN from moto's Secrets Manager.
# Everything it starts is stopped on exit; the throwaway database, queues and keys are removed.
# ORDERFLOW_CLOUD_PARITY_SKIP="arm64 watch init" skips parts (for a quick local run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$SECONDS
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_TERM_COLOR=never
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
SKIP=" ${ORDERFLOW_CLOUD_PARITY_SKIP:-} "
say() { echo "cloud-parity: $*"; }
fail() { echo "cloud-parity: FAILED: $*" >&2; exit 1; }
mark() { say "$1 done in $((SECONDS - ${2:-$START})) s"; }

# ---- tools: pinned, in a virtualenv kept between runs --------------------------------------
VENV="${ORDERFLOW_CI_VENV:-$HOME/.cache/orderflow-ci/venv}"
t=$SECONDS
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
"${PIP[@]}" cfn-lint==1.53.3 cargo-lambda==1.9.2 "moto[server]==5.2.1" openapi-spec-validator==0.9.0
# SAM CLI accepts cfn-lint 1.53.3 beside it; if a future resolver says no, lint without it.
HAVE_SAM=1
"${PIP[@]}" aws-sam-cli==1.170.0 cfn-lint==1.53.3 || { HAVE_SAM=0; say "aws-sam-cli did not install with cfn-lint 1.53.3: sam validate skipped"; }
export PATH="$VENV/bin:$PATH"
mark "tools ($(cfn-lint --version), $(cargo lambda --version | head -1))" "$t"

# ---- 1. template lint ----------------------------------------------------------------------
t=$SECONDS
cfn-lint # reads .cfnlintrc: template.yaml, several regions, no rule ignored
if [ "$HAVE_SAM" = 1 ]; then
  out=$(sam validate --lint --template template.yaml 2>&1) || { echo "$out"; fail "sam validate --lint"; }
  echo "$out" | grep -i 'valid' || true
  "$VENV/bin/python" .ci/guided-auth.py || fail "an HTTP route has no authorization: sam deploy --guided would stop"
fi
# The API description against the OpenAPI 3.1 meta-schema (local/tests/openapi.rs checks
# it against the routes and real answers).
"$VENV/bin/openapi-spec-validator" openapi.yaml || fail "openapi.yaml is not a valid OpenAPI 3.1 document"
mark "template lint" "$t"

# ---- 2. LocalStack init script -------------------------------------------------------------
STUB_STATE=$(mktemp -d)
for run in 1 2; do
  STUB_STATE=$STUB_STATE AWSLOCAL="$ROOT/.ci/awslocal-stub.sh" \
    bash localstack/init/ready.d/secrets.sh >/dev/null || fail "localstack init script (run $run)"
done
for name in secrets/orderflow_database-url secrets/orderflow_redis-url secrets/orderflow_amqp-url \
  secrets/orderflow_broker ssm/_orderflow_DatabaseUrlSecretArn ssm/_orderflow_RedisUrlSecretArn \
  ssm/_orderflow_AmqpUrlSecretArn ssm/_orderflow_BrokerSecretArn; do
  [ -s "$STUB_STATE/$name" ] || fail "localstack init script did not create $name"
done
rm -rf "$STUB_STATE"
say "localstack init script creates every secret and parameter (twice, idempotent)"

# ---- 3. sam build (arm64) -----------------------------------------------------------------
# Every binary named by a template function, and the function's logical id.
mapfile -t FUNCTIONS < <(awk '/^  [A-Za-z0-9]+:$/ {id=$1} /^\s+Binary: / {sub(":", "", id); print id " " $2}' template.yaml | sort -k2)
if [[ $SKIP != *" arm64 "* ]]; then
  [ "$HAVE_SAM" = 1 ] || fail "sam build needs aws-sam-cli"
  t=$SECONDS
  rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || rustup target add aarch64-unknown-linux-gnu
  # cargo lambda (and zig, its arm64 linker) from the virtualenv; one function at a time, so
  # each build after the first reuses the compiled workspace in CARGO_TARGET_DIR.
  sam build --template template.yaml >"$ROOT/.aws-sam-build.log" 2>&1 \
    || { tail -60 "$ROOT/.aws-sam-build.log"; fail "sam build"; }
  tail -12 "$ROOT/.aws-sam-build.log" | grep -E 'Build Succeeded|Built Artifacts|Built Template' || true
  printf '%-22s %10s %8s\n' function bytes MiB
  for entry in "${FUNCTIONS[@]}"; do
    read -r id b <<<"$entry"
    f=".aws-sam/build/$id/bootstrap"
    [ -f "$f" ] || fail "sam build made no bootstrap for $id ($b) at $f"
    # ELF e_machine 183 = AArch64.
    [ "$(od -An -tu2 -j18 -N2 "$f" | tr -d ' ')" = 183 ] || fail "$f is not an arm64 binary"
    size=$(stat -c %s "$f")
    awk -v b="$b" -v s="$size" 'BEGIN { printf "%-22s %10d %8.1f\n", b, s, s / 1048576 }'
  done
  mark "sam build of ${#FUNCTIONS[@]} functions (arm64)" "$t"
fi

# ---- 5. init time per function (before the watch path, which may end the script) -------------
if [[ $SKIP != *" init "* ]]; then
  t=$SECONDS
  cargo build -q --workspace --exclude local --bins
  mapfile -t HOST_BINS < <(for entry in "${FUNCTIONS[@]}"; do read -r _ b <<<"$entry"; echo "$CARGO_TARGET_DIR/debug/$b"; done)
  PATH="$VENV/bin:$PATH" python3 .ci/init-times.py "${HOST_BINS[@]}"
  say "init: x86_64 debug builds on this host, process start to the first invocation request; Lambda adds its own sandbox start"
  mark "init times of ${#HOST_BINS[@]} functions" "$t"
fi

[[ $SKIP == *" watch "* ]] && { mark "cloud parity"; exit 0; }

# ---- 4. the watch path ---------------------------------------------------------------------
t=$SECONDS
ID=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
DB="of_cp_$ID"
export ORDERFLOW_PREFIX="cp$ID."
# The functions run as on Lambda (AWS_LAMBDA_FUNCTION_NAME is set by the emulator), where an
# unset stage counts as production and refuses the simulated gateway: this is a test stage.
export ORDERFLOW_STAGE=local
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
# 18 function processes and the runner share one Postgres: small pools.
export DB_POOL_SIZE=2
export RUST_LOG="${RUST_LOG:-warn}"
WATCH_PORT="${ORDERFLOW_WATCH_PORT:-9000}"
INVOKE_URL="http://[::1]:$WATCH_PORT"
LOGS=$(mktemp -d)
WATCH_PID="" UP_PID=""
cargo build -q -p local --bin orderflow
ORDERFLOW="$CARGO_TARGET_DIR/debug/orderflow"

stop_group() { # pid, signal: the process group started with setsid
  local pid=$1 sig=$2
  [ -n "$pid" ] || return 0
  kill -"$sig" -- -"$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 -- -"$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL -- -"$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop_group "$UP_PID" INT
  stop_group "$WATCH_PID" TERM
  if [ "$rc" != 0 ]; then
    for f in "$LOGS"/*.log; do echo "---- $(basename "$f") (last 40 lines)"; tail -40 "$f"; done >&2
  fi
  "$ORDERFLOW" topology --delete --force >/dev/null 2>&1 || true
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" postgres >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" --scan --pattern "$ORDERFLOW_PREFIX*" 2>/dev/null \
    | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  rm -rf "$LOGS"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE \"$DB\"" postgres
"$ORDERFLOW" migrate
"$ORDERFLOW" topology >/dev/null
"$ORDERFLOW" seed

# The emulator builds (debug, as the tests already did) and starts each function on its
# first invocation; the functions inherit this environment. No reloading: a source change
# while it runs would restart the functions under in-flight invocations.
setsid cargo lambda watch --ignore-changes --invoke-address ::1 --invoke-port "$WATCH_PORT" --quiet \
  >"$LOGS/watch.log" 2>&1 &
WATCH_PID=$!
for _ in $(seq 1 120); do
  curl -s -m 2 -o /dev/null "$INVOKE_URL/" && break
  kill -0 "$WATCH_PID" 2>/dev/null || fail "cargo lambda watch exited"
  sleep 0.5
done
curl -s -m 2 -o /dev/null "$INVOKE_URL/" || fail "cargo lambda watch did not listen on $INVOKE_URL"
say "cargo lambda watch serves $INVOKE_URL"

# One sample per service: HTTP events answer with a statusCode, queue events with the batch
# report (what AWS would see), counting every message of the file as done.
invoke() { # function, file, jq check
  local fn=$1 file=$2 check=$3 answer event
  event="$LOGS/event-$fn.json"
  # A queue sample names its queue unprefixed; on this run's prefix the broker's queue (what
  # AWS would put in the event, and where a parked message's dead-letter binding points) is
  # "$ORDERFLOW_PREFIX<queue>": publishes are mandatory, so a park to a binding that does
  # not exist would fail the batch.
  jq 'if .rmqMessagesByQueue then .rmqMessagesByQueue |= with_entries(.key = env.ORDERFLOW_PREFIX + .key) else . end' \
    "$file" >"$event"
  answer=$(cargo lambda invoke "$fn" --data-file "$event" --invoke-address ::1 \
    --invoke-port "$WATCH_PORT" --output-format json 2>"$LOGS/invoke-$fn.log") \
    || fail "cargo lambda invoke $fn: $(cat "$LOGS/invoke-$fn.log")"
  echo "$answer" | jq -e "$check" >/dev/null || fail "$fn answered $answer"
  say "invoke $fn --data-file $file -> $(echo "$answer" | jq -c 'if .statusCode then {statusCode, body} else . end')"
}
batch_ok() { # sample file: every message processed (or a duplicate), none parked
  local n
  n=$(jq '[.rmqMessagesByQueue[] | length] | add' "$1")
  echo "(.parked | length) == 0 and .processed + .duplicates == $n"
}
f=events/inventory/inventory-reserve.json; invoke inventory-reserve $f "$(batch_ok $f)"
f=events/payment/payment-process.json; invoke payment-process $f "$(batch_ok $f)"
f=events/notification/notification-send.json; invoke notification-send $f "$(batch_ok $f)"
# The saga's sample results are for an order this database has never seen: each message is
# parked with its reason, which is the right answer (AWS would see a successful invocation).
f=events/order/order-saga.json
invoke order-saga $f "(.parked | length) == $(jq '[.rmqMessagesByQueue[] | length] | add' $f) and all(.parked[]; .reason == \"unknown order\")"
invoke identity-register events/identity/identity-register.json '.statusCode == 201'
# The sample's bearer token is not a live session: the function must say 401, not fail.
invoke order-get events/order/order-get.json '.statusCode == 401'
# The same dead token at the HTTP API's authorizer: denied (API Gateway would answer 403).
invoke identity-authorize events/identity/identity-authorize.json '.isAuthorized == false'
mark "cargo lambda invoke of one sample per service" "$t"

# The bootstrap custom resource through its own binary and the emulator: a real-shaped
# Create whose ResponseURL is a local receiver, which must get SUCCESS (migrations and
# topology are in place already, so this also shows a repeated run is harmless).
t=$SECONDS
RESPONSE="$LOGS/cfn-response.json"
python3 - "$RESPONSE" >"$LOGS/cfn-receiver.port" 2>"$LOGS/cfn-receiver.log" <<'PY' &
import http.server, sys
out = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        open(out, "wb").write(body)
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.handle_request()
PY
RECEIVER_PID=$!
for _ in $(seq 1 50); do [ -s "$LOGS/cfn-receiver.port" ] && break; sleep 0.1; done
PORT=$(cat "$LOGS/cfn-receiver.port")
jq -n --arg url "http://127.0.0.1:$PORT/cloudformation-custom-resource-response-useast1/stack%7CBootstrap%7Cci?X-Amz-Signature=x" '{
  RequestType: "Create", ResponseURL: $url,
  ServiceToken: "arn:aws:lambda:us-east-1:123456789012:function:orderflow-ops-bootstrap",
  StackId: "arn:aws:cloudformation:us-east-1:123456789012:stack/orderflow/ci",
  RequestId: "ci-1", LogicalResourceId: "Bootstrap", ResourceType: "Custom::Bootstrap",
  ResourceProperties: {FunctionVersion: "1", SeedDemoCatalog: "false"}}' >"$LOGS/event-ops-bootstrap.json"
cargo lambda invoke ops-bootstrap --data-file "$LOGS/event-ops-bootstrap.json" --invoke-address ::1 \
  --invoke-port "$WATCH_PORT" --output-format json >"$LOGS/invoke-ops-bootstrap.out" 2>"$LOGS/invoke-ops-bootstrap.log" \
  || fail "cargo lambda invoke ops-bootstrap: $(cat "$LOGS/invoke-ops-bootstrap.log")"
wait "$RECEIVER_PID" || true
jq -e '.Status == "SUCCESS"' "$RESPONSE" >/dev/null || fail "the bootstrap answered $(cat "$RESPONSE" 2>/dev/null)"
say "invoke ops-bootstrap (Create) -> the response URL got $(jq -c '{Status, Reason, Data}' "$RESPONSE")"
mark "bootstrap custom resource through cargo lambda watch" "$t"

# End to end: the runner's bridge and front door drive the same binaries through the emulator.
t=$SECONDS
ORDERFLOW_HTTP_ADDR=127.0.0.1:0 setsid "$ORDERFLOW" up --invoke-url "$INVOKE_URL" \
  >"$LOGS/up.log" 2>&1 &
UP_PID=$!
BASE=""
for _ in $(seq 1 120); do
  BASE=$(grep -o 'HTTP on http://[0-9.:]*' "$LOGS/up.log" | head -1 | sed 's/HTTP on //') || true
  [ -n "$BASE" ] && break
  kill -0 "$UP_PID" 2>/dev/null || fail "orderflow up --invoke-url exited"
  sleep 0.5
done
[ -n "$BASE" ] || fail "orderflow up --invoke-url did not come up"
EMAIL="cp-$ID@example.com"
curl -sf -m 30 -XPOST "$BASE/users" -d "{\"email\":\"$EMAIL\",\"password\":\"correct horse\"}" >/dev/null \
  || fail "POST /users"
TOKEN=$(curl -sf -m 30 -XPOST "$BASE/sessions" -d "{\"email\":\"$EMAIL\",\"password\":\"correct horse\"}" | jq -r .token)
[ -n "$TOKEN" ] && [ "$TOKEN" != null ] || fail "POST /sessions gave no token"
ORDER=$(curl -sf -m 30 -XPOST "$BASE/orders" -H "authorization: Bearer $TOKEN" -H "idempotency-key: cp-$ID" \
  -d '{"items":[{"product_id":"sku-coffee","quantity":2},{"product_id":"sku-mug","quantity":1}],"payment_token":"tok_visa"}')
ORDER_ID=$(echo "$ORDER" | jq -r .order_id)
[ -n "$ORDER_ID" ] && [ "$ORDER_ID" != null ] || fail "POST /orders answered $ORDER"
STATUS=PENDING
DEADLINE=$((SECONDS + 60))
while [ "$STATUS" = PENDING ] && [ $SECONDS -lt $DEADLINE ]; do
  sleep 0.5
  STATUS=$(curl -sf -m 10 "$BASE/orders/$ORDER_ID" -H "authorization: Bearer $TOKEN" | jq -r .status) || STATUS=PENDING
done
[ "$STATUS" = CONFIRMED ] || fail "order $ORDER_ID is $STATUS after 60 s (expected CONFIRMED)"
say "order $ORDER_ID placed over HTTP through orderflow up --invoke-url: CONFIRMED in $((SECONDS - DEADLINE + 60)) s"
mark "end to end through cargo lambda watch" "$t"
mark "cloud parity"
