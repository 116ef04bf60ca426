package policies

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// pssRegistry resolves the upstream Pod Security Admission checks (policy.DefaultChecks) for a
// level and version, in the order upstream evaluates them, so each check keeps its ID and can be
// excluded. TestPodSecurityMatchesUpstream proves it equivalent to policy.NewEvaluator.
type pssRegistry struct {
	checks     []policy.Check
	byID       map[policy.CheckID]policy.Check
	maxVersion api.Version
}

func newPSSRegistry() *pssRegistry {
	r := &pssRegistry{checks: policy.DefaultChecks(), byID: map[policy.CheckID]policy.Check{}}
	for _, c := range r.checks {
		r.byID[c.ID] = c
		if last := c.Versions[len(c.Versions)-1].MinimumVersion; r.maxVersion.Older(last) {
			r.maxVersion = last
		}
	}
	return r
}

type pssCheck struct {
	id    policy.CheckID
	check policy.CheckPodFn
}

// versionedCheck returns the revision of c in force at version v, if any.
func versionedCheck(c policy.Check, v api.Version) (policy.VersionedCheck, bool) {
	var found policy.VersionedCheck
	ok := false
	for _, vc := range c.Versions {
		if v.Older(vc.MinimumVersion) {
			break
		}
		found, ok = vc, true
	}
	return found, ok
}

// resolve returns the checks upstream runs for level and version: for baseline the baseline
// checks, for restricted the restricted checks plus the baseline checks they do not override;
// baseline IDs first, then restricted IDs, each sorted.
func (r *pssRegistry) resolve(level api.Level, v api.Version) []pssCheck {
	if v.Latest() || r.maxVersion.Older(v) {
		v = r.maxVersion
	}
	chosen := map[policy.CheckID]policy.VersionedCheck{}
	overridden := map[policy.CheckID]bool{}
	if level == api.LevelRestricted {
		for _, c := range r.checks {
			if c.Level != api.LevelRestricted {
				continue
			}
			if vc, ok := versionedCheck(c, v); ok {
				chosen[c.ID] = vc
				for _, o := range vc.OverrideCheckIDs {
					overridden[o] = true
				}
			}
		}
	}
	for _, c := range r.checks {
		if c.Level != api.LevelBaseline || overridden[c.ID] {
			continue
		}
		if vc, ok := versionedCheck(c, v); ok {
			chosen[c.ID] = vc
		}
	}
	var baseline, restricted []policy.CheckID
	for id := range chosen {
		if r.byID[id].Level == api.LevelBaseline {
			baseline = append(baseline, id)
		} else {
			restricted = append(restricted, id)
		}
	}
	slices.Sort(baseline)
	slices.Sort(restricted)
	out := make([]pssCheck, 0, len(chosen))
	for _, id := range append(baseline, restricted...) {
		out = append(out, pssCheck{id: id, check: chosen[id].CheckPod})
	}
	return out
}

// replacement returns the check that overrides id at level and version (capabilities_restricted
// replaces capabilities_baseline at restricted), or "".
func (r *pssRegistry) replacement(level api.Level, v api.Version, id policy.CheckID) policy.CheckID {
	if level != api.LevelRestricted {
		return ""
	}
	if v.Latest() || r.maxVersion.Older(v) {
		v = r.maxVersion
	}
	for _, c := range r.checks {
		if c.Level != api.LevelRestricted {
			continue
		}
		if vc, ok := versionedCheck(c, v); ok && slices.Contains(vc.OverrideCheckIDs, id) {
			return c.ID
		}
	}
	return ""
}

// newestPSSVersion is the Kubernetes minor whose k8s.io/pod-security-admission this build uses;
// newer versions are rejected rather than silently evaluated as an older one.
var newestPSSVersion = api.MajorMinorVersion(1, 37)

// podSecurityRule enforces a Pod Security Standards level with the upstream checks.
type podSecurityRule struct {
	label  string // "restricted:latest", as upstream names it in messages
	checks []pssRuleCheck
}

type pssRuleCheck struct {
	pssCheck
	images []glob // the check skips containers with these images; nil: applies to all
}

