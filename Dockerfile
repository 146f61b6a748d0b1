# Leash image: ghcr.io/leash-dev/leash:<version> (the Helm chart's default image.repository,
# tag = the chart's appVersion = package.json's version). Build:
#   docker build -t ghcr.io/leash-dev/leash:0.1.0 .
# It runs the compiled broker on Node 24 (LTS) as the image's `node` user (uid 1000, what
# charts/leash runs as), with the default config config/container.yaml at
# /etc/leash/leash.yaml: listening on 0.0.0.0:8080 (API) and 0.0.0.0:9090 (probes, metrics),
# state and keys under the /var/lib/leash volume. Mount your own config over it.
# No Docker daemon runs on the project's machines: test/packaging/container.test.ts replays
# these steps in a temporary root as uid 1000 (see charts/leash/README.md, "What is validated").

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
# `npm ci` runs the `prepare` script, which builds dist/ (and the SDK's own build); then the
# dev dependencies go, and the link to the SDK workspace (the broker carries its own copy).
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -f node_modules/leash-client

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The config is root's and read-only to Leash; everything Leash writes (SQLite, local keys)
# is under the data volume, which only its user may enter.
COPY config/container.yaml /etc/leash/leash.yaml
RUN mkdir -p /var/lib/leash && chown node:node /var/lib/leash && chmod 0700 /var/lib/leash \
 && chmod 0644 /etc/leash/leash.yaml
VOLUME ["/var/lib/leash"]
USER node
# 8080: the API (settings.listen); 9090: /healthz, /readyz, /metrics (settings.management.listen).
EXPOSE 8080 9090
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["serve", "--config", "/etc/leash/leash.yaml"]
