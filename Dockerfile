# syntax=docker/dockerfile:1
# aigw container: a static-ish release build on Debian, run as non-root from a distroless image.
#   docker build -t aigw .
#   docker run -p 443:443 -v $PWD/tls:/etc/aigw/tls:ro -e AIGW_CLIENT_KEY=... -e OPENAI_API_KEY=... \
#     -e AIGW_ADMIN_KEY=... aigw
# Mount another config at /etc/aigw/config.toml to change models, keys or upstreams.

# ---- build --------------------------------------------------------------------------------------------------
# The toolchain the project is developed and tested with (rust-version in Cargo.toml is the floor).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so editing src/ does not refetch and rebuild them: build a stub crate once. Everything the
# manifest names must be here for cargo to read it: the build script, the protos, the [[bench]] targets.
# (scripts/docker_build_check.py lays these stages out and builds them in CI, without a container engine.)
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY benches benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src src
# touch: make cargo see the real sources as newer than the stub build.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin aigw
# Let the non-root user bind port 443 without any other privilege (file capability, kept by COPY).
RUN apt-get update && apt-get install -y --no-install-recommends libcap2-bin \
 && setcap cap_net_bind_service=+ep target/release/aigw

# ---- run ----------------------------------------------------------------------------------------------------
# distroless/cc: glibc and CA certificates (for HTTPS upstreams), no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/aigw /usr/local/bin/aigw
COPY deploy/container.toml /etc/aigw/config.toml
ENV AIGW_CONFIG=/etc/aigw/config.toml
# 65532: distroless' nonroot user. Docker also lets unprivileged users bind low ports by default
# (net.ipv4.ip_unprivileged_port_start=0); the file capability above covers runtimes that do not.
USER 65532:65532
EXPOSE 443
# Admin: /healthz, /readyz, /metrics, usage API. For the cluster network only.
EXPOSE 9090
STOPSIGNAL SIGTERM
# The binary probes its own gRPC health service, trusting exactly the configured certificate (no shell or
# curl in the image). With mTLS, probe from the orchestrator instead and disable this.
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 CMD ["/usr/local/bin/aigw", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/aigw"]
CMD ["serve"]