func compilePodSecurity(r *v1alpha1.PodSecurityRule, reg *pssRegistry, path *field.Path) (*podSecurityRule, field.ErrorList) {
	var errs field.ErrorList
	level, err := api.ParseLevel(string(r.Level))
	if err != nil || level == api.LevelPrivileged {
		errs = append(errs, field.NotSupported(path.Child("level"), r.Level, []string{"baseline", "restricted"}))
	}
	versionStr := r.Version
	if versionStr == "" {
		versionStr = "latest"
	}
	version, err := api.ParseVersion(versionStr)
	if err != nil {
		errs = append(errs, field.Invalid(path.Child("version"), r.Version, `must be "latest" or "v1.NN"`))
	} else if !version.Latest() && newestPSSVersion.Older(version) {
		errs = append(errs, field.Invalid(path.Child("version"), r.Version, fmt.Sprintf("must be %s or older, the newest version this build knows", newestPSSVersion)))
	}
	excludeAll := map[policy.CheckID]bool{}
	excludeImages := map[policy.CheckID][]glob{}
	excludePaths := map[policy.CheckID]*field.Path{}
	for i, ex := range r.Exclude {
		p := path.Child("exclude").Index(i)
		id := policy.CheckID(ex.Control)
		c, ok := reg.byID[id]
		if !ok {
			errs = append(errs, field.NotSupported(p.Child("control"), ex.Control, reg.ids()))
			continue
		}
		if level == api.LevelBaseline && c.Level == api.LevelRestricted {
			errs = append(errs, field.Invalid(p.Child("control"), ex.Control, "is a restricted control; the baseline level does not run it"))
			continue
		}
		excludePaths[id] = p.Child("control")
		if len(ex.Images) == 0 {
			excludeAll[id] = true
			continue
		}
		for j, img := range ex.Images {
			g, err := compileGlob(img)
			if err != nil {
				errs = append(errs, field.Invalid(p.Child("images").Index(j), img, err.Error()))
				continue
			}
			excludeImages[id] = append(excludeImages[id], g)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	label := fmt.Sprintf("%s:%s", level, versionStr)
	resolved := reg.resolve(level, version)
	// An exclusion of a check the level and version never run would do nothing: say which runs.
	for id, p := range excludePaths {
		if slices.ContainsFunc(resolved, func(c pssCheck) bool { return c.id == id }) {
			continue
		}
		why := fmt.Sprintf("is not run at %s", label)
		if by := reg.replacement(level, version, id); by != "" {
			why += fmt.Sprintf(": %s replaces it, exclude that control instead", by)
		}
		errs = append(errs, field.Invalid(p, string(id), why))
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b *field.Error) int { return strings.Compare(a.Field, b.Field) })
		return nil, errs
	}
	rule := &podSecurityRule{label: label}
	for _, c := range resolved {
		if excludeAll[c.id] {
			continue
		}
		rule.checks = append(rule.checks, pssRuleCheck{pssCheck: c, images: excludeImages[c.id]})
	}
	return rule, nil
}

func (r *pssRegistry) ids() []string {
	ids := make([]string, 0, len(r.checks))
	for _, c := range r.checks {
		ids = append(ids, string(c.ID))
	}
	slices.Sort(ids)
	return ids
}

func (r *podSecurityRule) evaluate(in *input) verdict {
	pod := in.res.Pod
	if pod == nil {
		return skip("podSecurity applies to Pods and pod controllers only")
	}
	var failed []policy.CheckResult // the aggregate reads only these; most pods fail none
	for _, c := range r.checks {
		if err := in.ctx.Err(); err != nil {
			return evalError(fmt.Errorf("not evaluated: %w", context.Cause(in.ctx)))
		}
		spec := pod.Spec
		if c.images != nil {
			spec = withoutImages(spec, c.images)
		}
		if res := c.check(pod.Meta, spec); !res.Allowed {
			failed = append(failed, res)
		}
	}
	if len(failed) == 0 {
		return pass()
	}
	agg := policy.AggregateCheckResults(failed)
	msg := fmt.Sprintf("violates PodSecurity %q: %s", r.label, agg.ForbiddenDetail())
	if pod.Template {
		msg = pod.SpecPath.String() + ": " + msg
	}
	return fail(msg)
}

// withoutImages returns a shallow copy of spec without the containers whose image matches.
func withoutImages(spec *corev1.PodSpec, images []glob) *corev1.PodSpec {
	out := *spec
	keep := func(image string) bool { return !matchAny(images, image) }
	out.Containers = filterContainers(spec.Containers, keep)
	out.InitContainers = filterContainers(spec.InitContainers, keep)
	out.EphemeralContainers = nil
	for _, c := range spec.EphemeralContainers {
		if keep(c.Image) {
			out.EphemeralContainers = append(out.EphemeralContainers, c)
		}
	}
	return &out
}

func filterContainers(cs []corev1.Container, keep func(string) bool) []corev1.Container {
	var out []corev1.Container
	for _, c := range cs {
		if keep(c.Image) {
			out = append(out, c)
		}
	}
	return out
}
