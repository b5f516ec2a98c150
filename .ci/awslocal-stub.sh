#!/usr/bin/env bash
# Stand-in for LocalStack's awslocal in CI (no LocalStack runs there): keeps secrets and
# parameters as files under $STUB_STATE; only the calls localstack/init/ready.d/secrets.sh makes.
set -euo pipefail
state=${STUB_STATE:?}; mkdir -p "$state/secrets" "$state/ssm"
svc=$1 op=$2; shift 2
declare -A a=(); while [ $# -gt 0 ]; do a[$1]=${2:-}; shift 2 || shift; done
key() { printf '%s' "$1" | tr '/' '_'; }
case "$svc $op" in
  "secretsmanager describe-secret") f="$state/secrets/$(key "${a[--secret-id]}")"; [ -f "$f" ] || exit 254; echo "arn:aws:secretsmanager:us-east-1:000000000000:secret:${a[--secret-id]}" ;;
  "secretsmanager create-secret") printf '%s' "${a[--secret-string]}" > "$state/secrets/$(key "${a[--name]}")"; echo "arn:aws:secretsmanager:us-east-1:000000000000:secret:${a[--name]}" ;;
  "secretsmanager put-secret-value") printf '%s' "${a[--secret-string]}" > "$state/secrets/$(key "${a[--secret-id]}")" ;;
  "ssm put-parameter") printf '%s' "${a[--value]}" > "$state/ssm/$(key "${a[--name]}")" ;;
  *) echo "stub awslocal: unsupported $svc $op" >&2; exit 2 ;;
esac
