# Multi-stage build: a static vigil binary on a distroless, non-root base.
# The build flags are the Makefile's (`make build`), checked by a test.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/vigil ./cmd/vigil

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/vigil /usr/local/bin/vigil
COPY configs/rules /etc/vigil/rules
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["--help"]
