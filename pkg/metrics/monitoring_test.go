package metrics

import (
	"crypto/tls"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"
)

// recorder is a Registerer that keeps what is registered.
type recorder struct{ collectors []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}
func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}
func (r *recorder) Unregister(prometheus.Collector) bool { return true }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// exported is every metric name the server exports, histograms' series included.
func exported(t *testing.T) []string {
	t.Helper()
	r := &recorder{}
	New(r)
	WatchCertificate(r, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil })
	var names []string
	for _, c := range r.collectors {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no name in %s", d)
			}
			names = append(names, m[1], m[1]+"_bucket", m[1]+"_count", m[1]+"_sum")
		}
	}
	return names
}

var metricRef = regexp.MustCompile(`\bportcullis_[a-z0-9_]+`)

// TestMonitoringKitMetricsExist: every metric the alerts and the dashboard read is one the
// server exports, so that neither silently shows nothing.
func TestMonitoringKitMetricsExist(t *testing.T) {
	names := exported(t)
	var exprs []string
	alerts, err := os.ReadFile("../../manifests/monitoring/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert, Expr string
				}
			}
		}
	}
	if err := yaml.Unmarshal(alerts, &rule); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Alert+": "+r.Expr)
		}
	}
	dashboard, err := os.ReadFile("../../manifests/monitoring/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(dashboard, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, p.Title+": "+tg.Expr)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("%d expressions read: the files changed shape", len(exprs))
	}
	for _, e := range exprs {
		refs := metricRef.FindAllString(e, -1)
		if len(refs) == 0 {
			t.Errorf("%s reads no Portcullis metric", e)
		}
		for _, m := range refs {
			if !slices.Contains(names, m) {
				t.Errorf("%s reads %s, which the server does not export", strings.SplitN(e, ":", 2)[0], m)
			}
		}
	}
}
