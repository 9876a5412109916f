# One image for every Reservoir service: `reservoir serve <service>`.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p reservoir-platform \
 && cp target/release/reservoir /usr/local/bin/reservoir

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/reservoir reservoir \
 && mkdir -p /var/lib/reservoir/spool && chown -R reservoir:reservoir /var/lib/reservoir
COPY --from=build /usr/local/bin/reservoir /usr/local/bin/reservoir
USER reservoir
WORKDIR /var/lib/reservoir
ENTRYPOINT ["reservoir"]
CMD ["serve", "gateway"]
