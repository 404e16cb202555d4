# syntax=docker/dockerfile:1
# The touchstream binary (every service is a subcommand), built from the repository
# root with the Go workspace:  docker build -t touchstream .
# Run as: docker run touchstream gateway  (see deploy/compose.yaml, deploy/k8s/).

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath
# The workspace and its modules' requirements first, so that dependencies are
# cached apart from the sources.
COPY go.work go.work.sum ./
COPY schemas/go.mod schemas/
COPY events/go.mod events/go.sum events/
COPY projections/go.mod projections/go.sum projections/
COPY services/go.mod services/go.sum services/
COPY testkit/go.mod testkit/go.sum testkit/
COPY deploy/go.mod deploy/go.sum deploy/
RUN --mount=type=cache,target=/go/pkg/mod \
    cd services && go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w" -o /out/touchstream ./services/cmd/touchstream

# A static busybox, installed as wget only: the image has no shell, and compose's
# healthchecks need an HTTP client to ask /readyz.
FROM busybox:1.37.0-musl AS busybox

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/touchstream /usr/local/bin/touchstream
COPY --from=busybox /bin/busybox /usr/local/bin/wget
COPY deploy/*.json /etc/touchstream/
ENV TOUCHSTREAM_DEPLOY_DIR=/etc/touchstream \
    TOUCHSTREAM_DATA_DIR=/tmp/touchstream \
    TOUCHSTREAM_ADMIN_ADDR=0.0.0.0:9090 \
    TOUCHSTREAM_LOG_FORMAT=json
# distroless's nonroot user; the root filesystem can be mounted read-only.
USER 65532:65532
EXPOSE 8080 8081 8082 9090
ENTRYPOINT ["/usr/local/bin/touchstream"]
CMD ["help"]
