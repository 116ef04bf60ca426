// Command webhook is the Portcullis admission webhook server.
package main

import (
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/portcullis-dev/portcullis/cmd/webhook/app"
)

func main() {
	if err := app.NewCommand(ctrl.SetupSignalHandler(), app.Run).Execute(); err != nil {
		os.Exit(1)
	}
}
