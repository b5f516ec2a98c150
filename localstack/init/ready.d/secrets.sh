#!/usr/bin/env bash
# LocalStack ready hook: creates the secrets template.yaml's parameters point at, with values
# that reach the services of docker-compose.yml (or the machine's own) from inside a
# container, and records their ARNs as SSM parameters for `sam deploy --parameter-overrides`.
# LocalStack runs every script in /etc/localstack/init/ready.d once it is ready; `awslocal`
# is on its PATH there. Idempotent: a second run updates the values.
set -euo pipefail

HOST="${ORDERFLOW_SERVICES_HOST:-host.docker.internal}"
PREFIX="${ORDERFLOW_SECRET_PREFIX:-orderflow}"
AWS="${AWSLOCAL:-awslocal}"

put_secret() { # name, value -> prints the ARN
  local name=$1 value=$2 arn
  if arn=$($AWS secretsmanager describe-secret --secret-id "$name" --query ARN --output text 2>/dev/null); then
    $AWS secretsmanager put-secret-value --secret-id "$name" --secret-string "$value" >/dev/null
  else
    arn=$($AWS secretsmanager create-secret --name "$name" --secret-string "$value" --query ARN --output text)
  fi
  echo "$arn"
}

put_parameter() { # name, value
  $AWS ssm put-parameter --name "$1" --type String --value "$2" --overwrite >/dev/null
}

# The URLs the functions read (DATABASE_URL, REDIS_URL, AMQP_URL) and the broker user the
# MQ trigger authenticates with (BASIC_AUTH: {"username","password"}).
declare -A SECRETS=(
  [database-url]="${ORDERFLOW_DATABASE_URL:-postgres://postgres@${HOST}:5432/orderflow}"
  [redis-url]="${ORDERFLOW_REDIS_URL:-redis://${HOST}:6379}"
  [amqp-url]="${ORDERFLOW_AMQP_URL:-amqp://guest:guest@${HOST}:5672/%2f}"
  [broker]='{"username":"guest","password":"guest"}'
)
# template.yaml parameter fed by each secret.
declare -A PARAMETER=(
  [database-url]=DatabaseUrlSecretArn
  [redis-url]=RedisUrlSecretArn
  [amqp-url]=AmqpUrlSecretArn
  [broker]=BrokerSecretArn
)

for key in database-url redis-url amqp-url broker; do
  arn=$(put_secret "$PREFIX/$key" "${SECRETS[$key]}")
  put_parameter "/$PREFIX/${PARAMETER[$key]}" "$arn"
  echo "orderflow: secret $PREFIX/$key -> ${PARAMETER[$key]}=$arn"
done
