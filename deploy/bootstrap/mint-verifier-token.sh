#!/bin/sh
# Mints one verifier token (`role = verifier`, system org) and prints it.
#   OPERATOR_TOKEN=… mint-verifier-token.sh AUTHORITY_ADDR [TTL_SECONDS]
# AUTHORITY_ADDR is host:port of the authority's gRPC API (plaintext). Needs
# grpcurl 1.9 or newer: it uses the server's reflection, which Tally offers as
# grpc.reflection.v1 only (older grpcurl asks for v1alpha). POSIX sh, so it
# also runs in grpcurl's alpine image.
set -eu

addr=${1:?usage: OPERATOR_TOKEN=… $0 AUTHORITY_ADDR [TTL_SECONDS]}
# A year by default (the authority's longest TTL is 366 days): rotate before it runs out.
ttl=${2:-31536000}
: "${OPERATOR_TOKEN:?set OPERATOR_TOKEN to an operator token}"
export OPERATOR_TOKEN

# Wait (up to a minute) until the authority reports SERVING.
tries=0
until grpcurl -plaintext -d '{"service":"tally.v1.Authority"}' "$addr" grpc.health.v1.Health/Check 2>/dev/null |
    grep -q '"SERVING"'; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        echo "mint-verifier-token: authority at $addr is not serving" >&2
        exit 1
    fi
    sleep 1
done

# -expand-headers reads the token from the environment: it never appears in argv.
response=$(grpcurl -plaintext -expand-headers -H 'authorization: Bearer ${OPERATOR_TOKEN}' \
    -d "{\"org\":\"system\",\"caveats\":[\"role = verifier\"],\"ttl_seconds\":$ttl}" \
    "$addr" tally.v1.Authority/Mint)
token=$(printf '%s\n' "$response" | sed -n 's/^ *"token": *"\(tly_[A-Za-z0-9_-]*\)".*/\1/p')
if [ -z "$token" ]; then
    echo "mint-verifier-token: no token in the Mint response" >&2
    exit 1
fi
printf '%s\n' "$token"
