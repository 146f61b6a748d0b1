# Leash image: the compiled broker (dist/) on Node 24 (LTS), run as the image's `node` user
# (uid 1000, what charts/leash runs as). Build: docker build -t leash:0.1.0 .
# Not built on the project's machines (no Docker daemon there); each step is run by hand in
# CI-like conditions instead (see charts/leash/README.md, "What is validated").

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# /var/lib/leash: SQLite and local keys (a volume in Kubernetes); /etc/leash: the config.
RUN mkdir -p /var/lib/leash /etc/leash && chown node:node /var/lib/leash
USER node
# 8080: the API (settings.listen); 9090: /healthz, /readyz, /metrics (settings.management.listen).
EXPOSE 8080 9090
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["serve", "--config", "/etc/leash/leash.yaml"]
