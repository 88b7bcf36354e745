# syntax=docker/dockerfile:1
# Multi-stage build of thalassa-secrets-operator.
#   docker build -t thalassa-secrets-operator:0.1.0 .

# ---- build ----
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The release binary links glibc dynamically (ring and the Rust standard library), so the
# runtime image is distroless/cc (glibc, libgcc, CA certificates), not distroless/static.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin thalassa-secrets-operator \
 && install -D -m 0555 target/release/thalassa-secrets-operator /out/thalassa-secrets-operator

# ---- runtime ----
# Debian 12 matches the builder's glibc; the :nonroot variant has no shell and runs as 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="thalassa-secrets-operator" \
      org.opencontainers.image.description="Syncs secrets from Thalassa Cloud Secrets Manager into Kubernetes Secrets" \
      org.opencontainers.image.source="https://github.com/thalassa-cloud/thalassa-secrets-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=build /out/thalassa-secrets-operator /usr/local/bin/thalassa-secrets-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/thalassa-secrets-operator"]
