# syntax=docker/dockerfile:1
# The `tally` CLI. Build from the repository root:
#   docker build -f deploy/docker/cli.Dockerfile -t tally .
#   docker run --rm -i tally token inspect - < token.txt

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p tally-client --bin tally \
 && install -D -m 0755 target/release/tally /out/tally

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/tally /usr/local/bin/tally
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tally"]
CMD ["--help"]
