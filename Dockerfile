# A runnable image of the service with every build tool. Base artifacts are built on the host with
# `make base-artifacts` (the OS build needs root and chroots) and mounted at /srv/base-artifacts.
FROM node:20-bookworm-slim

WORKDIR /opt/uki-on-demand
# The same package list as `make deps` and CI.
COPY packages.apt scripts/install-deps.sh ./
RUN ./install-deps.sh ./packages.apt && rm -rf /var/lib/apt/lists/*

COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json openapi.yaml ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

ENV UOD_DATA_DIR=/srv/data \
    UOD_BASE_ARTIFACTS=/srv/base-artifacts \
    UOD_LISTEN=0.0.0.0:8080
VOLUME ["/srv/data"]
EXPOSE 8080
ENTRYPOINT ["node", "/opt/uki-on-demand/dist/cli.js"]
CMD ["serve"]
