package app

import (
	"errors"
	"fmt"

	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/audit"
)

func newReportCommand(s streams) *cobra.Command {
	o := &checkOptions{output: "text"}
	cmd := &cobra.Command{
		Use:   "report [-n NS | -A] [-o text|json]",
		Short: "Summarise the background audit's reports: what each policy would deny if enforced",
		Long: `Read the Reports the Portcullis server's background audit writes (one per namespace, and a
ClusterReport for cluster-scoped objects with -A) and print, per policy and namespace, how many
resources fail or warn on one of its rules: what would be denied were it enforced with Deny.
Without -n or -A, the context's namespace.`,
		Example: `  # Every namespace
  kubectl portcullis report -A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.nsGiven = cmd.Flags().Changed("namespace")
			if o.output != "text" && o.output != "json" {
				return fmt.Errorf("-o %q: want text or json", o.output)
			}
			if o.allNamespaces && o.nsGiven {
				return errors.New("-A and -n cannot both be given")
			}
			cfg, namespace, err := o.restConfig()
			if err != nil {
				return err
			}
			scheme := runtime.NewScheme()
			if err := openreports.Install(scheme); err != nil {
				return err
			}
			c, err := client.New(cfg, client.Options{Scheme: scheme})
			if err != nil {
				return err
			}
			var reports openreports.ReportList
			opts := []client.ListOption{client.MatchingLabels{audit.ManagedByLabel: audit.ManagedBy}}
			if namespace != "" {
				opts = append(opts, client.InNamespace(namespace))
			}
			if err := c.List(cmd.Context(), &reports, opts...); err != nil {
				return fmt.Errorf("listing the reports: %w", err)
			}
			var cluster *openreports.ClusterReport
			if namespace == "" {
				cluster = &openreports.ClusterReport{}
				if err := c.Get(cmd.Context(), client.ObjectKey{Name: audit.ReportName}, cluster); err != nil {
					if !apierrors.IsNotFound(err) {
						return fmt.Errorf("reading the ClusterReport: %w", err)
					}
					cluster = nil
				}
			}
			return audit.Summarize(reports.Items, cluster).Write(s.out, o.output)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", o.output, "output format: text or json")
	f.StringVarP(&o.namespace, "namespace", "n", "", "the namespace whose report to read")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "every namespace's report, and the ClusterReport")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	return cmd
}
