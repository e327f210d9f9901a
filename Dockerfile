# Multi-stage build: compile in the Rust image, run in a small Debian image as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
RUN cargo build --release --locked --bin hookrelay

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/hookrelay --create-home hookrelay \
 && install -d -o hookrelay /var/lib/hookrelay/data
COPY --from=build /src/target/release/hookrelay /usr/local/bin/hookrelay
COPY config/hookrelay.toml /etc/hookrelay/hookrelay.toml
# Schema paths in the configuration are relative to the working directory below.
COPY config/schemas /var/lib/hookrelay/config/schemas
USER 10001
WORKDIR /var/lib/hookrelay
EXPOSE 8080 9464
ENTRYPOINT ["hookrelay"]
CMD ["serve", "--config", "/etc/hookrelay/hookrelay.toml"]
