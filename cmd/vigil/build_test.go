package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The Dockerfile builds the same static binary as `make build`: CGO off,
// -trimpath, stripped, version stamped, non-root on a static base image.
func TestDockerfileBuildsLikeTheMakefile(t *testing.T) {
	docker, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	d := string(docker)
	flags := regexp.MustCompile(`(?m)^BUILD_FLAGS = (.*)$`).FindStringSubmatch(string(makefile))
	if flags == nil {
		t.Fatal("Makefile has no BUILD_FLAGS line")
	}
	want := strings.ReplaceAll(flags[1], "$(VERSION)", "${VERSION}")
	for _, must := range []string{"CGO_ENABLED=0 go build " + want, "FROM golang:", "AS build", "USER nonroot", "distroless/static"} {
		if !strings.Contains(d, must) {
			t.Errorf("Dockerfile lacks %q", must)
		}
	}
	if !strings.Contains(string(makefile), "CGO_ENABLED=0 $(GO) build $(BUILD_FLAGS)") {
		t.Error("make build no longer uses BUILD_FLAGS with CGO_ENABLED=0")
	}
}
