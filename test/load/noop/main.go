// Command noop is the load harness's floor: the same controller-runtime webhook server, TLS and
// HTTP/1.1 settings and review codec (server.ReviewHandler) as Portcullis, with a handler that
// admits everything without evaluating.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/pkg/server"
)

type allow struct{}

func (allow) Handle(context.Context, admission.Request) admission.Response {
	return admission.Allowed("")
}

func main() {
	port := flag.Int("port", 9444, "port")
	certDir := flag.String("cert-dir", "", "directory with tls.crt and tls.key")
	flag.Parse()
	srv := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: *port, CertDir: *certDir, TLSOpts: []func(*tls.Config){func(c *tls.Config) {
		c.MinVersion = tls.VersionTLS12
		c.NextProtos = []string{"http/1.1"}
	}}})
	srv.Register("/validate", &server.ReviewHandler{Handler: allow{}})
	if err := srv.Start(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
