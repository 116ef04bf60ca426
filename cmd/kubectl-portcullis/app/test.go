package app

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/policytest"
)

// errBadSuite is returned when a suite could not be run: bad input, exit 2, after the output.
var errBadSuite = errors.New("test suites could not run")

func newTestCommand(s streams) *cobra.Command {
	var output string
	var insecureRegistries, exceptionNamespaces []string
	var trustedRoot string
	cmd := &cobra.Command{
		Use:   "test [PATH]... [-o text|json|junit]",
		Short: "Run policy test suites (portcullis-test.yaml)",
		Long: `Run the policy test suites found under each PATH (default: the current directory): files
named ` + policytest.FileName + `, searched recursively. Each suite names policies, resources (an
AdmissionReview document is replayed as the request it recorded), UPDATE and DELETE requests, and
the results the policies must give them; everything runs through the same pipeline as check.

Every expectation that does not hold is printed with what was wanted and what was got, and the
rule's message.

Exit status: 0 when every expectation holds, 1 when one does not, 2 for bad input: no suite
found, a suite that cannot be read or names what it does not have, an empty suite, or an invalid
policy.`,
		Example: `  # Run the library's suites
  kubectl portcullis test manifests/library

  # In CI, as JUnit XML
  kubectl portcullis test policies/ -o junit > portcullis-tests.xml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" && output != "junit" {
				return fmt.Errorf("invalid flags (see --help):\n  -o %q: want text, json or junit", output)
			}
			if len(args) == 0 {
				args = []string{"."}
			}
			files, err := policytest.Find(args)
			if err != nil {
				return fmt.Errorf("finding test suites:\n%w", indent(err))
			}
			if len(files) == 0 {
				return fmt.Errorf("no test suites (%s) found in %s", policytest.FileName, strings.Join(args, ", "))
			}
			vo, err := verificationOptions(insecureRegistries, 30*time.Second, trustedRoot)
			if err != nil {
				return err
			}
			compiler, err := policies.NewCompiler(policies.WithVerification(vo), policies.WithExceptions(policies.ExceptionOptions{ClusterPolicyNamespaces: exceptionNamespaces}))
			if err != nil {
				return err
			}
			runner := &policytest.Runner{Compiler: compiler, Now: s.now}
			results := make([]policytest.Result, 0, len(files))
			for _, f := range files {
				results = append(results, runner.Run(cmd.Context(), f))
			}
			if err := policytest.Write(s.out, output, results); err != nil {
				return err
			}
			sum := policytest.Summarize(results)
			switch {
			case sum.Bad > 0:
				return errBadSuite
			case sum.Failed > 0:
				return errViolation
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "text", "output format: text, json or junit")
	f.StringArrayVar(&insecureRegistries, "insecure-registry", nil, "registry (host[:port]) reached over plain HTTP or untrusted TLS (repeatable)")
	f.StringVar(&trustedRoot, "trusted-root", "", "Sigstore TrustedRoot JSON for keyless verification, in place of the public-good root and of a rule's trustedRoot.configMapRef")
	f.StringSliceVar(&exceptionNamespaces, "exception-namespaces", []string{"portcullis-system"}, "namespaces (globs) whose PolicyExceptions may exempt from ClusterPolicies, as the server's flag of the same name")
	return cmd
}
