package app

import (
	"fmt"
	"os"
	"time"

	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/verify"
)

// verificationOptions are how the CLI verifies images: registry credentials from the default
// keychain (~/.docker/config.json), as docker and cosign find them in CI; any address, since the
// CLI's user chose the policies and the manifests; and the trusted root of --trusted-root, in
// place of the public-good root and of roots in ConfigMaps.
func verificationOptions(insecure []string, timeout time.Duration, trustedRootFile string) (policies.VerificationOptions, error) {
	o := policies.VerificationOptions{
		Cache:              verify.NewCache(1024, time.Hour, time.Minute, nil),
		Timeout:            timeout,
		InsecureRegistries: insecure,
		Transport:          verify.NewTransport(verify.EgressOptions{Insecure: insecure, AllowPrivate: true}),
	}
	if trustedRootFile != "" {
		doc, err := os.ReadFile(trustedRootFile)
		if err != nil {
			return o, fmt.Errorf("--trusted-root: %w", err)
		}
		if o.TrustedRoot, err = verify.NewTrustedRoot(doc); err != nil {
			return o, fmt.Errorf("--trusted-root %s: %w", trustedRootFile, err)
		}
	}
	return o, nil
}
