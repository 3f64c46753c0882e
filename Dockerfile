# syntax=docker/dockerfile:1
#
# watchgate: a static binary on a distroless, non-root base.
#
#   docker build -t watchgate .
#   docker run -p 8080:8080 -v watchgate-data:/data watchgate
#
# Configure with WATCHGATE_* environment variables (docker run -e
# WATCHGATE_ACCESS_FILE=/etc/watchgate/access.yaml ...) rather than flags:
# the HEALTHCHECK runs `watchgate healthcheck`, which reads the same
# environment to find the address. docker_test.go checks this file and runs
# its build commands.

# The toolchain go.mod pins: 1.26.8's HTTP/2 server has a crash bug.
FROM golang:1.26.11-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -ldflags="-s -w" -o /out/watchgate .
# The data directory, owned by the runtime user (distroless nonroot,
# 65532), so a new volume starts writable.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/watchgate /usr/local/bin/watchgate
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV WATCHGATE_ADDR=:8080 WATCHGATE_DATA=/data
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/watchgate", "healthcheck"]
# SIGTERM (docker stop) shuts down gracefully: streams end, sockets close
# with 1001, the store closes. Give it more than its 10s: docker stop -t 20.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/watchgate"]
CMD ["--data", "/data"]
