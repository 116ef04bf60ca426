// Command noop is the load harness's floor: the same webhook server, TLS and HTTP/1.1 settings,
// memory budget and review codec (server.ReviewHandler) as Portcullis, with a handler that
// admits everything without evaluating.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/pkg/server"
)

type allow struct{}

// ProbeName is the one object the floor denies: make bench-apiserver creates it to see whether
// the API server calls this webhook.
const ProbeName = "portcullis-bench-probe"

func (allow) Handle(_ context.Context, req admission.Request) admission.Response {
	if req.Name == ProbeName {
		return admission.Denied("the bench's probe")
	}
	return admission.Allowed("")
}

func main() {
	port := flag.Int("port", 9444, "port")
	certDir := flag.String("cert-dir", "", "directory with tls.crt and tls.key")
	flag.Parse()
	ctrl.SetLogger(zap.New()) // as the server logs; unset, controller-runtime warns with a stack
	if err := run(*port, *certDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(port int, certDir string) error {
	watcher, err := certwatcher.New(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err != nil {
		return err
	}
	o := server.DefaultWebhookServerOptions
	o.Host, o.Port = "127.0.0.1", port
	o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}, GetCertificate: watcher.GetCertificate}
	srv := server.NewWebhookServer(o)
	srv.Register("/validate", &server.ReviewHandler{Handler: allow{}, Budget: server.NewBudget(64 << 20), Timeout: 3 * time.Second})
	return srv.Start(ctrl.SetupSignalHandler())
}
