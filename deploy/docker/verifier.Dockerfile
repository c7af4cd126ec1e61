# syntax=docker/dockerfile:1
# tally-verifier. Build from the repository root:
#   docker build -f deploy/docker/verifier.Dockerfile -t tally-verifier .

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p tally-verifier \
 && install -D -m 0755 target/release/tally-verifier /out/tally-verifier

# glibc and libgcc only, no shell; bookworm like the builder, so glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/tally-verifier /usr/local/bin/tally-verifier
ENV TALLY_VERIFIER_LISTEN=0.0.0.0:7800 \
    TALLY_VERIFIER_METRICS_LISTEN=0.0.0.0:9800
# TALLY_VERIFIER_AUTHORITY and TALLY_VERIFIER_TOKEN_FILE come from the deployment.
USER 65532:65532
EXPOSE 7800 9800
ENTRYPOINT ["/usr/local/bin/tally-verifier"]
CMD ["serve"]
