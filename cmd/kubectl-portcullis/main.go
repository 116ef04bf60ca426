// Command kubectl-portcullis runs the Portcullis engine on manifests, standalone or as
// `kubectl portcullis`.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/portcullis-dev/portcullis/cmd/kubectl-portcullis/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := app.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
