# The webhook server image: a static binary on distroless, non-root (UID 65532).
#
# The base images are pinned by digest, so that a build is reproducible and a tag moved upstream
# changes nothing until a person bumps it. To bump them, print the current digests of the tags
# (make image-digests, which runs crane from the module proxy), paste them below, and rebuild:
#   golang:1.26                                  the build stage
#   gcr.io/distroless/static-debian12:nonroot    the runtime stage
FROM golang:1.26@sha256:595c7847cff97c9a9e76f015083c481d26078f961c9c8dca3923132f51fe12f1 AS build
ARG VERSION=devel
ARG COMMIT=
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/portcullis-dev/portcullis/pkg/version.Version=${VERSION} -X github.com/portcullis-dev/portcullis/pkg/version.Commit=${COMMIT}" \
      -o /webhook ./cmd/webhook

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
COPY --from=build /webhook /webhook
USER 65532:65532
ENTRYPOINT ["/webhook"]
