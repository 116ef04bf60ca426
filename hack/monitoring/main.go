// Command monitoring checks the monitoring kit's alerting rules with promtool (make
// test-monitoring): it writes the rules of manifests/monitoring/alerts.yaml (a PrometheusRule)
// as a rules file beside the unit tests of alerts_test.yaml, and runs promtool check rules and
// promtool test rules on them. promtool is built from the module proxy (tools/promtool).
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "test-monitoring: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	kit := filepath.Join(root, "manifests", "monitoring")
	data, err := os.ReadFile(filepath.Join(kit, "alerts.yaml"))
	if err != nil {
		return err
	}
	var rule struct {
		Spec map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &rule); err != nil {
		return fmt.Errorf("alerts.yaml: %w", err)
	}
	rules, err := yaml.Marshal(rule.Spec)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "portcullis-rules-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	tests, err := os.ReadFile(filepath.Join(kit, "alerts_test.yaml"))
	if err != nil {
		return err
	}
	for name, content := range map[string][]byte{"rules.yaml": rules, "alerts_test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			return err
		}
	}
	fmt.Println("== building promtool (tools/promtool; minutes on a cold cache)")
	promtool := filepath.Join(root, "bin", "promtool")
	build := exec.Command("go", "build", "-modfile="+filepath.Join(root, "tools", "promtool", "go.mod"), "-o", promtool, "github.com/prometheus/prometheus/cmd/promtool") //nolint:gosec // the repository's own paths
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building promtool: %w", err)
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		fmt.Println("== promtool", args[0], args[1])
		cmd := exec.Command(promtool, args...) //nolint:gosec // the promtool just built
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("promtool %s %s: %w", args[0], args[1], err)
		}
	}
	return nil
}
