# syntax=docker/dockerfile:1
# Multi-stage build of thalassa-secrets-operator.
#   docker build --build-arg REVISION=$(git rev-parse HEAD) -t thalassa-secrets-operator:0.1.0 .
# Without Docker: tools/build-image.sh builds the same runtime layout with buildah, FROM SCRATCH
# (tests/offline/image.rs checks that image against this file's runtime stage).

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
# The crate version (Cargo.toml; tests/offline/image.rs keeps the two equal) and the commit built.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="thalassa-secrets-operator" \
      org.opencontainers.image.description="Syncs secrets from Thalassa Cloud Secrets Manager into Kubernetes Secrets" \
      org.opencontainers.image.source="https://github.com/thalassa-cloud/thalassa-secrets-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/thalassa-secrets-operator /usr/local/bin/thalassa-secrets-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/thalassa-secrets-operator"]
