#!/bin/sh
# The compose file's one-shot `bootstrap` job (grpcurl's alpine image, as
# root): mints one verifier token per region with the bootstrap operator
# token that `authority-init` left in /operator, unless that region already
# has one. Delete /tokens/REGION.token (the `verifier-tokens` volume) and run
# the job again to rotate.
set -eu

OPERATOR_TOKEN=$(cat /operator/operator.token)
export OPERATOR_TOKEN
for region in ${REGIONS:?}; do
    out=/tokens/$region.token
    if [ -s "$out" ]; then
        echo "bootstrap: $region has a verifier token already"
        continue
    fi
    sh /bootstrap/mint-verifier-token.sh "${AUTHORITY_ADDR:?}" > "$out.tmp"
    # The verifiers run as uid 65532 (nonroot) and only read it.
    chown 65532:65532 "$out.tmp"
    chmod 0400 "$out.tmp"
    mv "$out.tmp" "$out"
    echo "bootstrap: minted a verifier token for $region"
done
